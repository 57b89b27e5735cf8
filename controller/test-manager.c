/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The manager on a directory tree standing in for the cgroup root, with two VM sources: a fake one
 * (test-fakes.h) whose VMs the test adopts and answers for, and the real slice scan, whose QMP
 * sockets nobody serves. Adoption, removal, a VM handed from one source to another, a decision
 * round from the tick to the balloon command and the metrics file, a silent VM beside a healthy one,
 * the polling intervals, and shutdown. */

#include <signal.h>

#include "backend-qmp.h"
#include "log.h"
#include "test-fakes.h"

#define CONFIG_KEYS                                                                      \
        "StatsIntervalSec=0.1\n"                                                          \
        "StatsIdleIntervalSec=1\n"                                                        \
        /* The host's real trigger, which must not fire during the test. */             \
        "TriggerWindowSec=10\n"                                                           \
        "HostTriggerStallSec=10\n"                                                        \
        "SliceTriggerStallSec=10\n"                                                       \
        "[VM a]\n"                                                                        \
        "MaxMemory=1G\n"                                                                  \
        "[VM s]\n"                                                                        \
        "MaxMemory=1G\n"

static const char config[] = "[Daemon]\n" CONFIG_KEYS;
static const char rfc_config[] = "[Daemon]\nPolicy=rfc\n" CONFIG_KEYS;

static const discovery_new_t sources[] = {
        fake_source_new,
        qmp_discovery_new,
        NULL,
};

typedef struct Fixture {
        FakeTree tree;
        Manager *m;
        FakeSource *fake;     /* m's first source */
} Fixture;

static int setup(void **state) {
        Fixture *x = calloc(1, sizeof *x);

        fake_require_psi();
        assert_non_null(x);
        *state = x;
        fake_tree_new(&x->tree, config);
        fake_tree_slice(&x->tree, "a", "max\n");
        fake_tree_slice(&x->tree, "q", "max\n");
        fake_tree_slice(&x->tree, "s", "max\n");
        x->m = fake_manager_start(&x->tree, sources, BUS_NONE);
        assert_int_equal(x->m->n_sources, 2);
        x->fake = (FakeSource *) x->m->sources[0];
        return 0;
}

static int teardown(void **state) {
        Fixture *x = *state;

        manager_free(x->m);
        fake_tree_done(&x->tree);
        free(x);
        return 0;
}

static void remove_slice(Fixture *x, const char *vm) {
        _cleanup_free_ char *cmd = NULL;

        assert_true(asprintf(&cmd, "rm -rf '%s/balloon.slice/balloon-%s.slice'", x->tree.cgroup, vm) > 0);
        assert_int_equal(system(cmd), 0);
}

static void test_adoption_and_removal(void **state) {
        Fixture *x = *state;
        bool freed = false;
        VM *a, *q;

        /* Started in order; the scan found both slices, and leaves "a" alone once the fake source
         * has it. */
        assert_int_equal(x->fake->starts, 1);
        q = manager_find_vm(x->m, "q");
        assert_non_null(q);
        assert_ptr_equal(q->source, x->m->sources[1]);
        assert_int_equal(q->state, VM_CONNECTING); /* nobody serves its QMP socket */
        a = manager_find_vm(x->m, "a");
        assert_non_null(a);
        assert_ptr_equal(a->source, x->m->sources[1]);

        /* A source that finds "a" as its own takes it from the scan, which waits in vain. */
        assert_true(discovery_release(a));
        assert_null(manager_find_vm(x->m, "a"));
        a = fake_source_add(&x->fake->discovery, "a", &freed);
        assert_ptr_equal(manager_find_vm(x->m, "a"), a);
        assert_int_equal(x->m->vms.n, 3);
        vm_backend_ready(a, 2 * GIB, 2 * GIB, "balloon0");
        assert_int_equal(a->state, VM_READY);

        /* The scan does not take it back at the next ticks. */
        unsigned ticks = x->fake->ticks;
        RUN_UNTIL(x->m->event, x->fake->ticks >= ticks + 2);
        assert_ptr_equal(manager_find_vm(x->m, "a"), a);
        assert_ptr_equal(a->source, &x->fake->discovery);

        /* A QMP VM adopted once is a QEMU of its own, perhaps restarting: while it does not answer,
         * another source (a libvirt domain of the same name) may not take it. */
        vm_backend_ready(q, GIB, GIB, "balloon0");
        vm_backend_lost(q, -ECONNRESET);
        assert_false(discovery_release(q));
        assert_ptr_equal(manager_find_vm(x->m, "q"), q);

        /* A slice that goes takes its VM with it. */
        remove_slice(x, "q");
        RUN_UNTIL(x->m->event, !manager_find_vm(x->m, "q"));
        assert_int_equal(x->m->vms.n, 2);

        /* So does a source that drops its VM. */
        discovery_remove_vm(&x->fake->discovery, a);
        assert_true(freed);
        assert_null(manager_find_vm(x->m, "a"));
        assert_int_equal(x->m->vms.n, 1);
}

/* The scan's VM 'name' handed to the fake source, adopted at 2G with 'available' reported. */
static VM *take_fake(Fixture *x, const char *name, uint64_t available) {
        GuestStats s = fake_stats(100, available);
        VM *vm;

        assert_true(discovery_release(manager_find_vm(x->m, name)));
        vm = fake_source_add(&x->fake->discovery, name, NULL);
        vm_backend_ready(vm, 2 * GIB, 2 * GIB, "balloon0");
        vm_backend_stats(vm, &s);
        return vm;
}

static size_t count_lines(const char *path) {
        _cleanup_free_ char *text = NULL;
        size_t n = 0;

        if (read_full_file_at(AT_FDCWD, path, 1024 * 1024, &text, NULL) < 0)
                return 0;
        for (const char *p = text; (p = strchr(p, '\n')); p++)
                n++;
        return n;
}

static void test_no_decision_at_shutdown(void **state) {
        Fixture *x = *state;
        _cleanup_free_ char *trace = NULL;
        VM *a = take_fake(x, "a", 1536 * MIB);
        FakeBackend *f = fake_backend_of(a);

        /* A refresh in flight when the daemon stops, whose answers freeing the VM cancels. */
        f->pending = f->cancel_on_free = 2;
        RUN_UNTIL(x->m->event, f->refreshes == 1);

        /* Every decision's input goes to the trace: none may be taken while the VMs are freed. */
        assert_true(asprintf(&trace, "%s/trace", x->tree.root) > 0);
        x->m->record = fopen(trace, "we");
        assert_non_null(x->m->record);
        x->m = manager_free(x->m);
        assert_int_equal(count_lines(trace), 0);
}

static void test_silent_vm_holds_back_no_one(void **state) {
        Fixture *x = *state;
        GuestStats st = fake_stats(101, 1536 * MIB);
        VM *a = take_fake(x, "a", 1536 * MIB), *s = take_fake(x, "s", 1536 * MIB);
        FakeBackend *fa = fake_backend_of(a), *fs = fake_backend_of(s);

        /* 's' never answers; 'a' does at once. */
        fa->pending = fs->pending = 2;
        RUN_UNTIL(x->m->event, fa->refreshes == 1 && fs->refreshes == 1);
        vm_backend_stats(a, &st);
        vm_backend_refresh_done(a);
        vm_backend_refresh_done(a);
        fa->pending = 0; /* from now on 'a' answers before the round even waits */

        /* The round decides without 's' once its deadline passed: both above MaxMemory=1G, both
         * inflated, 's' on the stats it had. */
        RUN_UNTIL(x->m->event, fa->n_targets == 1);
        assert_int_equal(fa->target, 1792 * MIB);

        /* 'a' is read again and again, at the busy interval while its balloon moves; 's' is not
         * asked again while its refresh is in flight. */
        RUN_UNTIL(x->m->event, fa->refreshes >= 4);
        assert_int_equal(fs->refreshes, 1);
        assert_int_equal(a->poll_interval_usec, 100 * USEC_PER_MSEC);

        /* Its stats expire: no longer fresh, 's' is not inflated any further. */
        RUN_UNTIL(x->m->event, x->m->round_usec > s->stats_seen_usec + vm_stats_max_age(s));
        PolicyVM p;
        vm_snapshot(s, x->m->round_usec, &p);
        assert_false(p.has_stats);
}

static void test_polling_intervals(void **state) {
        Fixture *x = *state;
        VM *calm = take_fake(x, "a", GIB), *busy = take_fake(x, "s", 128 * MIB);
        FakeBackend *fc = fake_backend_of(calm), *fb = fake_backend_of(busy);

        /* Both at their MaxMemory: nothing to do but watch. */
        calm->config.max_set = busy->config.max_set = false;
        calm->config.max_memory = busy->config.max_memory = (SizeSpec) { .permyriad = 10000 };

        /* The calm guest is read, and asks its guest, every StatsIdleIntervalSec=; the one close to
         * its thresholds every StatsIntervalSec=. */
        RUN_UNTIL(x->m->event, fc->n_intervals > 0 && fb->refreshes >= 3);
        assert_int_equal(fc->stats_interval, USEC_PER_SEC);
        assert_int_equal(fb->n_intervals, 0); /* it kept the busy interval it was adopted with */
        assert_int_equal(busy->poll_interval_usec, 100 * USEC_PER_MSEC);
        unsigned calm_refreshes = fc->refreshes;
        RUN_UNTIL(x->m->event, fb->refreshes >= 8);
        assert_in_range(fc->refreshes, calm_refreshes, calm_refreshes + 1);

        /* The host approaches its reserve (5% of 16G): every VM read at once, then busy. */
        calm_refreshes = fc->refreshes;
        fake_tree_write(&x->tree, "proc/meminfo", "MemTotal:       16777216 kB\nMemAvailable:    1048576 kB\n");
        RUN_UNTIL(x->m->event, fc->refreshes > calm_refreshes);
        RUN_UNTIL(x->m->event, fc->stats_interval == 100 * USEC_PER_MSEC);
        calm_refreshes = fc->refreshes;
        RUN_UNTIL(x->m->event, fc->refreshes >= calm_refreshes + 3);
}

static void test_reload_reads_at_once(void **state) {
        Fixture *x = *state;
        VM *calm = take_fake(x, "a", GIB);
        FakeBackend *f = fake_backend_of(calm);

        calm->config.max_set = false;
        calm->config.max_memory = (SizeSpec) { .permyriad = 10000 };
        RUN_UNTIL(x->m->event, f->n_intervals > 0);
        unsigned n = f->refreshes;
        RUN_UNTIL(x->m->event, f->refreshes > n);

        /* Just read: its next read is a whole idle second away, but a reload reads it at once. */
        uint64_t t = fake_now();
        n = f->refreshes;
        assert_int_equal(kill(getpid(), SIGHUP), 0);
        RUN_UNTIL(x->m->event, f->refreshes > n);
        assert_true(fake_now() - t < 500 * USEC_PER_MSEC);
}

/* Policy=rfc counts the host's reclaim scans at each decision: <proc>/vmstat's pgscan_kswapd, _direct
 * and _khugepaged, not pgscan_anon and _file (the same scans split by type); the other modes read
 * nothing. */
static void test_host_scans_under_rfc(void **state) {
        Fixture *x = *state;
        VM *a = take_fake(x, "a", GIB);
        FakeBackend *f = fake_backend_of(a);
        unsigned n = f->refreshes;

        fake_tree_write(&x->tree, "proc/vmstat",
                        "nr_free_pages 5\npgscan_kswapd 100\npgscan_direct 20\npgscan_khugepaged 3\n"
                        "pgscan_anon 60\npgscan_file 63\n");
        RUN_UNTIL(x->m->event, f->refreshes > n + 1);
        assert_false(x->m->host_pgscan_known);

        fake_tree_write(&x->tree, "config/autoballoon.conf", rfc_config);
        assert_int_equal(kill(getpid(), SIGHUP), 0);
        RUN_UNTIL(x->m->event, x->m->config->policy == POLICY_MODE_RFC && x->m->host_pgscan_known);
        assert_int_equal(x->m->host_pgscan, 123);

        fake_tree_write(&x->tree, "proc/vmstat", "pgscan_kswapd 1100\npgscan_direct 20\npgscan_khugepaged 3\n");
        RUN_UNTIL(x->m->event, x->m->host_pgscan == 1123);
}

static void test_decision_round(void **state) {
        Fixture *x = *state;
        _cleanup_free_ char *metrics = NULL;
        FakeBackend *f;
        GuestStats s = fake_stats(100, 1536 * MIB);
        VM *a;

        assert_true(discovery_release(manager_find_vm(x->m, "a")));
        a = fake_source_add(&x->fake->discovery, "a", NULL);
        f = fake_backend_of(a);
        vm_backend_ready(a, 2 * GIB, 2 * GIB, "balloon0");

        /* A tick asks the VMs for their balloon and stats; the decision waits for the answers. */
        f->pending = 2;
        RUN_UNTIL(x->m->event, f->refreshes == 1);
        assert_int_equal(f->n_targets, 0);
        vm_backend_stats(a, &s);
        vm_backend_refresh_done(a);
        assert_int_equal(f->n_targets, 0);
        vm_backend_balloon_moved(a, 2 * GIB);
        vm_backend_refresh_done(a);

        /* The last answer decides: above MaxMemory=1G, inflated by MaxStep= (256M). */
        assert_int_equal(f->n_targets, 1);
        assert_int_equal(f->target, 1792 * MIB);
        assert_int_equal(a->target, 1792 * MIB);
        assert_int_equal(vm_last_decision(a)->action, POLICY_INFLATE);
        assert_non_null(strstr(vm_last_decision(a)->reason, "above max 1G"));
        /* The host: the tree's meminfo. */
        assert_int_equal(x->m->host_total, 16 * GIB);
        assert_int_equal(x->m->host_available, 8 * GIB);

        /* The next tick writes the metrics file from the same view. */
        f->pending = 0;
        unsigned refreshes = f->refreshes;
        RUN_UNTIL(x->m->event, f->refreshes > refreshes);
        metrics = fake_tree_read(&x->tree, "run/metrics.prom");
        assert_non_null(metrics);
        assert_non_null(strstr(metrics, "autoballoon_vm_managed{vm=\"a\"} 1\n"));
        assert_non_null(strstr(metrics, "autoballoon_vm_target_bytes{vm=\"a\"} 1879048192\n"));
        assert_non_null(strstr(metrics, "autoballoon_vm_managed{vm=\"q\"} 0\n"));
        assert_non_null(strstr(metrics, "autoballoon_decisions_total{vm=\"a\",action=\"inflate\"} 1\n"));
}

static void restart(Fixture *x) {
        manager_free(x->m);
        x->m = fake_manager_start(&x->tree, sources, BUS_NONE);
        x->fake = (FakeSource *) x->m->sources[0];
}

/* Pause and a VM's hysteresis survive a restart (SIGKILL, the watchdog); a corrupt state file, or one
 * from an earlier boot, is ignored. */
static void test_state_across_restart(void **state) {
        Fixture *x = *state;
        _cleanup_free_ char *text = NULL;
        uint64_t until = fake_now() + 30 * USEC_PER_SEC;
        VM *a;

        assert_false(x->m->paused);
        assert_true(discovery_release(manager_find_vm(x->m, "a")));
        a = fake_source_add(&x->fake->discovery, "a", NULL);
        vm_backend_ready(a, 2 * GIB, 2 * GIB, "balloon0");
        a->carry.hysteresis_until_usec = until;
        a->carry.stall_count = 2;
        x->m->paused = true;
        manager_save_state(x->m);
        text = fake_tree_read(&x->tree, "run/state");
        assert_non_null(text);
        assert_non_null(strstr(text, "boot " FAKE_BOOT_ID "\npaused 1\n"));

        restart(x);
        assert_true(x->m->paused);
        assert_true(discovery_release(manager_find_vm(x->m, "a")));
        a = fake_source_add(&x->fake->discovery, "a", NULL);
        vm_backend_ready(a, 2 * GIB, 2 * GIB, "balloon0");
        assert_int_equal(a->carry.hysteresis_until_usec, until);
        assert_int_equal(a->carry.stall_count, 2);

        /* Taken once: a VM adopted again in the same run starts afresh. */
        vm_backend_lost(a, -ECONNRESET);
        a->carry = (PolicyCarry) {};
        vm_backend_ready(a, 2 * GIB, 2 * GIB, "balloon0");
        assert_int_equal(a->carry.hysteresis_until_usec, 0);

        fake_tree_write(&x->tree, "run/state", "autoballoon-state 1\nboot " FAKE_BOOT_ID "\npaused 1\nvm a x\n");
        restart(x);
        assert_false(x->m->paused);

        fake_tree_write(&x->tree, "run/state",
                        "autoballoon-state 1\nboot 00000000-1b7d-4c55-9e0a-6d8b2f1c7e90\npaused 1\n");
        restart(x);
        assert_false(x->m->paused);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_adoption_and_removal, setup, teardown),
                cmocka_unit_test_setup_teardown(test_decision_round, setup, teardown),
                cmocka_unit_test_setup_teardown(test_state_across_restart, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_decision_at_shutdown, setup, teardown),
                cmocka_unit_test_setup_teardown(test_silent_vm_holds_back_no_one, setup, teardown),
                cmocka_unit_test_setup_teardown(test_polling_intervals, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reload_reads_at_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_host_scans_under_rfc, setup, teardown),
        };

        log_setup(LOG_TARGET_STDERR, LOG_INFO);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
