/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* systemd.c against a fake systemd Manager served in-process on the other end of a socketpair:
 * the GetUnit question, the exact SetUnitProperties message, and replies to freed units. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "log.h"
#include "macro.h"
#include "systemd.h"

typedef struct FakeSystemd {
        const char *known;      /* the one unit it has loaded */
        bool refuse;            /* SetUnitProperties answers AccessDenied */
        unsigned get_calls, set_calls;
        char set_name[64];
        int set_runtime;
        char set_property[32];
        char set_type[8];
        uint64_t set_value;
        unsigned n_properties;
} FakeSystemd;

static int fake_get_unit(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        FakeSystemd *f = userdata;
        const char *name;

        assert_int_equal(sd_bus_message_read(m, "s", &name), 1);
        f->get_calls++;
        if (!streq(name, f->known))
                return sd_bus_error_setf(error, "org.freedesktop.systemd1.NoSuchUnit", "Unit %s not loaded.", name);
        return sd_bus_reply_method_return(m, "o", "/org/freedesktop/systemd1/unit/whatever");
}

static int fake_set_unit_properties(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        FakeSystemd *f = userdata;
        const char *name, *property, *type;

        f->set_calls++;
        assert_int_equal(sd_bus_message_read(m, "sb", &name, &f->set_runtime), 1);
        (void) snprintf(f->set_name, sizeof f->set_name, "%s", name);

        f->n_properties = 0;
        assert_int_equal(sd_bus_message_enter_container(m, 'a', "(sv)"), 1);
        while (sd_bus_message_enter_container(m, 'r', "sv") > 0) {
                assert_int_equal(sd_bus_message_read(m, "s", &property), 1);
                assert_int_equal(sd_bus_message_peek_type(m, NULL, &type), 1);
                (void) snprintf(f->set_property, sizeof f->set_property, "%s", property);
                (void) snprintf(f->set_type, sizeof f->set_type, "%s", type);
                if (streq(type, "t"))
                        assert_int_equal(sd_bus_message_read(m, "v", "t", &f->set_value), 1);
                else
                        assert_int_equal(sd_bus_message_skip(m, "v"), 1);
                assert_int_equal(sd_bus_message_exit_container(m), 1);
                f->n_properties++;
        }
        assert_int_equal(sd_bus_message_exit_container(m), 1);

        if (f->refuse)
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Not you.");
        return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable fake_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("GetUnit", "s", "o", fake_get_unit, 0),
        SD_BUS_METHOD("SetUnitProperties", "sba(sv)", NULL, fake_set_unit_properties, 0),
        SD_BUS_VTABLE_END
};

typedef struct Fixture {
        sd_event *event;
        sd_bus *server, *client;
        FakeSystemd fake;
} Fixture;

static int setup(void **state) {
        Fixture *x = new0(Fixture, 1);
        int fds[2];
        sd_id128_t id;

        assert_non_null(x);
        x->fake.known = "balloon-web.slice";
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC|SOCK_NONBLOCK, 0, fds), 0);
        assert_int_equal(sd_event_new(&x->event), 0);

        assert_int_equal(sd_id128_randomize(&id), 0);
        assert_int_equal(sd_bus_new(&x->server), 0);
        assert_int_equal(sd_bus_set_fd(x->server, fds[0], fds[0]), 0);
        assert_int_equal(sd_bus_set_server(x->server, 1, id), 0);
        assert_int_equal(sd_bus_add_object_vtable(x->server, NULL, "/org/freedesktop/systemd1",
                                                  "org.freedesktop.systemd1.Manager", fake_vtable, &x->fake), 0);
        assert_int_equal(sd_bus_start(x->server), 0);
        assert_int_equal(sd_bus_attach_event(x->server, x->event, 0), 0);

        assert_int_equal(sd_bus_new(&x->client), 0);
        assert_int_equal(sd_bus_set_fd(x->client, fds[1], fds[1]), 0);
        assert_int_equal(sd_bus_start(x->client), 0);
        assert_int_equal(sd_bus_attach_event(x->client, x->event, 0), 0);

        *state = x;
        return 0;
}

static int teardown(void **state) {
        Fixture *x = *state;

        sd_bus_flush_close_unref(x->client);
        sd_bus_flush_close_unref(x->server);
        sd_event_unref(x->event);
        free(x);
        return 0;
}

/* Runs the loop until nothing happens for 50 ms: every message sent so far is answered and handled. */
static void run_until_idle(Fixture *x) {
        for (unsigned i = 0; i < 200; i++) {
                int r = sd_event_run(x->event, 50 * USEC_PER_MSEC);
                assert_true(r >= 0);
                if (r == 0)
                        return;
        }
        fail_msg("the event loop never went idle");
}

static void test_no_bus(void **state) {
        _cleanup_(systemd_unit_freep) SystemdUnit *u = NULL;

        assert_false(systemd_unit_is_managed(NULL));
        assert_int_equal(systemd_unit_new(NULL, "balloon-web.slice", "web", &u), 0);
        assert_false(systemd_unit_is_managed(u));
        assert_int_equal(systemd_unit_set_memory_high(u, 512 * MIB), -EOPNOTSUPP);
}

static void test_managed_unit_gets_memory_high(void **state) {
        Fixture *x = *state;
        _cleanup_(systemd_unit_freep) SystemdUnit *u = NULL;

        assert_int_equal(systemd_unit_new(x->client, "balloon-web.slice", "web", &u), 0);
        /* Not managed until systemd said so. */
        assert_false(systemd_unit_is_managed(u));
        run_until_idle(x);
        assert_int_equal(x->fake.get_calls, 1);
        assert_true(systemd_unit_is_managed(u));

        assert_int_equal(systemd_unit_set_memory_high(u, 448 * MIB), 0);
        run_until_idle(x);
        assert_int_equal(x->fake.set_calls, 1);
        assert_string_equal(x->fake.set_name, "balloon-web.slice");
        assert_int_equal(x->fake.set_runtime, 1);
        assert_int_equal(x->fake.n_properties, 1);
        assert_string_equal(x->fake.set_property, "MemoryHigh");
        assert_string_equal(x->fake.set_type, "t");
        assert_int_equal(x->fake.set_value, 448 * MIB);

        /* "max" is systemd's infinity, the same UINT64_MAX. */
        assert_int_equal(systemd_unit_set_memory_high(u, SIZE_UNLIMITED), 0);
        run_until_idle(x);
        assert_int_equal(x->fake.set_calls, 2);
        assert_true(x->fake.set_value == UINT64_MAX);
}

static void test_unknown_unit_is_not_managed(void **state) {
        Fixture *x = *state;
        _cleanup_(systemd_unit_freep) SystemdUnit *u = NULL;

        assert_int_equal(systemd_unit_new(x->client, "balloon-db.slice", "db", &u), 0);
        run_until_idle(x);
        assert_int_equal(x->fake.get_calls, 1);
        assert_false(systemd_unit_is_managed(u));
        assert_int_equal(systemd_unit_set_memory_high(u, 448 * MIB), -EOPNOTSUPP);
        run_until_idle(x);
        assert_int_equal(x->fake.set_calls, 0);
}

/* memory.high written through cgroupfs before systemd answered: once it says it has the unit,
 * MemoryHigh= is set to that value; for a unit it does not have, nothing is sent. */
static void test_direct_write_before_the_answer_is_synced(void **state) {
        Fixture *x = *state;
        _cleanup_(systemd_unit_freep) SystemdUnit *u = NULL, *v = NULL;

        assert_int_equal(systemd_unit_new(x->client, "balloon-web.slice", "web", &u), 0);
        systemd_unit_wrote_directly(u, 512 * MIB);
        systemd_unit_wrote_directly(u, 448 * MIB);
        run_until_idle(x);
        assert_true(systemd_unit_is_managed(u));
        assert_int_equal(x->fake.set_calls, 1);
        assert_string_equal(x->fake.set_name, "balloon-web.slice");
        assert_int_equal(x->fake.set_value, 448 * MIB);

        /* Managed: a direct write is the caller's fallback on an error, not synced again. */
        systemd_unit_wrote_directly(u, 256 * MIB);
        run_until_idle(x);
        assert_int_equal(x->fake.set_calls, 1);

        assert_int_equal(systemd_unit_new(x->client, "balloon-db.slice", "db", &v), 0);
        systemd_unit_wrote_directly(v, 448 * MIB);
        run_until_idle(x);
        assert_false(systemd_unit_is_managed(v));
        assert_int_equal(x->fake.set_calls, 1);
}

static void test_refresh_finds_a_unit_loaded_later(void **state) {
        Fixture *x = *state;
        _cleanup_(systemd_unit_freep) SystemdUnit *u = NULL;

        x->fake.known = "none.slice";
        assert_int_equal(systemd_unit_new(x->client, "balloon-web.slice", "web", &u), 0);
        run_until_idle(x);
        assert_false(systemd_unit_is_managed(u));

        /* Still not loaded: asked again, still not managed. */
        assert_int_equal(systemd_unit_refresh(u), 0);
        run_until_idle(x);
        assert_int_equal(x->fake.get_calls, 2);
        assert_false(systemd_unit_is_managed(u));

        x->fake.known = "balloon-web.slice";
        assert_int_equal(systemd_unit_refresh(u), 0);
        run_until_idle(x);
        assert_int_equal(x->fake.get_calls, 3);
        assert_true(systemd_unit_is_managed(u));

        /* Managed: nothing more to ask. */
        assert_int_equal(systemd_unit_refresh(u), 0);
        run_until_idle(x);
        assert_int_equal(x->fake.get_calls, 3);
}

static void test_refusal_keeps_the_unit(void **state) {
        Fixture *x = *state;
        _cleanup_(systemd_unit_freep) SystemdUnit *u = NULL;

        x->fake.refuse = true;
        assert_int_equal(systemd_unit_new(x->client, "balloon-web.slice", "web", &u), 0);
        run_until_idle(x);
        assert_int_equal(systemd_unit_set_memory_high(u, 448 * MIB), 0);
        run_until_idle(x);
        /* Refused (logged): still managed, and the next change is asked for again. */
        assert_true(systemd_unit_is_managed(u));
        assert_int_equal(systemd_unit_set_memory_high(u, 384 * MIB), 0);
        run_until_idle(x);
        assert_int_equal(x->fake.set_calls, 2);
        assert_int_equal(x->fake.set_value, 384 * MIB);
}

static void test_replies_to_freed_units_are_dropped(void **state) {
        Fixture *x = *state;
        SystemdUnit *u = NULL;

        /* Freed with GetUnit in flight: ASan sees any use of the freed unit by the reply. */
        assert_int_equal(systemd_unit_new(x->client, "balloon-web.slice", "web", &u), 0);
        u = systemd_unit_free(u);
        run_until_idle(x);
        assert_int_equal(x->fake.get_calls, 1);

        /* Freed with SetUnitProperties in flight: the call still goes out, its reply is dropped. */
        assert_int_equal(systemd_unit_new(x->client, "balloon-web.slice", "web", &u), 0);
        run_until_idle(x);
        assert_int_equal(systemd_unit_set_memory_high(u, 256 * MIB), 0);
        u = systemd_unit_free(u);
        run_until_idle(x);
        assert_int_equal(x->fake.set_calls, 1);
        assert_int_equal(x->fake.set_value, 256 * MIB);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_no_bus),
                cmocka_unit_test_setup_teardown(test_managed_unit_gets_memory_high, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_unit_is_not_managed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_direct_write_before_the_answer_is_synced, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refresh_finds_a_unit_loaded_later, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refusal_keeps_the_unit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_replies_to_freed_units_are_dropped, setup, teardown),
        };

        log_setup(LOG_TARGET_STDERR, LOG_DEBUG);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
