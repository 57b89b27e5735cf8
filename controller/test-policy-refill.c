/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Policy=autoballoon's give-back: entitlements by weight and idle tax, the dead band, the settle
 * time, the rate, and no give-back soon after an inflation. */

#include <inttypes.h>
#include <limits.h>

#include "test-policy-sim.h"

#define RESERVE (256 * MIB)
#define MARGIN (512 * MIB)
#define SETTLE (30 * USEC_PER_SEC)
#define DELAY (60 * USEC_PER_SEC)

/* A calm host with 'spare' above the give-back threshold; n VMs at 1G of [512M, 4G], short of free
 * memory, their slices holding all of it. */
static void refill_init(Sim *s, size_t n, uint64_t spare) {
        sim_init(s, n);
        s->p.refill_margin = MARGIN;
        s->p.refill_settle_usec = SETTLE;
        s->p.refill_delay_usec = DELAY;
        s->p.refill_rate = 32 * MIB;
        s->host.available = RESERVE + MARGIN + spare;
        for (size_t i = 0; i < n; i++) {
                PolicyVM *vm = &s->vm[i];

                vm->actual = vm->target = GIB;
                vm->memory_current = GIB + 256 * MIB;  /* QEMU's own memory on top */
                vm->memory_high = GIB + 256 * MIB;
                vm->guest_available = 200 * MIB;
                vm->guest_free = 0;
        }
}

#define assert_near_page(a, b) assert_true((a) + POLICY_PAGE_SIZE > (b) && (b) + POLICY_PAGE_SIZE > (a))

/* Spare for everyone: every VM is entitled to its max and gets it back a step at a time, memory.high
 * first. */
static void test_refill_to_max(void **state) {
        Sim s;

        refill_init(&s, 2, 16 * GIB);
        sim_decide(&s);
        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(s.out[i].entitlement, 4 * GIB);
                assert_int_equal(s.out[i].action, POLICY_DEFLATE);
                assert_int_equal(s.out[i].target, GIB + 256 * MIB);   /* MaxStep= */
                assert_int_equal(s.out[i].memory_high, GIB + 512 * MIB);
                assert_true(s.out[i].raise_high_first);
                assert_int_equal(s.out[i].carry.last_refill_usec, T0);
                assert_reason(&s.out[i], "give-back: host calm");
                assert_reason(&s.out[i], "capped by max step 256M");
        }
        assert_reason(&s.summary, "give-back: spare 16G");
        assert_int_equal(s.summary.last_pressure_usec, 0);

        /* In flight: nothing more. */
        sim_apply(&s);
        s.host.now_usec += USEC_PER_SEC;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_NONE);
        assert_reason(&s.out[0], "give-back to 1.2G in flight");

        /* Arrived a second later: the rate allows 32M. */
        sim_move(&s, 0);
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.out[0].target, GIB + 288 * MIB);
        assert_reason(&s.out[0], "capped by rate 32M/s");

        /* Until the max, where nothing is left to do. */
        for (unsigned k = 0; k < 200; k++) {
                sim_apply(&s);
                s.host.now_usec += 10 * USEC_PER_SEC;
                sim_move(&s, 0);
                sim_move(&s, 1);
                s.vm[0].memory_high = s.out[0].memory_high;
                sim_decide(&s);
        }
        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(s.vm[i].actual, 4 * GIB);
                assert_int_equal(s.out[i].action, POLICY_NONE);
                assert_reason(&s.out[i], "entitlement 4G: at it");
        }
}

/* A spare that does not cover every max is shared by weight above what each VM uses. */
static void test_refill_shares_by_weight(void **state) {
        Sim s;

        refill_init(&s, 2, GIB);
        s.vm[0].weight = 100;
        s.vm[1].weight = 300;
        sim_decide(&s);

        /* Both use 512M above their floor; 3G to share: at the level L, each has 512M + (L * weight
         * - 512M) / 4 above its floor, the 1G spare being idle in the guest until used. L = 12.8M. */
        assert_near_page(s.out[0].entitlement, 1216 * MIB);
        assert_near_page(s.out[1].entitlement, 1856 * MIB);
        assert_int_equal(s.out[0].target, GIB + 192 * MIB);
        assert_int_equal(s.out[1].target, GIB + 256 * MIB);
        assert_reason(&s.out[1], "by weight 300");

        /* Given back, the entitlements stay: what the VMs hold of the host did not change, nor what
         * they use. */
        sim_apply(&s);
        sim_move(&s, 0);
        sim_move(&s, 1);
        for (size_t i = 0; i < 2; i++)
                s.vm[i].guest_free = s.vm[i].actual - GIB;
        s.host.now_usec += 10 * USEC_PER_SEC;
        sim_decide(&s);
        assert_near_page(s.out[0].entitlement, 1216 * MIB);
        assert_near_page(s.out[1].entitlement, 1856 * MIB);
        assert_int_equal(s.out[0].action, POLICY_NONE);
        assert_int_equal(s.out[1].action, POLICY_DEFLATE);
        assert_int_equal(s.out[1].target, GIB + 512 * MIB);
}

/* The idle tax: of two VMs of the same weight and size, the one with free memory needs little back,
 * the one whose cache was squeezed gets most of the spare; without the tax they split it evenly. */
static void test_refill_idle_tax(void **state) {
        Sim s;

        refill_init(&s, 2, 512 * MIB);
        s.vm[1].guest_free = 448 * MIB;
        s.vm[1].guest_available = 600 * MIB;
        sim_decide(&s);

        /* Above the floors: 512M and 64M used, 1.5G to share; L = 2208M: 512M + (L - 512M) / 4 and
         * 64M + (L - 64M) / 4. */
        assert_near_page(s.out[0].entitlement, 1448 * MIB);
        assert_near_page(s.out[1].entitlement, 1112 * MIB);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.out[0].target, GIB + 256 * MIB);
        assert_int_equal(s.out[1].action, POLICY_DEFLATE);
        assert_near_page(s.out[1].target, 1112 * MIB);
        assert_reason(&s.out[1], "idle 448M taxed at 0.75");

        s.p.tax_rate = 0;
        sim_decide(&s);
        assert_near_page(s.out[0].entitlement, 1280 * MIB);
        assert_near_page(s.out[1].entitlement, 1280 * MIB);

        /* More free memory and less spare: none back, all to the other. Above the floors: 512M and
         * nothing used, 1.25G to share; L = 1792M: 512M + (L - 512M) / 4 and L / 4. */
        s.p.tax_rate = 0.75;
        s.vm[1].guest_free = 900 * MIB;
        s.vm[1].guest_available = 950 * MIB;
        s.host.available = RESERVE + MARGIN + 256 * MIB;
        sim_decide(&s);
        assert_near_page(s.out[0].entitlement, 1344 * MIB);
        assert_near_page(s.out[1].entitlement, 960 * MIB);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.out[0].target, GIB + 256 * MIB);
        assert_true(s.out[1].entitlement <= GIB);
        assert_int_equal(s.out[1].action, POLICY_NONE);
        assert_reason(&s.out[1], ": at it");
}

/* Nothing comes back while the host has pressure, in the dead band, within the settle time after the
 * last pressure, or with RefillRate=0. */
static void test_refill_when_calm_only(void **state) {
        Sim s;

        refill_init(&s, 1, 4 * GIB);
        s.host.pressure = true;
        sim_tick(&s);
        assert_int_equal(s.summary.last_pressure_usec, T0);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        /* The inflation completes, memory.high followed it. */
        sim_move(&s, 0);
        s.vm[0].memory_high = s.vm[0].actual + 256 * MIB;
        s.vm[0].carry.last_inflate_usec = 0;    /* the settle time alone */

        /* Settling. */
        s.host.now_usec += SETTLE - USEC_PER_SEC;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_NONE);
        assert_reason(&s.out[0], "no give-back: host pressure 29s ago, settling for 30s");
        assert_int_equal(s.summary.last_pressure_usec, T0);

        /* The dead band: above the reserve but below reserve + margin. */
        s.host.now_usec += 2 * USEC_PER_SEC;
        s.host.available = RESERVE + MARGIN - MIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_NONE);
        assert_reason(&s.out[0], "(dead band)");

        s.p.refill_rate = 0;
        s.host.available = 8 * GIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_NONE);
        assert_reason(&s.out[0], "give-back off");

        s.p.refill_rate = 32 * MIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);

        /* Below the reserve is pressure, with no trigger too. */
        s.host.available = RESERVE - MIB;
        sim_decide(&s);
        assert_int_not_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.summary.last_pressure_usec, s.host.now_usec);

        /* Guest pressure takes its own path (DeflateStep=), whatever the host. */
        s.host.available = 8 * GIB;
        s.vm[0].swap_in_rate = 10 * MIB;
        sim_decide(&s);
        assert_reason(&s.out[0], "guest pressure");
}

/* A VM inflated within RefillDelaySec= is not given memory back, however calm the host. */
static void test_refill_anti_flap(void **state) {
        Sim s;

        refill_init(&s, 2, 4 * GIB);
        s.vm[0].carry.last_inflate_usec = T0 - DELAY + USEC_PER_SEC;
        s.vm[1].carry.last_inflate_usec = T0 - DELAY;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_NONE);
        assert_int_equal(s.out[0].target, GIB);
        assert_reason(&s.out[0], "no give-back for 60s after the last inflate (59s ago)");
        assert_int_equal(s.out[1].action, POLICY_DEFLATE);

        s.host.now_usec += USEC_PER_SEC;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
}

/* A host whose other load moves its available memory around a threshold, the VMs' balloons following
 * their targets at once. Returns the reversals (an inflation after a deflation or the reverse) of the
 * VM that had the most, and the give-backs of all VMs in *ret_refills. */
static unsigned oscillate(uint64_t center, uint64_t amplitude, uint64_t period_usec, unsigned *ret_refills) {
        unsigned reversals[3] = {}, refills = 0, most = 0;
        int last[3] = {};
        uint64_t used0 = 0;
        Sim s;

        refill_init(&s, 3, 0);
        for (size_t i = 0; i < 3; i++) {
                s.vm[i].actual = s.vm[i].target = 3 * GIB;
                s.vm[i].guest_available = 2 * GIB;
                used0 += s.vm[i].actual;
        }

        for (unsigned k = 0; k < 1000; k++) {
                uint64_t used = 0, phase = (s.host.now_usec - T0) % period_usec;
                int64_t load = phase < period_usec / 2 ? (int64_t) amplitude : -(int64_t) amplitude;

                for (size_t i = 0; i < 3; i++) {
                        sim_move(&s, i);
                        /* The guest uses what it is given: a give-back is used at once. */
                        s.vm[i].memory_current = s.vm[i].actual + 256 * MIB;
                        s.vm[i].guest_free = 0;
                        s.vm[i].guest_available = s.vm[i].actual * 2 / 3;
                        used += s.vm[i].actual;
                }
                s.host.available = (uint64_t) MAX((int64_t) center + load - (int64_t) used + (int64_t) used0, 0);
                s.host.pressure = s.host.available < RESERVE;
                sim_tick(&s);

                for (size_t i = 0; i < 3; i++) {
                        int dir = s.out[i].action == POLICY_INFLATE ? -1 : s.out[i].action == POLICY_DEFLATE ? 1 : 0;

                        if (dir == 0)
                                continue;
                        refills += dir > 0;
                        if (last[i] != 0 && dir != last[i])
                                reversals[i]++;
                        last[i] = dir;
                }
                s.host.now_usec += USEC_PER_SEC;
        }
        for (size_t i = 0; i < 3; i++)
                most = MAX(most, reversals[i]);
        *ret_refills = refills;
        return most;
}

/* Over 1,000 decisions a second apart, a host oscillating around the reclaim threshold, around the
 * give-back threshold, and across both: no VM reverses more than once per settle time (a give-back
 * waits RefillDelaySec=, twice the settle time, after an inflation). */
static void test_refill_dead_band(void **state) {
        static const struct {
                uint64_t center, amplitude, period;
                bool refills;
                unsigned most;
        } cases[] = {
                /* Around the reserve, within the dead band's width: reclaimed, then the host stays
                 * in the dead band (without it, 25 reversals at 20 s). */
                { RESERVE, 200 * MIB, 20 * USEC_PER_SEC, false, 1 },
                { RESERVE, 200 * MIB, 120 * USEC_PER_SEC, false, 1 },
                /* Around the give-back threshold, never down to the reserve: given back, never
                 * reclaimed. */
                { RESERVE + MARGIN, 200 * MIB, 20 * USEC_PER_SEC, true, 0 },
                /* Across both, slow and fast: as the delay after an inflation allows. */
                { RESERVE + MARGIN / 2, 400 * MIB, 20 * USEC_PER_SEC, false, UINT_MAX },
                { RESERVE + MARGIN / 2, 400 * MIB, 60 * USEC_PER_SEC, false, UINT_MAX },
                { RESERVE + MARGIN / 2, 400 * MIB, 120 * USEC_PER_SEC, true, UINT_MAX },
                { RESERVE + MARGIN / 2, 400 * MIB, 300 * USEC_PER_SEC, true, UINT_MAX },
                { RESERVE + MARGIN / 2, 2 * GIB, 120 * USEC_PER_SEC, true, UINT_MAX },
        };

        for (size_t k = 0; k < ELEMENTSOF(cases); k++) {
                unsigned refills, most = oscillate(cases[k].center, cases[k].amplitude, cases[k].period, &refills);

                print_message("center %" PRIu64 "M amplitude %" PRIu64 "M period %" PRIu64
                              "s: %u give-backs, at most %u reversals per VM\n", cases[k].center / MIB,
                              cases[k].amplitude / MIB, cases[k].period / USEC_PER_SEC, refills, most);
                assert_true(most <= 1000 * USEC_PER_SEC / SETTLE);
                assert_true(most <= cases[k].most);
                if (cases[k].refills)
                        assert_true(refills > 0);
                else
                        assert_true(most == 0 || refills > 0);
        }
}

/* Idle reclaim: off by default; on, free memory not used within the window beyond the headroom and
 * the band goes, at its own rate, calm host or not, not in hysteresis; what the guest used within the
 * window stays. */
static void test_idle_reclaim(void **state) {
        Sim s;

        refill_init(&s, 1, 16 * GIB);
        s.vm[0].actual = s.vm[0].target = 4 * GIB;   /* at its max: nothing to give back */
        s.vm[0].memory_high = s.vm[0].memory_current = 4 * GIB + 256 * MIB;
        s.vm[0].guest_free = 3 * GIB;
        s.vm[0].guest_available = 3 * GIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_NONE);

        s.p.idle_reclaim_rate = 16 * MIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(s.out[0].target, 4 * GIB - 16 * MIB);
        assert_int_equal(s.out[0].carry.last_inflate_usec, T0);
        assert_reason(&s.out[0], "idle reclaim: free 3G, used within the window 0B, headroom 64M + band 16M: excess 2.9G");
        assert_reason(&s.out[0], "capped by rate 16M/s (1s: the first inflate)");

        /* Ten seconds later, ten seconds' worth; the host's state does not matter. */
        sim_apply(&s);
        sim_move(&s, 0);
        s.vm[0].guest_free -= 16 * MIB;
        s.host.now_usec += 10 * USEC_PER_SEC;
        s.host.available = RESERVE + MARGIN / 2;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(s.out[0].target, 4 * GIB - 176 * MIB);
        assert_reason(&s.out[0], "capped by rate 16M/s (10s since the last inflate)");

        /* What the guest used within the window is not taken; the band above the headroom is not. */
        s.vm[0].guest_free_recent = s.vm[0].guest_free - 100 * MIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(s.out[0].target, 4 * GIB - 16 * MIB - 36 * MIB);
        s.vm[0].guest_free_recent = s.vm[0].guest_free - 80 * MIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_NONE);
        assert_int_equal(s.out[0].target, 4 * GIB - 16 * MIB);
        s.vm[0].guest_free_recent = 0;

        /* In hysteresis (guest pressure a moment ago): it waits, and says nothing. */
        s.vm[0].carry.hysteresis_until_usec = s.host.now_usec + USEC_PER_SEC;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_NONE);
        assert_reason(&s.out[0], "idle reclaim: ");
        assert_reason(&s.out[0], "; waits: in hysteresis");
        s.host.now_usec += USEC_PER_SEC;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);

        /* Never below the floor. */
        s.vm[0].actual = s.vm[0].target = 600 * MIB;
        s.vm[0].guest_free = s.vm[0].guest_available = 500 * MIB;
        s.host.now_usec += 60 * USEC_PER_SEC;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(s.out[0].target, 512 * MIB);
}

/* With idle reclaim, give-back gives a guest what its free memory lacks of its headroom, not its
 * whole entitlement: a guest with free memory gets none. */
static void test_idle_reclaim_caps_giveback(void **state) {
        Sim s;

        refill_init(&s, 2, 16 * GIB);
        s.p.idle_reclaim_rate = 16 * MIB;
        s.vm[0].guest_free = 16 * MIB;
        s.vm[1].guest_free = 200 * MIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].entitlement, GIB + 48 * MIB);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.out[0].target, GIB + 48 * MIB);
        assert_int_equal(s.out[1].entitlement, GIB);
        assert_int_equal(s.out[1].action, POLICY_INFLATE);   /* 200M free: 120M above headroom + band */
        assert_reason(&s.out[1], "idle reclaim");
}

/* A guest whose use steps up and down every 2 minutes, on a calm host with idle reclaim: the balloon
 * settles at its use plus the headroom, the band at most above, and follows each step with one move,
 * never reversing more than the steps do. */
static void test_idle_reclaim_converges(void **state) {
        unsigned reversals = 0, steps = 0;
        int last = 0;
        Sim s;

        refill_init(&s, 1, 16 * GIB);
        s.p.idle_reclaim_rate = 16 * MIB;
        s.vm[0].actual = s.vm[0].target = 3 * GIB / 2;
        for (unsigned k = 0; k < 1200; k++) {
                uint64_t use = (k / 120) % 2 ? 1200 * MIB : 800 * MIB;
                PolicyVM *vm = &s.vm[0];
                int dir;

                sim_move(&s, 0);
                vm->guest_free = vm->guest_available = vm->actual > use ? vm->actual - use : 0;
                vm->memory_current = vm->actual + 256 * MIB;
                sim_tick(&s);
                dir = s.out[0].action == POLICY_INFLATE ? -1 : s.out[0].action == POLICY_DEFLATE ? 1 : 0;
                if (dir != 0) {
                        reversals += last != 0 && dir != last;
                        last = dir;
                }
                if (k % 120 == 119) {
                        /* Settled before the next step. */
                        assert_true(vm->actual >= use + 64 * MIB - POLICY_PAGE_SIZE);
                        assert_true(vm->actual <= use + 80 * MIB + POLICY_PAGE_SIZE);
                        steps++;
                }
                s.host.now_usec += USEC_PER_SEC;
        }
        print_message("%u steps, %u reversals\n", steps, reversals);
        assert_true(reversals <= steps);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_refill_to_max),
                cmocka_unit_test(test_refill_shares_by_weight),
                cmocka_unit_test(test_refill_idle_tax),
                cmocka_unit_test(test_refill_when_calm_only),
                cmocka_unit_test(test_refill_anti_flap),
                cmocka_unit_test(test_refill_dead_band),
                cmocka_unit_test(test_idle_reclaim),
                cmocka_unit_test(test_idle_reclaim_caps_giveback),
                cmocka_unit_test(test_idle_reclaim_converges),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
