/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* vm.c through a fake backend (test-fakes.h) and a VMContext of the test's own: adoption and removal,
 * the balloon's moves, the guest stats' rates, and how a decision is carried out (memory.high in a
 * directory tree standing in for the cgroup root, the balloon command, the log). */

#include "config.h"
#include "log.h"
#include "test-fakes.h"

#define SLICE "balloon.slice/balloon-web.slice"

typedef struct Fixture {
        FakeTree tree;
        Config *config;
        sd_event *event;
        VMContext ctx;
        unsigned decisions, queries_done, refreshes_asked, triggers;
        int arm_error;                      /* what arming a trigger returns */
        sd_event_io_handler_t handler;      /* of the last trigger armed */
        void *handler_data;
        char why[64];
        VM *vm;
        bool freed;
} Fixture;

static void on_decide(const VMContext *ctx, const char *why) {
        Fixture *x = ctx->userdata;

        x->decisions++;
        (void) snprintf(x->why, sizeof x->why, "%s", why);
}

static void on_query_done(const VMContext *ctx, VM *vm) {
        ((Fixture *) ctx->userdata)->queries_done++;
}

static void on_refresh_soon(const VMContext *ctx) {
        ((Fixture *) ctx->userdata)->refreshes_asked++;
}

/* The tree's pressure files cannot be polled: a trigger is counted, and its handler kept so a test
 * can fire it. */
static int on_arm_trigger(const VMContext *ctx, const char *path, uint64_t stall_usec,
                          sd_event_io_handler_t handler, void *userdata, sd_event_source **ret) {
        Fixture *x = ctx->userdata;

        x->triggers++;
        if (x->arm_error < 0)
                return x->arm_error;
        x->handler = handler;
        x->handler_data = userdata;
        *ret = NULL;
        return 0;
}

static int setup(void **state) {
        Fixture *x = calloc(1, sizeof *x);

        assert_non_null(x);
        fake_tree_new(&x->tree, "[VM web]\nMinMemory=512M\n");
        fake_tree_slice(&x->tree, "web", "2415919104\n");
        assert_int_equal(config_load(x->tree.config, &x->config), 0);
        assert_int_equal(sd_event_new(&x->event), 0);
        x->ctx = (VMContext) {
                .event = x->event,
                .cgroup_fd = x->tree.cgroup_fd,
                .config = x->config,
                .decide = on_decide,
                .query_done = on_query_done,
                .refresh_soon = on_refresh_soon,
                .arm_trigger = on_arm_trigger,
                .userdata = x,
        };
        x->vm = fake_vm_new(&x->ctx, "web", SLICE, &x->freed);
        *state = x;
        return 0;
}

static int teardown(void **state) {
        Fixture *x = *state;

        vm_free(x->vm);
        sd_event_unref(x->event);
        config_free(x->config);
        fake_tree_done(&x->tree);
        free(x);
        return 0;
}

/* Adopted at 1.5G of 2G, through the backend's callbacks. */
static void adopt(Fixture *x) {
        assert_int_equal(vm_start(x->vm), 0);
        vm_backend_probing(x->vm);
        vm_backend_ready(x->vm, 2 * GIB, 3 * GIB / 2, "balloon0");
}

static uint64_t memory_high(Fixture *x) {
        uint64_t v = 0;

        assert_int_equal(cg_read_u64(x->tree.cgroup_fd, SLICE, "memory.high", &v), 0);
        return v;
}

static void set_slice(Fixture *x, const char *file, const char *value) {
        _cleanup_free_ char *path = NULL;

        assert_true(asprintf(&path, "cgroup/%s/%s", SLICE, file) > 0);
        fake_tree_write(&x->tree, path, value);
}

static uint64_t clock_now(Fixture *x) {
        uint64_t t = 0;

        assert_true(sd_event_now(x->event, CLOCK_MONOTONIC, &t) >= 0);
        return t;
}

/* The default policy on this VM alone, as the manager runs it, on what the slice's files say now,
 * and the decision carried out. */
static PolicyDecision decide(Fixture *x, uint64_t now, bool host_pressure) {
        PolicyHost host = { .now_usec = now, .total = 16 * GIB, .available = 8 * GIB, .pressure = host_pressure };
        PolicyParams params;
        PolicyDecision d;
        PolicyVM p;

        (void) vm_refresh(x->vm);
        config_policy_params(x->config, &params);
        params.refill_rate = 0; /* no give-back on this calm host: test-policy-refill.c tests it */
        vm_snapshot(x->vm, now, &p);
        assert_int_equal(policy_decide(&params, &host, &p, 1, &d, NULL), 0);
        vm_apply_decision(x->vm, now, &d, false);
        return d;
}

/* Runs fn with stderr captured; returns what it logged. */
static char *capture_log(void (*fn)(Fixture *x), Fixture *x) {
        FILE *f = tmpfile();
        char *text = calloc(1, 64 * 1024);
        int saved;

        assert_non_null(f);
        assert_non_null(text);
        fflush(stderr);
        saved = dup(STDERR_FILENO);
        assert_true(saved >= 0);
        assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
        fn(x);
        fflush(stderr);
        assert_true(dup2(saved, STDERR_FILENO) >= 0);
        assert_int_equal(close(saved), 0);
        assert_int_equal(fseek(f, 0, SEEK_SET), 0);
        (void) fread(text, 1, 64 * 1024 - 1, f);
        assert_int_equal(fclose(f), 0);
        return text;
}

static size_t count(const char *text, const char *needle) {
        size_t n = 0;

        for (const char *p = text; (p = strstr(p, needle)); p++)
                n++;
        return n;
}

/* The decision that changes nothing for the VM as it is now, with 'action'. */
static PolicyDecision decision(const VM *vm, PolicyAction action, const char *reason) {
        PolicyDecision d = {
                .action = action,
                .target = vm->target,
                .memory_high = vm->memory_high,
                .carry = vm->carry,
        };

        (void) snprintf(d.reason, sizeof d.reason, "%s", reason);
        return d;
}

static void test_adoption_and_removal(void **state) {
        Fixture *x = *state;
        FakeBackend *f = fake_backend_of(x->vm);
        PolicyVM p;

        assert_int_equal(x->vm->state, VM_CONNECTING);
        assert_int_equal(x->triggers, 1); /* its slice's trigger */
        assert_int_equal(f->started, 0);
        /* Not managed before it is adopted: no refresh. */
        assert_int_equal(vm_refresh(x->vm), 0);

        assert_int_equal(vm_start(x->vm), 0);
        assert_int_equal(f->started, 1);
        vm_backend_probing(x->vm);
        assert_int_equal(x->vm->state, VM_PROBING);
        vm_backend_ready(x->vm, 2 * GIB, 3 * GIB / 2, "balloon0");
        assert_int_equal(x->vm->state, VM_READY);
        /* The balloon as it is: a restarted daemon resets nothing. */
        assert_int_equal(x->vm->actual, 3 * GIB / 2);
        assert_int_equal(x->vm->target, 3 * GIB / 2);
        assert_int_equal(x->vm->boot_memory, 2 * GIB);
        assert_string_equal(x->vm->device, "balloon0");

        /* The config file's [VM web], the defaults for the rest, against the boot memory. */
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.min, 512 * MIB);
        assert_int_equal(p.max, 2 * GIB);
        assert_int_equal(p.weight, 100);
        assert_false(p.has_stats);

        /* The backend's metadata fills in what the file does not set. */
        VMConfig meta;
        vm_config_defaults(&meta);
        assert_int_equal(vm_config_set(&meta, "Weight", "300", &(const char *) { NULL }), 0);
        assert_int_equal(vm_config_set(&meta, "MinMemory", "1G", &(const char *) { NULL }), 0);
        vm_backend_metadata(x->vm, &meta);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.weight, 300);
        assert_int_equal(p.min, 512 * MIB);

        /* Lost: out of the snapshot until ready again, its stats forgotten. */
        GuestStats s = fake_stats(100, GIB);
        vm_backend_stats(x->vm, &s);
        assert_true(x->vm->has_stats);
        vm_backend_lost(x->vm, -ECONNRESET);
        assert_int_equal(x->vm->state, VM_CONNECTING);
        assert_false(x->vm->has_stats);

        vm_backend_unsupported(x->vm, "no balloon device");
        assert_int_equal(x->vm->state, VM_UNSUPPORTED);

        /* Its cgroup moves: memory.high and the trigger follow. */
        vm_backend_cgroup(x->vm, NULL);
        assert_null(x->vm->cgpath);
        assert_false(x->vm->memory_high_known);
        vm_backend_cgroup(x->vm, SLICE);
        assert_string_equal(x->vm->cgpath, SLICE);
        assert_int_equal(x->triggers, 2);

        /* Removed: its backend goes with it. */
        assert_false(x->freed);
        x->vm = vm_free(x->vm);
        assert_true(x->freed);
}

static void test_balloon_moved(void **state) {
        Fixture *x = *state;
        PolicyDecision d;

        adopt(x);

        /* Deflated while nothing is asked (virsh setmem, deflate-on-OOM): it gives the guest memory,
         * so it is adopted as the target, a DeflateStep= (128M) per report, and a decision raises
         * memory.high at once. */
        vm_backend_balloon_moved(x->vm, GIB + 768 * MIB);
        assert_int_equal(x->vm->actual, GIB + 768 * MIB);
        assert_int_equal(x->vm->target, GIB + 640 * MIB);
        assert_int_equal(x->vm->last_progress_usec, 0);
        assert_int_equal(x->decisions, 1);
        assert_string_equal(x->why, "balloon deflated outside the daemon");

        /* Inflated while nothing is asked: it takes memory, and is not adopted; no stall either. */
        vm_backend_balloon_moved(x->vm, GIB + 256 * MIB);
        assert_int_equal(x->vm->actual, GIB + 256 * MIB);
        assert_int_equal(x->vm->target, GIB + 640 * MIB);
        assert_int_equal(x->vm->last_progress_usec, 0);
        assert_int_equal(x->decisions, 1);

        /* Inflating to 1G: a command sent is progress. */
        d = decision(x->vm, POLICY_INFLATE, "test inflate");
        d.target = GIB;
        vm_apply_decision(x->vm, 1, &d, false);
        assert_int_equal(fake_backend_of(x->vm)->target, GIB);
        assert_int_equal(x->vm->target, GIB);
        assert_true(x->vm->last_progress_usec > 0);

        /* Towards the target: progress, the target stays. */
        x->vm->last_progress_usec = 1;
        vm_backend_balloon_moved(x->vm, GIB + 128 * MIB);
        assert_int_equal(x->vm->actual, GIB + 128 * MIB);
        assert_int_equal(x->vm->target, GIB);
        assert_true(x->vm->last_progress_usec > 1);

        /* The same size again: nothing happened. */
        x->vm->last_progress_usec = 1;
        vm_backend_balloon_moved(x->vm, GIB + 128 * MIB);
        assert_int_equal(x->vm->last_progress_usec, 1);

        /* A page towards it is no progress yet; the rest of the way is. */
        vm_backend_balloon_moved(x->vm, GIB + 128 * MIB - 4096);
        assert_int_equal(x->vm->last_progress_usec, 1);
        vm_backend_balloon_moved(x->vm, GIB);
        assert_true(x->vm->last_progress_usec > 1);

        /* Past the target (more than asked): not adopted. */
        x->vm->last_progress_usec = 1;
        vm_backend_balloon_moved(x->vm, GIB - 64 * MIB);
        assert_int_equal(x->vm->actual, GIB - 64 * MIB);
        assert_int_equal(x->vm->target, GIB);
        assert_int_equal(x->vm->last_progress_usec, 0);

        /* Back up past it (the guest deflated on OOM): adopted a DeflateStep= at a time, as the size is
         * the guest's word; no stall to wait for. */
        vm_backend_balloon_moved(x->vm, GIB + 192 * MIB);
        assert_int_equal(x->vm->actual, GIB + 192 * MIB);
        assert_int_equal(x->vm->target, GIB + 128 * MIB);
        assert_int_equal(x->vm->last_progress_usec, 0);
        assert_int_equal(x->decisions, 2);
}

static void report_lies(Fixture *x) {
        /* Above the boot memory, twice, and no size at all (a negative one on BALLOON_CHANGE). */
        vm_backend_balloon_moved(x->vm, 3 * GIB);
        vm_backend_balloon_moved(x->vm, UINT64_MAX);
        vm_backend_balloon_invalid(x->vm, "BALLOON_CHANGE");
        /* Guest pressure events carry no balloon size; their size hint is bounded on its own. */
        vm_backend_guest_pressure(x->vm, &(GuestPressureEvent) { .level = GUEST_PRESSURE_LEVEL_LOW, .size = 3 * GIB });
}

static void pressure_events_invalid(Fixture *x) {
        vm_backend_guest_pressure_invalid(x->vm, -EBADMSG);
        vm_backend_guest_pressure_invalid(x->vm, -EOPNOTSUPP);
        vm_backend_guest_pressure_invalid(x->vm, -EBADMSG);
}

static void test_lying_actual(void **state) {
        Fixture *x = *state;
        _cleanup_free_ char *log = NULL;
        PolicyDecision d;

        adopt(x);
        assert_int_equal(vm_refresh(x->vm), 0); /* memory.high 2.25G, memory.current 1G */

        /* Out of [0, boot memory]: rejected, one warning for all of them. */
        log = capture_log(report_lies, x);
        assert_int_equal(x->vm->actual, 3 * GIB / 2);
        assert_int_equal(x->vm->target, 3 * GIB / 2);
        assert_int_equal(count(log, "warning:"), 1);
        assert_int_equal(count(log, "above the boot memory"), 1);
        assert_int_equal(x->vm->invalid_size_log.suppressed, 2);
        assert_int_equal(x->vm->pressure_event_size, 2 * GIB);
        free(log);

        /* Malformed guest pressure events, or a level of a newer QEMU: one warning too. */
        log = capture_log(pressure_events_invalid, x);
        assert_int_equal(count(log, "warning:"), 1);
        assert_int_equal(count(log, "malformed BALLOON_GUEST_PRESSURE event"), 1);
        assert_int_equal(x->vm->invalid_event_log.suppressed, 2);
        (void) decide(x, clock_now(x), false); /* the event above taken */

        /* Adopted past its boot memory: the boot memory, which lowers nothing. */
        vm_backend_ready(x->vm, 2 * GIB, 5 * GIB, "balloon0");
        assert_int_equal(x->vm->actual, 2 * GIB);
        assert_int_equal(x->vm->target, 2 * GIB);
        vm_backend_ready(x->vm, 2 * GIB, 3 * GIB / 2, "balloon0");

        /* A guest writing config.actual = its RAM reports a balloon of 0: not adopted as the target,
         * so memory.high stays where the target puts it, not at 0 + overhead. */
        vm_backend_balloon_moved(x->vm, 0);
        assert_int_equal(x->vm->actual, 0);
        assert_int_equal(x->vm->target, 3 * GIB / 2);
        (void) decide(x, clock_now(x), false);
        assert_true(x->vm->memory_high >= 3 * GIB / 2 + 256 * MIB);
        assert_true(memory_high(x) >= 3 * GIB / 2 + 256 * MIB);

        /* Whatever a decision asks, memory.high is not written under max(min, target, actual) +
         * overhead. */
        d = decision(x->vm, POLICY_SET_HIGH, "test lower");
        d.memory_high = 256 * MIB;
        vm_apply_decision(x->vm, 1, &d, false);
        assert_int_equal(memory_high(x), 3 * GIB / 2 + 256 * MIB);
}

/* A balloon moving a page per interval towards its target is stalled, not slow. */
static void test_balloon_crawls(void **state) {
        Fixture *x = *state;
        GuestStats s = fake_stats(100, GIB);
        PolicyDecision d;
        uint64_t stall = x->config->stall_usec;

        adopt(x);
        vm_backend_stats(x->vm, &s);
        d = decision(x->vm, POLICY_INFLATE, "test inflate");
        d.target = GIB;
        vm_apply_decision(x->vm, 1, &d, false);
        x->vm->last_progress_usec = 1;
        for (unsigned i = 1; i <= 16; i++)
                vm_backend_balloon_moved(x->vm, 3 * GIB / 2 - i * 4096);

        d = decide(x, 1 + stall, false);
        assert_int_equal(d.action, POLICY_STALL);
        assert_int_equal(x->vm->target, x->vm->actual);
}

/* memory.high follows a deflation nobody asked for, and a guest held under host pressure. */
static void test_deflated_outside(void **state) {
        Fixture *x = *state;
        GuestStats s = fake_stats(100, GIB);
        uint64_t now;

        adopt(x);
        vm_backend_stats(x->vm, &s);
        set_slice(x, "memory.high", "1879048192\n"); /* 1.75G: 1.5G + overhead */

        /* virsh setmem, another QMP client, deflate-on-OOM: memory.high up with it. */
        vm_backend_balloon_moved(x->vm, 7 * GIB / 4);
        assert_string_equal(x->why, "balloon deflated outside the daemon");
        now = clock_now(x);
        assert_int_equal(decide(x, now, false).action, POLICY_SET_HIGH);
        assert_int_equal(memory_high(x), 2 * GIB);

        /* A guest message while the guest's stats show pressure too, and the host is short: the
         * balloon is held where it is (our target, adopted one DeflateStep= up, is below it), memory.high
         * kept where the balloon is (the message says nothing of the balloon). */
        s = fake_stats(102, 16 * MIB);
        vm_backend_stats(x->vm, &s);
        vm_backend_guest_pressure(x->vm, &(GuestPressureEvent) { .level = GUEST_PRESSURE_LEVEL_MEDIUM });
        assert_int_equal(decide(x, now + 1, true).action, POLICY_CANCEL);
        assert_int_equal(x->vm->target, 7 * GIB / 4);
        assert_int_equal(memory_high(x), 7 * GIB / 4 + 256 * MIB);
}

/* The guest driver's messages neither lift MaxMemory= nor keep the VM in hysteresis for ever. */
static void test_max_memory_guest_events(void **state) {
        Fixture *x = *state;
        FakeBackend *f = fake_backend_of(x->vm);
        GuestStats s = fake_stats(100, GIB);
        uint64_t t0 = clock_now(x), hysteresis = x->config->hysteresis_usec;
        VMConfig meta;

        vm_config_defaults(&meta);
        assert_int_equal(vm_config_set(&meta, "MaxMemory", "1G", &(const char *) { NULL }), 0);
        vm_backend_metadata(x->vm, &meta);
        assert_int_equal(vm_start(x->vm), 0);
        vm_backend_ready(x->vm, 2 * GIB, GIB, "balloon0");
        vm_backend_stats(x->vm, &s);
        set_slice(x, "memory.high", "1342177280\n"); /* 1.25G: max + overhead */

        /* A critical message every 10 s. */
        for (unsigned i = 0; i < 12; i++) {
                uint64_t now = t0 + i * 10 * USEC_PER_SEC;

                vm_backend_guest_pressure(x->vm, &(GuestPressureEvent) {
                                .level = GUEST_PRESSURE_LEVEL_CRITICAL, .size = GIB });
                x->vm->last_progress_usec = now; /* the message came now, on the test's clock */
                (void) decide(x, now, false);
                if (f->n_targets > 0)
                        vm_backend_balloon_moved(x->vm, f->target);
                assert_true(x->vm->target <= GIB);
                assert_true(memory_high(x) <= GIB + 256 * MIB);
                /* The hysteresis the first message started, not extended by the others. */
                if (now < t0 + hysteresis)
                        assert_int_equal(x->vm->carry.hysteresis_until_usec, t0 + hysteresis);
        }
}

/* Lowering memory.high far below memory.current would make the writer reclaim all of it at once:
 * it comes down a step below memory.current at a time, following it. */
static void test_memory_high_steps(void **state) {
        Fixture *x = *state;
        _cleanup_free_ char *log = NULL;
        PolicyDecision d;
        uint64_t now;

        adopt(x);
        d = decision(x->vm, POLICY_INFLATE, "test inflate");
        d.target = GIB;
        vm_apply_decision(x->vm, 1, &d, false);
        vm_backend_balloon_moved(x->vm, GIB);
        set_slice(x, "memory.high", "max\n");
        set_slice(x, "memory.current", "2147483648\n");
        /* The host page cache of the slice is above the balloon: what the VM holds is not (while
         * the host has headroom, memory.high stays above what it holds). */
        set_slice(x, "memory.stat", "anon 1073741824\nfile 1073741824\nshmem 0\n");
        now = clock_now(x);

        d = decide(x, now, false);
        assert_int_equal(d.action, POLICY_SET_HIGH);
        assert_int_equal(memory_high(x), 2 * GIB - 64 * MIB);
        assert_non_null(strstr(vm_last_decision(x->vm)->reason, "lowered in steps"));

        set_slice(x, "memory.current", "1610612736\n"); /* 1.5G */
        set_slice(x, "memory.stat", "anon 1073741824\nfile 536870912\n");
        (void) decide(x, now + 1, false);
        assert_int_equal(memory_high(x), 3 * GIB / 2 - 64 * MIB);

        /* Within a step of memory.current: where the policy wants it, balloon + overhead. */
        set_slice(x, "memory.current", "1288490188\n"); /* 1.2G */
        set_slice(x, "memory.stat", "anon 1073741824\nfile 214748364\n");
        (void) decide(x, now + 2, false);
        assert_int_equal(memory_high(x), GIB + 256 * MIB);
        assert_int_equal(decide(x, now + 3, false).action, POLICY_NONE);
}

/* The window of guest reports: free memory used within it, which memory a deflation gave is not, and
 * the largest growth of demand between two reports, which a balloon move is not; gone with the window. */
static void test_stats_window(void **state) {
        Fixture *x = *state;
        GuestStats s;
        PolicyVM p;

        adopt(x); /* balloon at 1.5G */
        s = fake_stats(1000, 700 * MIB); /* free 350M */
        vm_backend_stats(x->vm, &s);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.guest_free_recent, 0);
        assert_int_equal(p.guest_growth, 0);

        /* The guest allocates 200M. */
        s = fake_stats(1001, 500 * MIB);
        vm_backend_stats(x->vm, &s);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.guest_free_recent, 0);
        assert_int_equal(p.guest_growth, 200 * MIB);

        /* And frees it: free again, but used within the window. */
        s = fake_stats(1002, 700 * MIB);
        vm_backend_stats(x->vm, &s);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.guest_free_recent, 100 * MIB);
        assert_int_equal(p.guest_growth, 200 * MIB);

        /* A deflation by 300M, read before the guest's next report says so, then after: no growth. */
        x->vm->target = 3 * GIB / 2 + 300 * MIB;
        vm_backend_balloon_moved(x->vm, 3 * GIB / 2 + 300 * MIB);
        s = fake_stats(1003, 700 * MIB);
        vm_backend_stats(x->vm, &s);
        s = fake_stats(1004, GIB);
        vm_backend_stats(x->vm, &s);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.guest_growth, 200 * MIB);
        /* What the deflation gave is free, and was never used: idle, unlike what the guest freed. */
        assert_int_equal(p.guest_free_recent, 0);

        /* Once the balloon holds still again, growth counts again. */
        s = fake_stats(1005, GIB);
        vm_backend_stats(x->vm, &s);
        s = fake_stats(1006, GIB - 250 * MIB);
        vm_backend_stats(x->vm, &s);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.guest_growth, 250 * MIB);

        /* The guest allocates 400M and deflates the balloon by 100M for it (deflate-on-oom): the
         * balloon rises above its target, the growth counts, seen over two reads. */
        vm_backend_balloon_moved(x->vm, x->vm->target + 100 * MIB);
        s = fake_stats(1007, GIB - 250 * MIB); /* the balloon read, the report not yet renewed */
        vm_backend_stats(x->vm, &s);
        s = fake_stats(1008, GIB - 550 * MIB);
        vm_backend_stats(x->vm, &s);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.guest_growth, 400 * MIB);

        /* Out of the window (IdleWindowSec=0 keeps the last report only): forgotten. */
        x->config->idle_window_usec = 0;
        s = fake_stats(1009, 400 * MIB);
        vm_backend_stats(x->vm, &s);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.guest_free_recent, 0);
        assert_int_equal(p.guest_growth, 0);
}

/* The slice's memory.stat: its page cache without shmem (guest RAM when shared) is the host's. */
static void test_slice_cache(void **state) {
        Fixture *x = *state;
        PolicyVM p;

        adopt(x);
        set_slice(x, "memory.stat", "anon 1073741824\nfile 314572800\nshmem 104857600\n");
        (void) vm_refresh(x->vm);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.slice_cache, 200 * MIB);
}

static void test_update_stats(void **state) {
        Fixture *x = *state;
        GuestStats s;
        PolicyVM p;

        adopt(x);

        s = fake_stats(1000, 700 * MIB);
        s.value[GUEST_STAT_SWAP_IN] = 10 * MIB;
        s.value[GUEST_STAT_MAJOR_FAULTS] = 5000;
        s.value[GUEST_STAT_ALLOC_STALLS] = 7;
        s.valid |= UINT32_C(1) << GUEST_STAT_SWAP_IN | UINT32_C(1) << GUEST_STAT_MAJOR_FAULTS |
                UINT32_C(1) << GUEST_STAT_ALLOC_STALLS;
        vm_backend_stats(x->vm, &s);
        vm_snapshot(x->vm, 1, &p);
        assert_true(p.has_stats);
        assert_int_equal(p.guest_available, 700 * MIB);
        assert_int_equal(p.guest_free, 350 * MIB);
        /* One report: no rates yet. */
        assert_int_equal(p.swap_in_rate, 0);
        assert_int_equal(p.alloc_stalls, 0);

        /* Two seconds later: the deltas over the time between the reports. */
        s.last_update = 1002;
        s.value[GUEST_STAT_SWAP_IN] += 8 * MIB;
        s.value[GUEST_STAT_MAJOR_FAULTS] += 600;
        s.value[GUEST_STAT_ALLOC_STALLS] += 3;
        vm_backend_stats(x->vm, &s);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.swap_in_rate, 4 * MIB);
        assert_int_equal(p.major_fault_rate, 300);
        assert_int_equal(p.alloc_stalls, 3);

        /* Read again before the guest reported again: the same report, the rates kept. */
        vm_backend_stats(x->vm, &s);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.swap_in_rate, 4 * MIB);
        assert_int_equal(p.major_fault_rate, 300);
        assert_int_equal(p.alloc_stalls, 3);

        /* Once decided on, the same increase is not seen again until the guest reports anew. */
        PolicyDecision none = { .action = POLICY_NONE };
        vm_apply_decision(x->vm, 1, &none, false);
        vm_backend_stats(x->vm, &s);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.swap_in_rate, 4 * MIB);
        assert_int_equal(p.alloc_stalls, 0);

        /* Counters that went backwards (the guest rebooted) count as no increase. */
        s.last_update = 1004;
        s.value[GUEST_STAT_SWAP_IN] = 0;
        s.value[GUEST_STAT_ALLOC_STALLS] = 0;
        vm_backend_stats(x->vm, &s);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.swap_in_rate, 0);
        assert_int_equal(p.alloc_stalls, 0);
        assert_int_equal(p.major_fault_rate, 0);

        /* A malformed report, or one without available memory: no stats, hence no inflation. */
        vm_backend_stats(x->vm, NULL);
        vm_snapshot(x->vm, 1, &p);
        assert_false(p.has_stats);
        s = fake_stats(1006, 700 * MIB);
        s.valid &= ~(UINT32_C(1) << GUEST_STAT_AVAILABLE_MEMORY);
        vm_backend_stats(x->vm, &s);
        vm_snapshot(x->vm, 1, &p);
        assert_false(p.has_stats);
}

static void test_memory_high_order(void **state) {
        Fixture *x = *state;
        FakeBackend *f = fake_backend_of(x->vm);
        PolicyDecision d;

        adopt(x);
        assert_int_equal(vm_refresh(x->vm), 0); /* reads memory.high: 2.25G */
        assert_true(x->vm->memory_high_known);
        assert_int_equal(x->vm->memory_high, 2304 * MIB);

        /* A deflation raises memory.high first, so the host does not take back at once what the guest
         * just got. */
        d = decision(x->vm, POLICY_DEFLATE, "test deflate");
        d.target = 1792 * MIB;
        d.memory_high = 2560 * MIB;
        d.raise_high_first = true;
        vm_apply_decision(x->vm, 1, &d, false);
        assert_int_equal(f->n_targets, 1);
        assert_int_equal(f->target, 1792 * MIB);
        assert_int_equal(f->high_at_target, 2560 * MIB);
        assert_int_equal(memory_high(x), 2560 * MIB);

        /* An inflation lowers it after the balloon command. */
        vm_backend_balloon_moved(x->vm, 1792 * MIB);
        d = decision(x->vm, POLICY_INFLATE, "test inflate");
        d.target = GIB;
        d.memory_high = 1280 * MIB;
        vm_apply_decision(x->vm, 2, &d, false);
        assert_int_equal(f->n_targets, 2);
        assert_int_equal(f->target, GIB);
        assert_int_equal(f->high_at_target, 2560 * MIB);
        /* Not under the balloon still in flight (1.75G) + overhead. */
        assert_int_equal(memory_high(x), 2 * GIB);

        /* Dry run (or paused): neither. */
        d = decision(x->vm, POLICY_DEFLATE, "test dry run");
        d.target = 1536 * MIB;
        d.memory_high = 1792 * MIB;
        d.raise_high_first = true;
        vm_apply_decision(x->vm, 3, &d, true);
        assert_int_equal(f->n_targets, 2);
        assert_int_equal(memory_high(x), 2 * GIB);
}

static void hold_twice_then_inflate_then_hold(Fixture *x) {
        PolicyDecision hold = decision(x->vm, POLICY_HOLD, "held: in hysteresis"), d;

        vm_apply_decision(x->vm, 1, &hold, false);
        vm_apply_decision(x->vm, 2, &hold, false);
        d = decision(x->vm, POLICY_INFLATE, "inflate after the hold");
        d.target = GIB;
        vm_apply_decision(x->vm, 3, &d, false);
        hold = decision(x->vm, POLICY_HOLD, "held: in hysteresis");
        vm_apply_decision(x->vm, 4, &hold, false);
        vm_apply_decision(x->vm, 5, &hold, false);
}

static void test_hold_logged_once(void **state) {
        Fixture *x = *state;
        _cleanup_free_ char *log = NULL;

        adopt(x);
        assert_int_equal(vm_refresh(x->vm), 0);
        log = capture_log(hold_twice_then_inflate_then_hold, x);

        /* Each hold once, when it starts; the inflation between them. */
        assert_int_equal(count(log, "decision vm=web action=hold"), 2);
        /* A hold moves nothing (not memory.high's value). */
        assert_int_equal(count(log, "action=hold bytes=0 "), 2);
        assert_int_equal(count(log, "decision vm=web action=inflate"), 1);
        assert_int_equal(x->vm->n_decisions[POLICY_HOLD], 2);
        assert_int_equal(x->vm->n_decisions[POLICY_INFLATE], 1);
        assert_int_equal(vm_history_count(x->vm), 3);
        assert_int_equal(vm_history_entry(x->vm, 0)->action, POLICY_HOLD);
        assert_int_equal(vm_history_entry(x->vm, 1)->action, POLICY_INFLATE);
        assert_int_equal(vm_last_decision(x->vm)->usec, 4);
        assert_string_equal(vm_last_decision(x->vm)->reason, "held: in hysteresis");
}

/* Paused or in a dry run nothing moves, so the same decision comes at every tick: said once, then
 * again after REPEAT_LOG_USEC; a hold with quiet ticks between is still the same hold. */
static void repeat_decisions(Fixture *x) {
        PolicyDecision d = decision(x->vm, POLICY_INFLATE, "host pressure"), none = decision(x->vm, POLICY_NONE, "");
        PolicyDecision hold = decision(x->vm, POLICY_HOLD, "held: in hysteresis");

        d.target = GIB;
        for (uint64_t t = 1; t <= 30; t++)
                vm_apply_decision(x->vm, t * USEC_PER_SEC, &d, true);
        vm_apply_decision(x->vm, 31 * USEC_PER_SEC + REPEAT_LOG_USEC, &d, true);
        for (uint64_t t = 1; t <= 30; t++) {
                vm_apply_decision(x->vm, 2 * REPEAT_LOG_USEC + t * 2 * USEC_PER_SEC, &hold, false);
                vm_apply_decision(x->vm, 2 * REPEAT_LOG_USEC + t * 2 * USEC_PER_SEC + 1, &none, false);
        }
        /* A hold for another cause is news. */
        hold = decision(x->vm, POLICY_HOLD, "host pressure: goal 128M; held: in hysteresis");
        vm_apply_decision(x->vm, 3 * REPEAT_LOG_USEC, &hold, false);
}

static void test_repeats_logged_once(void **state) {
        Fixture *x = *state;
        _cleanup_free_ char *log = NULL;

        adopt(x);
        log = capture_log(repeat_decisions, x);
        assert_int_equal(count(log, "decision vm=web action=inflate"), 2);
        assert_int_equal(count(log, "decision vm=web action=hold"), 2);
        assert_int_equal(x->vm->target, 3 * GIB / 2); /* dry run: nothing sent */
}

static void test_history_ring(void **state) {
        Fixture *x = *state;

        adopt(x);
        assert_null(vm_last_decision(x->vm));
        for (unsigned i = 0; i < VM_HISTORY_MAX + 3; i++) {
                PolicyDecision d = decision(x->vm, POLICY_INFLATE, "test");
                d.target = GIB - i * MIB;
                vm_apply_decision(x->vm, i + 1, &d, true);
        }
        /* The last VM_HISTORY_MAX, oldest first. */
        assert_int_equal(vm_history_count(x->vm), VM_HISTORY_MAX);
        assert_int_equal(vm_history_entry(x->vm, 0)->usec, 4);
        assert_int_equal(vm_last_decision(x->vm)->usec, VM_HISTORY_MAX + 3);
}

static void test_refresh_and_events(void **state) {
        Fixture *x = *state;
        GuestPressureEvent e = { .level = GUEST_PRESSURE_LEVEL_CRITICAL, .size = 32 * MIB };
        PolicyDecision d;
        PolicyVM p;

        /* Before adoption, a guest pressure event is noted but decides nothing. */
        vm_backend_guest_pressure(x->vm, &e);
        assert_int_equal(x->decisions, 0);

        adopt(x);
        fake_backend_of(x->vm)->pending = 2;
        assert_int_equal(vm_refresh(x->vm), 2);
        assert_int_equal(fake_backend_of(x->vm)->refreshes, 1);
        vm_backend_refresh_done(x->vm);
        vm_backend_refresh_done(x->vm);
        assert_int_equal(x->queries_done, 1); /* once per refresh, at its last answer */

        /* A decision at once, on the messages so far folded (the one before adoption too); the
         * balloon is not touched by the event. */
        vm_backend_guest_pressure(x->vm, &e);
        assert_int_equal(x->decisions, 1);
        assert_string_equal(x->why, "guest pressure event");
        vm_snapshot(x->vm, 1, &p);
        assert_true(p.pressure_event);
        assert_int_equal(p.pressure_event_level, GUEST_PRESSURE_LEVEL_CRITICAL);
        assert_int_equal(p.pressure_event_size, 32 * MIB);
        assert_int_equal(p.pressure_event_count, 2);
        assert_int_equal(p.actual, 3 * GIB / 2);
        assert_int_equal(p.target, 3 * GIB / 2);

        /* A decision consumes it, and carries the policy's state. */
        d = decision(x->vm, POLICY_NONE, "");
        d.carry.hysteresis_until_usec = 99;
        vm_apply_decision(x->vm, 1, &d, false);
        vm_snapshot(x->vm, 1, &p);
        assert_false(p.pressure_event);
        assert_int_equal(p.carry.hysteresis_until_usec, 99);

        /* A reload resolves the config again and re-arms the trigger. */
        vm_reload(x->vm);
        assert_int_equal(x->triggers, 2);
}

/* A guest sending messages without end: those within GuestPressureIntervalSec= of the last acted
 * on are folded (highest level, largest hint, counted) and decided on once, when it ends, by a
 * timer; decisions in between for other causes do not take them. */
static void test_guest_pressure_folded(void **state) {
        Fixture *x = *state;
        PolicyDecision d;
        PolicyVM p;
        uint64_t t, interval = 100 * USEC_PER_MSEC;

        adopt(x);
        x->config->guest_pressure_interval_usec = interval;
        vm_backend_guest_pressure(x->vm, &(GuestPressureEvent) { .level = GUEST_PRESSURE_LEVEL_LOW });
        assert_int_equal(x->decisions, 1);
        t = clock_now(x);
        d = decide(x, t, false);
        assert_int_equal(d.action, POLICY_HOLD);
        assert_non_null(strstr(d.reason, "guest driver event low"));

        vm_backend_guest_pressure(x->vm, &(GuestPressureEvent) { .level = GUEST_PRESSURE_LEVEL_MEDIUM, .size = 8 * MIB });
        vm_backend_guest_pressure(x->vm, &(GuestPressureEvent) { .level = GUEST_PRESSURE_LEVEL_CRITICAL });
        vm_backend_guest_pressure(x->vm, &(GuestPressureEvent) { .level = GUEST_PRESSURE_LEVEL_LOW, .size = UINT64_MAX });
        assert_int_equal(x->decisions, 1);
        assert_non_null(x->vm->pressure_timer);

        /* A tick within the interval: not presented, not taken. */
        vm_snapshot(x->vm, t + interval - 1, &p);
        assert_false(p.pressure_event);
        d = decide(x, t + interval - 1, false);
        assert_int_equal(d.action, POLICY_NONE);
        vm_snapshot(x->vm, t + interval, &p);
        assert_true(p.pressure_event);
        assert_int_equal(p.pressure_event_level, GUEST_PRESSURE_LEVEL_CRITICAL);
        assert_int_equal(p.pressure_event_count, 3);
        assert_int_equal(p.pressure_event_size, 2 * GIB); /* the boot memory bounds the hint */

        /* The timer decides when the interval ends: critical, the hint bounded by MaxStep=. */
        while (x->decisions == 1)
                assert_true(sd_event_run(x->event, UINT64_MAX) >= 0);
        assert_string_equal(x->why, "guest pressure event");
        d = decide(x, MAX(clock_now(x), t + interval), false);
        assert_int_equal(d.action, POLICY_DEFLATE);
        assert_int_equal(d.target, 3 * GIB / 2 + x->config->max_step);
        assert_string_equal(d.reason, "guest driver event critical (3 messages) lacking 2G: deflate 256M, hysteresis 60s");
        vm_snapshot(x->vm, t + 10 * interval, &p);
        assert_false(p.pressure_event);
}

/* A slice removed and created again between two scans: its trigger gets EPOLLERR, and the next
 * refreshes arm it again, quietly until it works. */
static void test_slice_trigger_rearmed(void **state) {
        Fixture *x = *state;

        adopt(x);
        assert_int_equal(x->triggers, 1);
        assert_non_null(x->handler);
        assert_int_equal(x->handler(NULL, -1, EPOLLERR, x->handler_data), 0);
        assert_int_equal(x->decisions, 0);

        x->arm_error = -ENOENT; /* not back yet */
        (void) vm_refresh(x->vm);
        assert_int_equal(x->triggers, 2);
        x->arm_error = 0;
        (void) vm_refresh(x->vm);
        assert_int_equal(x->triggers, 3);
        (void) vm_refresh(x->vm); /* armed: not again */
        assert_int_equal(x->triggers, 3);

        x->handler(NULL, -1, EPOLLPRI, x->handler_data);
        assert_int_equal(x->decisions, 1);
        assert_string_equal(x->why, "slice pressure");
}

/* MinMemory= and MaxMemory= resolved against the boot memory (2G): a ceiling above it is the boot
 * memory, and a floor above the ceiling (mixed units, which the loader cannot compare) wins. */
static void test_limits(void **state) {
        Fixture *x = *state;
        VMConfig meta;
        PolicyVM p;

        adopt(x);
        vm_config_defaults(&meta);
        assert_int_equal(vm_config_set(&meta, "MaxMemory", "4G", &(const char *) { NULL }), 0);
        vm_backend_metadata(x->vm, &meta);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.max, 2 * GIB);
        assert_int_equal(p.min, 512 * MIB);

        assert_int_equal(vm_config_set(&meta, "MaxMemory", "1", &(const char *) { NULL }), 0);
        vm_backend_metadata(x->vm, &meta);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.min, 512 * MIB);
        assert_int_equal(p.max, 512 * MIB);

        assert_int_equal(vm_config_set(&meta, "MaxMemory", "25%", &(const char *) { NULL }), 0);
        vm_backend_metadata(x->vm, &meta);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.max, 512 * MIB);
}

/* What a domain's metadata may ask is bounded by the host's configuration. */
static void test_domain_bounds(void **state) {
        Fixture *x = *state;
        VMConfig meta;
        PolicyVM p;

        adopt(x);
        x->config->vms[0].min_set = false; /* the file leaves the floor to the domain */
        x->config->domain_max_weight = 150;
        x->config->domain_max_min_memory = (SizeSpec) { .bytes = GIB };
        vm_config_defaults(&meta);
        assert_int_equal(vm_config_set(&meta, "Weight", "300", &(const char *) { NULL }), 0);
        assert_int_equal(vm_config_set(&meta, "MinMemory", "90%", &(const char *) { NULL }), 0);
        vm_backend_metadata(x->vm, &meta);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.weight, 150);
        assert_int_equal(p.min, GIB);

        /* Not read at all. */
        x->config->domain_metadata = false;
        vm_backend_metadata(x->vm, &meta);
        vm_snapshot(x->vm, 1, &p);
        assert_int_equal(p.weight, 100);
        assert_int_equal(p.min, 512 * MIB); /* the default 25% of 2G */
}

static void test_stale_stats(void **state) {
        Fixture *x = *state;
        FakeBackend *f = fake_backend_of(x->vm);
        GuestStats s = fake_stats(100, GIB);
        uint64_t max_age;
        PolicyVM p;

        adopt(x);
        assert_int_equal(x->refreshes_asked, 1); /* read at once once adopted */

        /* Read at StatsIntervalSec= (1 s), which the backend asked the guest for at adoption: stale
         * after 2 x (1 + 1) s. */
        vm_set_poll_interval(x->vm, USEC_PER_SEC);
        assert_int_equal(f->n_intervals, 0);
        max_age = vm_stats_max_age(x->vm);
        assert_int_equal(max_age, 4 * USEC_PER_SEC);
        vm_backend_stats(x->vm, &s);
        uint64_t seen = x->vm->stats_seen_usec;
        vm_snapshot(x->vm, seen + max_age, &p);
        assert_true(p.has_stats);
        vm_snapshot(x->vm, seen + max_age + 1, &p);
        assert_false(p.has_stats);

        /* The same report read again is no fresher. */
        vm_backend_stats(x->vm, &s);
        assert_int_equal(x->vm->stats_seen_usec, seen);
        usleep(1000);
        s.last_update++;
        vm_backend_stats(x->vm, &s);
        assert_true(x->vm->stats_seen_usec > seen);

        /* A slower interval allows older stats, and the backend asks the guest at it. */
        vm_set_poll_interval(x->vm, 10 * USEC_PER_SEC);
        assert_int_equal(f->n_intervals, 1);
        assert_int_equal(f->stats_interval, 10 * USEC_PER_SEC);
        assert_int_equal(vm_stats_max_age(x->vm), 22 * USEC_PER_SEC);

        /* One refresh at a time: not asked again before its answers are in. */
        f->pending = 2;
        assert_int_equal(vm_refresh(x->vm), 2);
        assert_int_equal(vm_refresh(x->vm), 0);
        assert_int_equal(f->refreshes, 1);
        assert_int_equal(x->vm->next_refresh_usec, x->vm->refresh_usec + 10 * USEC_PER_SEC);
        vm_backend_refresh_done(x->vm);
        vm_backend_refresh_done(x->vm);
        assert_int_equal(x->queries_done, 1);
        assert_int_equal(vm_refresh(x->vm), 2);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_adoption_and_removal, setup, teardown),
                cmocka_unit_test_setup_teardown(test_balloon_moved, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lying_actual, setup, teardown),
                cmocka_unit_test_setup_teardown(test_balloon_crawls, setup, teardown),
                cmocka_unit_test_setup_teardown(test_deflated_outside, setup, teardown),
                cmocka_unit_test_setup_teardown(test_max_memory_guest_events, setup, teardown),
                cmocka_unit_test_setup_teardown(test_memory_high_steps, setup, teardown),
                cmocka_unit_test_setup_teardown(test_update_stats, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stats_window, setup, teardown),
                cmocka_unit_test_setup_teardown(test_slice_cache, setup, teardown),
                cmocka_unit_test_setup_teardown(test_memory_high_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hold_logged_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_repeats_logged_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_history_ring, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refresh_and_events, setup, teardown),
                cmocka_unit_test_setup_teardown(test_guest_pressure_folded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_slice_trigger_rearmed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
                cmocka_unit_test_setup_teardown(test_domain_bounds, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stale_stats, setup, teardown),
        };

        log_setup(LOG_TARGET_STDERR, LOG_INFO);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
