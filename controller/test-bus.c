/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The D-Bus API (bus.c) of a manager on a directory tree, with a fake VM source (test-fakes.h), on a
 * private dbus-daemon the test starts: the methods and the Policy property as autoballoonctl calls
 * them, their replies, and their refusals, to a caller that is not root among others. */

#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include "bus.h"
#include "log.h"
#include "test-fakes.h"

#define NOBODY 65534

static const char config[] =
        "[Daemon]\n"
        "Policy=rfc\n"
        "StatsIntervalSec=0.1\n"
        "TriggerWindowSec=10\n"
        "HostTriggerStallSec=10\n"
        "SliceTriggerStallSec=10\n";

static const discovery_new_t sources[] = {
        fake_source_new,
        NULL,
};

/* Everyone may call everything: what refuses is the daemon itself. */
static const char bus_config[] =
        "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
        " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
        "<busconfig>\n"
        "  <type>session</type>\n"
        "  <listen>unix:path=%s/bus</listen>\n"
        "  <auth>EXTERNAL</auth>\n"
        "  <policy context=\"default\">\n"
        "    <allow user=\"*\"/>\n"
        "    <allow own=\"*\"/>\n"
        "    <allow send_type=\"method_call\"/>\n"
        "    <allow send_requested_reply=\"true\"/>\n"
        "    <allow receive_requested_reply=\"true\"/>\n"
        "  </policy>\n"
        "</busconfig>\n";

typedef struct Fixture {
        FakeTree tree;
        pid_t bus_daemon;
        char address[256];
        Manager *m;
        sd_bus *client;
        VM *a;
} Fixture;

/* dbus-daemon with bus_config, its socket where other users reach it; skips the test without one. */
static void start_bus_daemon(Fixture *x) {
        _cleanup_free_ char *text = NULL, *path = NULL;
        struct pollfd p;
        int fds[2];
        ssize_t n;

        assert_true(asprintf(&text, bus_config, x->tree.root) > 0);
        fake_tree_write(&x->tree, "bus.conf", text);
        assert_true(asprintf(&path, "--config-file=%s/bus.conf", x->tree.root) > 0);
        assert_int_equal(chmod(x->tree.root, 0755), 0);

        assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
        x->bus_daemon = fork();
        assert_true(x->bus_daemon >= 0);
        if (x->bus_daemon == 0) {
                sigset_t none;

                /* An earlier test's manager blocked SIGTERM in this process; exec would keep it so. */
                sigemptyset(&none);
                if (sigprocmask(SIG_SETMASK, &none, NULL) < 0 || dup2(fds[1], 3) < 0)
                        _exit(127);
                execlp("dbus-daemon", "dbus-daemon", path, "--nofork", "--nopidfile", "--print-address=3", NULL);
                _exit(127);
        }
        assert_int_equal(close(fds[1]), 0);

        p = (struct pollfd) { .fd = fds[0], .events = POLLIN };
        assert_int_equal(poll(&p, 1, 10000), 1);
        n = read(fds[0], x->address, sizeof x->address - 1);
        assert_int_equal(close(fds[0]), 0);
        if (n <= 0) {
                /* No dbus-daemon: it exited without an address. */
                assert_int_equal(waitpid(x->bus_daemon, NULL, 0), x->bus_daemon);
                x->bus_daemon = 0;
                skip();
        }
        x->address[strcspn(x->address, "\n")] = 0;
}

static int open_client(const char *address, sd_bus **ret) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        int r;

        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, true);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

static int setup(void **state) {
        Fixture *x = calloc(1, sizeof *x);

        fake_require_psi();
        assert_non_null(x);
        *state = x;
        fake_tree_new(&x->tree, config);
        fake_tree_slice(&x->tree, "a", "2415919104\n");
        start_bus_daemon(x);

        assert_int_equal(setenv("DBUS_SESSION_BUS_ADDRESS", x->address, 1), 0);
        x->m = fake_manager_start(&x->tree, sources, BUS_SESSION);

        x->a = fake_source_add(x->m->sources[0], "a", NULL);
        vm_backend_ready(x->a, 2 * GIB, 3 * GIB / 2, "balloon0");
        /* A tick has read its slice. */
        RUN_UNTIL(x->m->event, x->a->memory_high_known);

        assert_int_equal(open_client(x->address, &x->client), 0);
        assert_int_equal(sd_bus_attach_event(x->client, x->m->event, 0), 0);
        return 0;
}

static int teardown(void **state) {
        Fixture *x = *state;

        sd_bus_flush_close_unref(x->client);
        manager_free(x->m);
        if (x->bus_daemon > 0) {
                assert_int_equal(kill(x->bus_daemon, SIGTERM), 0);
                assert_int_equal(waitpid(x->bus_daemon, NULL, 0), x->bus_daemon);
        }
        fake_tree_done(&x->tree);
        free(x);
        return 0;
}

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        *(sd_bus_message **) userdata = sd_bus_message_ref(m);
        return 0;
}

/* Calls 'method' of 'interface' and runs the daemon's loop until the reply (or error) comes. */
static sd_bus_message *call_interface(Fixture *x, const char *interface, const char *method, const char *types,
                                      ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        sd_bus_message *reply = NULL;
        va_list ap;

        assert_true(sd_bus_message_new_method_call(x->client, &msg, BUS_NAME, BUS_PATH, interface, method) >= 0);
        if (types) {
                va_start(ap, types);
                assert_true(sd_bus_message_appendv(msg, types, ap) >= 0);
                va_end(ap);
        }
        assert_true(sd_bus_call_async(x->client, NULL, msg, on_reply, &reply, 5 * USEC_PER_SEC) >= 0);
        RUN_UNTIL(x->m->event, reply);
        return reply;
}

#define call(x, method, ...) call_interface((x), BUS_INTERFACE, (method), __VA_ARGS__)

static void assert_ok(sd_bus_message *reply) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e)
                fail_msg("%s: %s", e->name, e->message);
}

static void assert_error(sd_bus_message *reply, const char *name) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (!e)
                fail_msg("no error, expected %s", name);
        assert_string_equal(e->name, name);
}

/* ListVMs' weight of VM 'name', after checking the rest of its row. */
static uint64_t listed_weight(Fixture *x, const char *name) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = call(x, "ListVMs", NULL);
        const char *vm, *state, *action, *reason;
        uint64_t weight, boot, min, max, actual, target, high, when, found = 0;
        double pressure;

        assert_ok(reply);
        assert_int_equal(sd_bus_message_enter_container(reply, 'a', "(sstttttttdtss)"), 1);
        while (sd_bus_message_read(reply, "(sstttttttdtss)", &vm, &state, &weight, &boot, &min, &max, &actual,
                                   &target, &high, &pressure, &when, &action, &reason) > 0) {
                if (!streq(vm, name))
                        continue;
                assert_string_equal(state, "ready");
                assert_int_equal(boot, 2 * GIB);
                assert_int_equal(min, 512 * MIB);
                assert_int_equal(max, 2 * GIB);
                assert_int_equal(actual, 3 * GIB / 2);
                assert_int_equal(target, 3 * GIB / 2);
                assert_int_equal(high, 2304 * MIB);
                found = weight;
        }
        assert_int_equal(sd_bus_message_exit_container(reply), 1);
        assert_true(found > 0);
        return found;
}

static void test_list_vms(void **state) {
        Fixture *x = *state;

        assert_int_equal(listed_weight(x, "a"), 100);
}

static void test_set_weight(void **state) {
        Fixture *x = *state;
        _cleanup_free_ char *dropin = NULL;
        sd_bus_message *reply;

        /* At runtime: this daemon only, no file. */
        reply = call(x, "SetWeight", "stb", "a", UINT64_C(300), true);
        assert_ok(reply);
        sd_bus_message_unref(reply);
        assert_int_equal(listed_weight(x, "a"), 300);
        assert_int_equal(x->a->runtime_weight, 300);
        assert_null(fake_tree_read(&x->tree, "config/autoballoon.conf.d/50-weight-a.conf"));

        /* Persistent: a drop-in, which replaces the runtime weight. */
        reply = call(x, "SetWeight", "stb", "a", UINT64_C(250), false);
        assert_ok(reply);
        sd_bus_message_unref(reply);
        assert_int_equal(listed_weight(x, "a"), 250);
        assert_int_equal(x->a->runtime_weight, 0);
        dropin = fake_tree_read(&x->tree, "config/autoballoon.conf.d/50-weight-a.conf");
        assert_non_null(dropin);
        assert_non_null(strstr(dropin, "[VM a]\nWeight=250\n"));
        /* The VM reading its configuration again (a libvirt domain's XML changed, asking 50) keeps it. */
        VMConfig meta;
        vm_config_defaults(&meta);
        assert_int_equal(vm_config_set(&meta, "Weight", "50", &(const char *) { NULL }), 0);
        vm_backend_metadata(x->a, &meta);
        assert_int_equal(listed_weight(x, "a"), 250);

        /* Refused, changing nothing: no such VM, a weight out of range, a drop-in that would not win. */
        reply = call(x, "SetWeight", "stb", "nope", UINT64_C(200), true);
        assert_error(reply, BUS_ERROR_NO_SUCH_VM);
        sd_bus_message_unref(reply);
        reply = call(x, "SetWeight", "stb", "a", UINT64_C(0), true);
        assert_error(reply, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_message_unref(reply);
        reply = call(x, "SetWeight", "stb", "a", UINT64_C(10001), false);
        assert_error(reply, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_message_unref(reply);

        fake_tree_write(&x->tree, "config/autoballoon.conf.d/99-later.conf", "[VM a]\nWeight=7\n");
        reply = call(x, "SetWeight", "stb", "a", UINT64_C(260), false);
        assert_error(reply, BUS_ERROR_BAD_CONFIG);
        sd_bus_message_unref(reply);
        free(dropin);
        dropin = fake_tree_read(&x->tree, "config/autoballoon.conf.d/50-weight-a.conf");
        assert_non_null(strstr(dropin, "Weight=250\n"));
        assert_int_equal(listed_weight(x, "a"), 250);
}

static int paused_property(Fixture *x) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply =
                call_interface(x, "org.freedesktop.DBus.Properties", "Get", "ss", BUS_INTERFACE, "Paused");
        int paused;

        assert_ok(reply);
        assert_int_equal(sd_bus_message_read(reply, "v", "b", &paused), 1);
        return paused;
}

static void test_pause_resume(void **state) {
        Fixture *x = *state;
        sd_bus_message *reply;

        assert_false(paused_property(x));
        reply = call(x, "Pause", NULL);
        assert_ok(reply);
        sd_bus_message_unref(reply);
        assert_true(x->m->paused);
        assert_true(paused_property(x));

        reply = call(x, "Resume", NULL);
        assert_ok(reply);
        sd_bus_message_unref(reply);
        assert_false(x->m->paused);
        assert_false(paused_property(x));
}

static void test_explain(void **state) {
        Fixture *x = *state;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL, *none = NULL;
        PolicyDecision hold = {
                .action = POLICY_HOLD,
                .target = x->a->target,
                .memory_high = x->a->memory_high,
                .reason = "held: in hysteresis",
        };
        const char *key, *action, *reason, *vm_state = NULL, *now = NULL;
        uint64_t when, actual, target, high, weight = 0, actual_bytes = 0;
        unsigned n = 0;

        vm_apply_decision(x->a, 1, &hold, false);

        reply = call(x, "Explain", "s", "a");
        assert_ok(reply);
        assert_int_equal(sd_bus_message_enter_container(reply, 'a', "{sv}"), 1);
        while (sd_bus_message_enter_container(reply, 'e', "sv") > 0) {
                assert_int_equal(sd_bus_message_read(reply, "s", &key), 1);
                if (streq(key, "state"))
                        assert_int_equal(sd_bus_message_read(reply, "v", "s", &vm_state), 1);
                else if (streq(key, "weight"))
                        assert_int_equal(sd_bus_message_read(reply, "v", "t", &weight), 1);
                else if (streq(key, "actual_bytes"))
                        assert_int_equal(sd_bus_message_read(reply, "v", "t", &actual_bytes), 1);
                else if (streq(key, "decision_now"))
                        assert_int_equal(sd_bus_message_read(reply, "v", "s", &now), 1);
                else
                        assert_int_equal(sd_bus_message_skip(reply, "v"), 1);
                assert_int_equal(sd_bus_message_exit_container(reply), 1);
        }
        assert_int_equal(sd_bus_message_exit_container(reply), 1);
        assert_string_equal(vm_state, "ready");
        assert_int_equal(weight, 100);
        assert_int_equal(actual_bytes, 3 * GIB / 2);
        /* What the policy (rfc here) would do now. */
        assert_string_equal(now, "none");

        assert_int_equal(sd_bus_message_enter_container(reply, 'a', "(tsttts)"), 1);
        while (sd_bus_message_read(reply, "(tsttts)", &when, &action, &actual, &target, &high, &reason) > 0) {
                assert_string_equal(action, "hold");
                assert_string_equal(reason, "held: in hysteresis");
                assert_int_equal(actual, 3 * GIB / 2);
                assert_true(when > 0);
                n++;
        }
        assert_int_equal(n, 1);

        none = call(x, "Explain", "s", "nope");
        assert_error(none, BUS_ERROR_NO_SUCH_VM);

        /* The default policy says why the VM is or is not given memory back. */
        x->m->params.mode = POLICY_MODE_AUTOBALLOON;
        sd_bus_message_unref(reply);
        reply = call(x, "Explain", "s", "a");
        assert_ok(reply);
        now = NULL;
        assert_int_equal(sd_bus_message_enter_container(reply, 'a', "{sv}"), 1);
        while (sd_bus_message_enter_container(reply, 'e', "sv") > 0) {
                assert_int_equal(sd_bus_message_read(reply, "s", &key), 1);
                if (streq(key, "decision_now"))
                        assert_int_equal(sd_bus_message_read(reply, "v", "s", &now), 1);
                else
                        assert_int_equal(sd_bus_message_skip(reply, "v"), 1);
                assert_int_equal(sd_bus_message_exit_container(reply), 1);
        }
        assert_non_null(now);
        assert_non_null(strstr(now, "give-back"));
}

static void test_policy_property(void **state) {
        Fixture *x = *state;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply =
                call_interface(x, "org.freedesktop.DBus.Properties", "Get", "ss", BUS_INTERFACE, "Policy");
        const char *policy;

        assert_ok(reply);
        assert_int_equal(sd_bus_message_read(reply, "v", "s", &policy), 1);
        assert_string_equal(policy, "rfc");
}

/* In a child as uid/gid 65534: ListVMs works, SetWeight and Pause are refused. The exit status says
 * which did not go as expected (bits 1, 2, 4), 8 when it could not even connect. */
static int nobody_calls(const char *address) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int status = 0;

        if (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
            setresuid(NOBODY, NOBODY, NOBODY) < 0 || open_client(address, &bus) < 0)
                return 8;

        if (sd_bus_call_method(bus, BUS_NAME, BUS_PATH, BUS_INTERFACE, "ListVMs", &error, &reply, NULL) < 0)
                status |= 1;
        sd_bus_error_free(&error);
        if (sd_bus_call_method(bus, BUS_NAME, BUS_PATH, BUS_INTERFACE, "SetWeight", &error, NULL, "stb", "a",
                               UINT64_C(999), true) >= 0 || !sd_bus_error_has_name(&error, SD_BUS_ERROR_ACCESS_DENIED))
                status |= 2;
        sd_bus_error_free(&error);
        if (sd_bus_call_method(bus, BUS_NAME, BUS_PATH, BUS_INTERFACE, "Pause", &error, NULL, NULL) >= 0 ||
            !sd_bus_error_has_name(&error, SD_BUS_ERROR_ACCESS_DENIED))
                status |= 4;
        sd_bus_error_free(&error);
        return status;
}

static void test_refused_for_non_root(void **state) {
        Fixture *x = *state;
        int status = 0;
        pid_t pid;

        if (geteuid() != 0)
                skip(); /* cannot become another user */

        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(nobody_calls(x->address));
        /* The daemon answers from this process' loop while the child waits for it. */
        RUN_UNTIL(x->m->event, waitpid(pid, &status, WNOHANG) == pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);

        assert_int_equal(x->a->config.weight, 100);
        assert_false(x->m->paused);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_list_vms, setup, teardown),
                cmocka_unit_test_setup_teardown(test_set_weight, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
                cmocka_unit_test_setup_teardown(test_explain, setup, teardown),
                cmocka_unit_test_setup_teardown(test_policy_property, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refused_for_non_root, setup, teardown),
        };

        log_setup(LOG_TARGET_STDERR, LOG_INFO);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
