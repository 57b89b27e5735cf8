/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The default policy's reading of its signals: its own throttling told from a host shortage, page
 * cache in the slice, the slow idle estimate, headroom following growth, deflation by shortfall. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "macro.h"
#include "policy.h"
#include "test-policy-sim.h"

static uint64_t reduction(const Sim *s, size_t i) {
        return s->vm[i].actual - s->out[i].target;
}

/* A VM stalling at its memory.high while the host has room is short of its allotment: memory.high is
 * raised, by what it holds over it plus a step, and nothing is inflated. */
static void test_own_throttling_raises_high(void **state) {
        Sim s;

        sim_init(&s, 2);
        /* QEMU holds more than balloon + overhead (memory.high = 2G + 256M). */
        s.vm[0].memory_current = s.vm[0].memory_high + 50 * MIB;
        s.vm[0].slice_pressure = true;
        s.vm[1].memory_current = s.vm[1].memory_high + 50 * MIB; /* no trigger: nothing */
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_SET_HIGH);
        assert_int_equal(s.out[0].target, s.vm[0].target);
        assert_int_equal(s.out[0].memory_high, 2 * GIB + 256 * MIB + 66 * MIB);
        assert_true(s.out[0].raise_high_first);
        assert_reason(&s.out[0], "own throttling");
        assert_int_equal(s.out[1].action, POLICY_NONE);

        /* Carried back, the raise is not undone by memory.high following the balloon. */
        sim_apply(&s);
        s.host.now_usec += USEC_PER_SEC;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_NONE);

        /* No more than the host has above its reserve. */
        sim_init(&s, 1);
        s.host.available = s.p.host_reserve + 10 * MIB;
        s.vm[0].memory_current = s.vm[0].memory_high + 50 * MIB;
        s.vm[0].slice_pressure = true;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_SET_HIGH);
        assert_int_equal(s.out[0].memory_high, 2 * GIB + 256 * MIB + 10 * MIB);

        /* Nor above MaxMemory= + overhead: a VM at its allotment is inflated, as before. */
        sim_init(&s, 1);
        s.vm[0].guest_available = GIB;
        s.vm[0].memory_high = s.vm[0].max + s.p.memory_high_overhead;
        s.vm[0].memory_current = s.vm[0].memory_high + 50 * MIB;
        s.vm[0].slice_pressure = true;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(reduction(&s, 0), 66 * MIB);
        assert_reason(&s.out[0], "at its allotment");

        /* With the host calm and give-back on, not above the VM's entitlement: the host's 20M of
         * spare on top of what the VM holds. */
        sim_init(&s, 1);
        s.p.refill_margin = 512 * MIB;
        s.p.refill_settle_usec = 30 * USEC_PER_SEC;
        s.p.refill_delay_usec = 60 * USEC_PER_SEC;
        s.p.refill_rate = 32 * MIB;
        s.host.available = s.p.host_reserve + s.p.refill_margin + 20 * MIB;
        s.vm[0].actual = s.vm[0].target = GIB;
        s.vm[0].memory_high = GIB + s.p.memory_high_overhead;
        s.vm[0].memory_current = s.vm[0].memory_high + 50 * MIB;
        s.vm[0].slice_pressure = true;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_SET_HIGH);
        assert_int_equal(s.out[0].entitlement, GIB + 20 * MIB);
        assert_int_equal(s.out[0].memory_high, GIB + 20 * MIB + s.p.memory_high_overhead);
        assert_reason(&s.out[0], "at most entitlement");

        /* With the host short, the slice's excess is inflated. */
        sim_init(&s, 1);
        s.vm[0].guest_available = GIB;
        s.host.available = s.p.host_reserve - MIB;
        s.vm[0].memory_current = s.vm[0].memory_high + 200 * MIB;
        s.vm[0].slice_pressure = true;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(reduction(&s, 0), 216 * MIB);
        assert_reason(&s.out[0], "host short");
}

/* Page cache of QEMU's disk I/O charged to the slice is the host's to reclaim: stalls on it are no
 * demand, and a VM's ask counts what it holds without it. */
static void test_page_cache_not_demand(void **state) {
        Sim s;

        sim_init(&s, 1);
        s.vm[0].memory_current = s.vm[0].memory_high + 50 * MIB;
        s.vm[0].slice_cache = 600 * MIB;
        s.vm[0].slice_pressure = true;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_NONE);
        assert_int_equal(s.out[0].memory_high, s.vm[0].memory_high);
        assert_reason(&s.out[0], "host page cache");

        /* Under host pressure it is the host share that is taken, not the slice's cache on top. */
        sim_init(&s, 1);
        s.vm[0].guest_available = GIB;
        s.host.pressure = true;
        s.p.reclaim_step = 32 * MIB;
        s.vm[0].memory_current = s.vm[0].memory_high + 200 * MIB;
        s.vm[0].slice_cache = 600 * MIB;
        s.vm[0].slice_pressure = true;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(reduction(&s, 0), 32 * MIB);
        assert_reason(&s.out[0], "host pressure");

        /* Without the cache the same VM's excess is taken, as the test above. */
        s.vm[0].slice_cache = 0;
        sim_decide(&s);
        assert_int_equal(reduction(&s, 0), 216 * MIB);
}

/* Free memory a guest used within the window is not idle: of two guests with as much free memory,
 * the one that had used it lately is taxed as if it had none. */
static void test_idle_window(void **state) {
        Sim s;

        sim_init(&s, 2);
        s.host.pressure = true;
        s.p.reclaim_step = 256 * MIB;
        for (size_t i = 0; i < 2; i++) {
                s.vm[i].guest_free = GIB;
                s.vm[i].guest_available = 3 * GIB / 2;
        }
        sim_decide(&s);
        assert_int_equal(reduction(&s, 0), 128 * MIB);
        assert_int_equal(reduction(&s, 1), 128 * MIB);

        s.vm[0].guest_free_recent = GIB;
        sim_decide(&s);
        assert_int_equal(reduction(&s, 0), 0);
        assert_int_equal(reduction(&s, 1), 256 * MIB);
        assert_reason(&s.out[0], "idle 0B taxed");
}

/* The same for give-back's entitlements: the guest that used its free memory lately is entitled to
 * more of the host's spare than one whose memory stayed free. */
static void test_idle_window_entitlement(void **state) {
        Sim s;

        sim_init(&s, 2);
        s.p.refill_margin = 512 * MIB;
        s.p.refill_settle_usec = 30 * USEC_PER_SEC;
        s.p.refill_delay_usec = 60 * USEC_PER_SEC;
        s.p.refill_rate = 32 * MIB;
        s.host.available = s.p.host_reserve + s.p.refill_margin + 256 * MIB;
        for (size_t i = 0; i < 2; i++) {
                s.vm[i].actual = s.vm[i].target = GIB;
                s.vm[i].memory_high = s.vm[i].memory_current = GIB + s.p.memory_high_overhead;
                s.vm[i].guest_free = 900 * MIB;
                s.vm[i].guest_available = 950 * MIB;
        }
        sim_decide(&s);
        assert_int_equal(s.out[0].entitlement, s.out[1].entitlement);

        s.vm[0].guest_free_recent = 900 * MIB;
        sim_decide(&s);
        assert_true(s.out[0].entitlement >= s.out[1].entitlement + 128 * MIB);
}

/* A guest whose demand grew by more than GuestReserve= between two reads keeps that much available. */
static void test_headroom_follows_growth(void **state) {
        Sim s;

        sim_init(&s, 1);
        s.host.pressure = true;
        s.p.reclaim_step = GIB;
        s.vm[0].guest_available = 300 * MIB;
        sim_decide(&s);
        assert_int_equal(reduction(&s, 0), 236 * MIB);

        s.vm[0].guest_growth = 200 * MIB;
        sim_decide(&s);
        assert_int_equal(reduction(&s, 0), 100 * MIB);
        assert_reason(&s.out[0], "headroom 200M (growth seen)");

        /* Growth below the reserve changes nothing. */
        s.vm[0].guest_growth = 10 * MIB;
        sim_decide(&s);
        assert_int_equal(reduction(&s, 0), 236 * MIB);
}

/* What the guest freed within IdleWindowSec= is not taken by an inflation either: a working set
 * that frees and touches again its memory keeps it (the cap is what stayed available). */
static void test_idle_window_caps_inflation(void **state) {
        Sim s;

        sim_init(&s, 1);
        s.host.pressure = true;
        s.p.reclaim_step = GIB;
        s.vm[0].guest_free = 250 * MIB;
        s.vm[0].guest_available = 300 * MIB;
        sim_decide(&s);
        assert_int_equal(reduction(&s, 0), 236 * MIB);

        s.vm[0].guest_free_recent = 200 * MIB;
        sim_decide(&s);
        assert_int_equal(reduction(&s, 0), 36 * MIB);
        assert_reason(&s.out[0], "freed within the window 200M");
}

static uint64_t deflated(const Sim *s, size_t i) {
        return s->out[i].target - s->vm[i].actual;
}

/* A guest short of available memory gets what it lacks of its headroom at once, at most MaxStep=;
 * other signals, which do not show how much, DeflateStep=. */
static void test_deflate_by_shortfall(void **state) {
        Sim s;

        sim_init(&s, 1);
        s.vm[0].guest_available = 10 * MIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(deflated(&s, 0), 54 * MIB);
        assert_reason(&s.out[0], "shortfall");

        s.vm[0].guest_growth = 150 * MIB;
        sim_decide(&s);
        assert_int_equal(deflated(&s, 0), 140 * MIB);

        s.vm[0].guest_growth = 2 * GIB;
        sim_decide(&s);
        assert_int_equal(deflated(&s, 0), s.p.max_step);

        sim_init(&s, 1);
        s.vm[0].swap_in_rate = 10 * MIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(deflated(&s, 0), s.p.deflate_step);

        /* The host short too: a guest below GuestMinAvailable= holds what it has, but one below
         * half of it, about to OOM-kill, still gets its shortfall. */
        sim_init(&s, 1);
        s.host.pressure = true;
        s.vm[0].guest_min_available = 32 * MIB;
        s.vm[0].guest_available = 20 * MIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_HOLD);
        assert_reason(&s.out[0], "host under pressure too");
        s.vm[0].guest_available = 10 * MIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(deflated(&s, 0), 54 * MIB);
        assert_reason(&s.out[0], "though the host is short too");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_own_throttling_raises_high),
                cmocka_unit_test(test_page_cache_not_demand),
                cmocka_unit_test(test_idle_window),
                cmocka_unit_test(test_idle_window_entitlement),
                cmocka_unit_test(test_headroom_follows_growth),
                cmocka_unit_test(test_idle_window_caps_inflation),
                cmocka_unit_test(test_deflate_by_shortfall),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
