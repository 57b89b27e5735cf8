/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "macro.h"
#include "policy.h"
#include "policy-internal.h"
#include "test-policy-sim.h"

static uint64_t sub0(uint64_t a, uint64_t b) {
        return a > b ? a - b : 0;
}

static uint64_t reduction(const Sim *s, size_t i) {
        return s->vm[i].actual - s->out[i].target;
}

/* ---- water-filling ---- */

static void test_water_fill_weights(void **state) {
        uint64_t w[] = { 200, 100 }, fl[] = { 512 * MIB, 512 * MIB }, ce[] = { 4 * GIB, 4 * GIB };
        uint64_t idle[] = { 0, 0 }, alloc[2];
        uint64_t budget = 1 * GIB + 3 * GIB + 12345;

        assert_int_equal(policy_water_fill(budget, 2, w, fl, ce, idle, 0.75, alloc, NULL), 0);

        assert_int_equal(alloc[0] + alloc[1], budget);
        double ratio = (double) (alloc[0] - fl[0]) / (double) (alloc[1] - fl[1]);
        assert_true(fabs(ratio - 2.0) < 0.02);
}

static void test_water_fill_limits(void **state) {
        uint64_t w[] = { 1000, 1, 100 }, fl[] = { 1 * GIB, 2 * GIB, 0 }, ce[] = { GIB + 200 * MIB, 8 * GIB, 8 * GIB };
        uint64_t idle[] = { 0, 3 * GIB, 0 }, alloc[3];

        /* The heavy one is full at its ceiling, the others share the rest. */
        assert_int_equal(policy_water_fill(6 * GIB + 7, 3, w, fl, ce, idle, 0.5, alloc, NULL), 0);
        assert_int_equal(alloc[0], ce[0]);
        assert_int_equal(alloc[0] + alloc[1] + alloc[2], 6 * GIB + 7);
        for (size_t i = 0; i < 3; i++)
                assert_in_range(alloc[i], fl[i], ce[i]);

        /* Below the sum of the floors everybody is at the floor, above the ceilings at the ceiling. */
        assert_int_equal(policy_water_fill(GIB, 3, w, fl, ce, idle, 0.5, alloc, NULL), 0);
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(alloc[i], fl[i]);
        assert_int_equal(policy_water_fill(UINT64_MAX, 3, w, fl, ce, idle, 0.5, alloc, NULL), 0);
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(alloc[i], ce[i]);

        /* A ceiling below the floor: the floor wins. */
        uint64_t fl2[] = { GIB, GIB }, ce2[] = { 512 * MIB, 4 * GIB }, w2[] = { 1, 1 }, a2[2];
        assert_int_equal(policy_water_fill(2 * GIB, 2, w2, fl2, ce2, NULL, 0, a2, NULL), 0);
        assert_int_equal(a2[0], GIB);
        assert_int_equal(a2[1], GIB);
}

/* Random instances: bounds, exact sum, and equal cost per weight among the unclamped. */
static void test_water_fill_random(void **state) {
        uint64_t seed = 42;

        for (unsigned round = 0; round < 500; round++) {
                uint64_t w[8], fl[8], ce[8], idle[8], alloc[8], sum_fl = 0, sum_ce = 0, sum = 0;
                size_t n = 1 + round % 8;
                double tax = (round % 4) * 0.3;

                for (size_t i = 0; i < n; i++) {
                        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                        w[i] = seed >> 60;                 /* includes 0, counted as 1 */
                        fl[i] = (seed >> 20) % (4 * GIB);
                        ce[i] = fl[i] + (seed >> 8) % (8 * GIB);
                        idle[i] = (seed >> 30) % (4 * GIB);
                        sum_fl += fl[i];
                        sum_ce += ce[i];
                }
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                uint64_t budget = sum_fl + (seed >> 1) % (sum_ce - sum_fl + 1);

                assert_int_equal(policy_water_fill(budget, n, w, fl, ce, idle, tax, alloc, NULL), 0);

                double level = -1;
                for (size_t i = 0; i < n; i++) {
                        assert_in_range(alloc[i], fl[i], ce[i]);
                        sum += alloc[i];
                        if (alloc[i] <= fl[i] + 4096 || alloc[i] + 4096 >= ce[i])
                                continue;
                        uint64_t x = alloc[i] - fl[i], busy = ce[i] - fl[i] - MIN(idle[i], ce[i] - fl[i]);
                        double cost = x <= busy ? (double) x : busy + (double) (x - busy) / (1 - tax);
                        double l = cost / (double) (w[i] ?: 1);
                        if (level < 0)
                                level = l;
                        else
                                assert_true(fabs(l - level) <= 1e-6 * level + 16);
                }
                assert_int_equal(sum, budget);
        }
}

/* reason_add() formats its conversions by hand: as vsnprintf() does, truncation included, and through
 * vsnprintf() for any other; policy_fmt_usec() as its snprintf() did. */
static void test_reason_format(void **state) {
        char r[POLICY_REASON_MAX] = "", e[POLICY_REASON_MAX * 2], f[FMT_USEC_MAX];
        uint64_t seed = 3;

        for (unsigned k = 0; k < 200; k++) {
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                int d = (int) (seed >> 33) - (1 << 30);
                unsigned u = (unsigned) (seed >> 7);
                size_t z = (size_t) seed;
                uint64_t b = seed >> (seed % 64);

                r[0] = 0;
                reason_add(r, "a %s, %d; %u/%zu %" PRIu64 " 100%% %s", k % 2 ? "x" : "", d, u, z, b, "end");
                (void) snprintf(e, sizeof e, "a %s, %d; %u/%zu %" PRIu64 " 100%% %s", k % 2 ? "x" : "", d, u, z, b,
                                "end");
                assert_string_equal(r, e);

                /* Appended, up to the buffer's end. */
                for (unsigned i = 0; i < k % 7; i++)
                        reason_add(r, " %" PRIu64 " and some text to fill the buffer", b);
                for (unsigned i = 0; i < k % 7; i++)
                        (void) snprintf(e + strlen(e), sizeof e - strlen(e), " %" PRIu64 " and some text to fill the buffer",
                                        b);
                e[POLICY_REASON_MAX - 1] = 0;
                assert_string_equal(r, e);

                r[0] = 0;
                reason_add(r, "%u then %.2f", u, (double) (k % 100) / 100);
                (void) snprintf(e, sizeof e, "%u then %.2f", u, (double) (k % 100) / 100);
                assert_string_equal(r, e);

                uint64_t usec = b % (1000 * USEC_PER_SEC);
                if (usec % USEC_PER_SEC / (USEC_PER_SEC / 10) > 0)
                        (void) snprintf(e, sizeof e, "%" PRIu64 ".%" PRIu64 "s", usec / USEC_PER_SEC,
                                        usec % USEC_PER_SEC / (USEC_PER_SEC / 10));
                else
                        (void) snprintf(e, sizeof e, "%" PRIu64 "s", usec / USEC_PER_SEC);
                assert_string_equal(policy_fmt_usec(f, usec), e);
        }
}

/* The brute-force reference for the level: the sum of the x(L) in long double at every breakpoint,
 * sorted, then the root on the linear piece where the sum reaches the budget. */
static long double reference_sum(size_t n, const long double (*it)[4], long double keep, long double level) {
        long double s = 0;

        for (size_t i = 0; i < n; i++) {
                long double w = it[i][0], busy = it[i][1], idle = it[i][2], c = level * w;
                s += c <= busy ? c : MIN(busy + (c - busy) * keep, busy + idle);
        }
        return s;
}

static int cmp_long_double(const void *a, const void *b) {
        long double x = *(const long double *) a, y = *(const long double *) b;
        return x < y ? -1 : x > y;
}

static long double reference_level(size_t n, const uint64_t *w, const uint64_t *fl, const uint64_t *ce,
                                   const uint64_t *idle, double tax, uint64_t budget) {
        long double it[16][4], points[2 * 16 + 1], keep = 1.0L - tax, want = (long double) budget;
        size_t np = 0;

        points[np++] = 0;
        for (size_t i = 0; i < n; i++) {
                uint64_t range = ce[i] > fl[i] ? ce[i] - fl[i] : 0, id = MIN(idle[i], range);
                it[i][0] = (long double) (w[i] ?: 1);
                it[i][1] = (long double) (range - id);
                it[i][2] = (long double) id;
                want -= (long double) fl[i];
                points[np++] = it[i][1] / it[i][0];
                points[np++] = (it[i][1] + it[i][2] / keep) / it[i][0];
        }
        qsort(points, np, sizeof points[0], cmp_long_double);
        for (size_t k = 1; k < np; k++) {
                long double a = reference_sum(n, it, keep, points[k - 1]), b = reference_sum(n, it, keep, points[k]);
                if (b >= want && b > a)
                        return points[k - 1] + (want - a) * (points[k] - points[k - 1]) / (b - a);
        }
        return points[np - 1];
}

/* The exact solver's level against the brute-force one, on random instances with ties, empty
 * ranges, no idle memory and everything idle among them. */
static void test_water_fill_level_reference(void **state) {
        uint64_t seed = 7;

        for (unsigned round = 0; round < 2000; round++) {
                uint64_t w[16], fl[16], ce[16], idle[16], alloc[16], sum_fl = 0, sum_ce = 0;
                size_t n = 1 + round % 16;
                double tax = (double) (round % 5) * 0.2, level;

                for (size_t i = 0; i < n; i++) {
                        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                        w[i] = round % 3 == 0 ? 100 : (seed >> 50) % 10001;
                        fl[i] = (seed >> 20) % (2 * GIB);
                        ce[i] = round % 7 == 0 && i % 2 ? fl[i] : fl[i] + (seed >> 8) % (8 * GIB);
                        idle[i] = (seed >> 40) % 3 == 0 ? 0 : (seed >> 40) % 3 == 1 ? ce[i] - fl[i] : (seed >> 30) % (4 * GIB);
                        sum_fl += fl[i];
                        sum_ce += ce[i];
                }
                if (sum_ce <= sum_fl + 1)
                        continue;
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                uint64_t budget = sum_fl + 1 + (seed >> 1) % (sum_ce - sum_fl - 1);

                assert_int_equal(policy_water_fill(budget, n, w, fl, ce, idle, tax, alloc, &level), 0);
                long double ref = reference_level(n, w, fl, ce, idle, tax, budget);
                if (fabsl((long double) level - ref) > 1e-9L * ref)
                        fail_msg("round %u: level %.17g, reference %.17Lg", round, level, ref);
        }
}

static void test_water_fill_idle_gives_first(void **state) {
        uint64_t w[] = { 100, 100 }, fl[] = { 0, 0 }, ce[] = { 1000 * MIB, 1000 * MIB };
        uint64_t idle[] = { 0, 1000 * MIB }, alloc[2];

        assert_int_equal(policy_water_fill(1000 * MIB, 2, w, fl, ce, idle, 0.75, alloc, NULL), 0);

        assert_int_equal(alloc[0] + alloc[1], 1000 * MIB);
        /* The idle one keeps (1 - tax) of what the busy one keeps. */
        assert_true(alloc[1] < alloc[0]);
        assert_true(fabs((double) alloc[1] / (double) alloc[0] - 0.25) < 0.0025);
}

static void test_water_fill_tax_zero(void **state) {
        uint64_t w[] = { 300, 100 }, fl[] = { 0, 0 }, ce[] = { 1000 * MIB, 1000 * MIB };
        uint64_t idle[] = { 1000 * MIB, 0 }, alloc[2];

        assert_int_equal(policy_water_fill(800 * MIB, 2, w, fl, ce, idle, 0, alloc, NULL), 0);

        assert_int_equal(alloc[0] + alloc[1], 800 * MIB);
        assert_true(fabs((double) alloc[0] / (double) alloc[1] - 3.0) < 0.03);
}

static void test_water_fill_edges(void **state) {
        uint64_t w[] = { 0, 0 }, fl[] = { 0, 0 }, ce[] = { GIB, GIB }, alloc[2];

        assert_int_equal(policy_water_fill(GIB, 0, NULL, NULL, NULL, NULL, 0.5, NULL, NULL), 0);

        /* Weight 0 counts as 1: an even split. */
        assert_int_equal(policy_water_fill(GIB, 2, w, fl, ce, NULL, 0.5, alloc, NULL), 0);
        assert_int_equal(alloc[0], GIB / 2);
        assert_int_equal(alloc[1], GIB / 2);

        /* Sums beyond 64 bits. */
        uint64_t w3[] = { 1, 2, 3 }, fl3[] = { 0, 0, 0 }, alloc3[3];
        uint64_t ce3[] = { UINT64_MAX / 2, UINT64_MAX / 2, UINT64_MAX / 2 };
        assert_int_equal(policy_water_fill(UINT64_MAX, 3, w3, fl3, ce3, NULL, 0, alloc3, NULL), 0);
        unsigned __int128 sum = (unsigned __int128) alloc3[0] + alloc3[1] + alloc3[2];
        assert_true(sum == UINT64_MAX);
        assert_true(alloc3[0] < alloc3[1] && alloc3[1] <= alloc3[2]);
}

/* ---- decisions ---- */

static void test_decide_params(void **state) {
        PolicyParams p = test_params();
        PolicyHost host = { .now_usec = T0, .available = 8 * GIB };
        PolicyVM vm = test_vm("a", 100, 2 * GIB);
        PolicyDecision d = { .action = POLICY_STALL };
        PolicySummary summary;

        assert_int_equal(policy_decide(&p, &host, &vm, 1, &d, &summary), 0);
        assert_int_equal(policy_decide(&p, &host, NULL, 0, NULL, NULL), 0);

        p.tax_rate = 1;
        d.action = POLICY_STALL;
        assert_int_equal(policy_decide(&p, &host, &vm, 1, &d, &summary), -EINVAL);
        assert_int_equal(d.action, POLICY_STALL); /* untouched */
        p.tax_rate = -0.1;
        assert_int_equal(policy_decide(&p, &host, &vm, 1, &d, &summary), -EINVAL);
        p.tax_rate = NAN;
        assert_int_equal(policy_decide(&p, &host, &vm, 1, &d, &summary), -EINVAL);
        p = test_params();
        p.max_step = 0;
        assert_int_equal(policy_decide(&p, &host, &vm, 1, &d, &summary), -EINVAL);
        p = test_params();
        p.deflate_step = 0;
        assert_int_equal(policy_decide(&p, &host, &vm, 1, &d, &summary), -EINVAL);

        assert_string_equal(policy_action_to_string(POLICY_INFLATE), "inflate");
        assert_string_equal(policy_action_to_string(POLICY_SET_HIGH), "set-high");
        assert_null(policy_action_to_string(_POLICY_ACTION_MAX));
}

static void test_decide_host_split(void **state) {
        Sim s;

        sim_init(&s, 2);
        s.p.max_step = GIB;
        s.p.host_reserve = 1536 * MIB;
        s.host.available = 512 * MIB; /* goal: 1G */
        s.vm[0].weight = 200;
        for (size_t i = 0; i < 2; i++)
                s.vm[i].guest_available = 1900 * MIB;

        sim_decide(&s);

        assert_true(s.summary.host_pressure);
        assert_int_equal(s.summary.goal, GIB);
        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(s.out[i].action, POLICY_INFLATE);
                assert_int_equal(s.out[i].carry.last_inflate_usec, T0);
                assert_true(s.out[i].target % POLICY_PAGE_SIZE == 0);
                /* memory.high goes down only once the balloon got there. */
                assert_int_equal(s.out[i].memory_high, s.vm[i].memory_high);
        }
        assert_int_equal(s.out[0].share + s.out[1].share, 3 * GIB);
        /* The 200 keeps twice what the 100 keeps above its floor; together they give the goal. */
        double ratio = (double) (s.out[0].target - s.vm[0].min) / (double) (s.out[1].target - s.vm[1].min);
        assert_true(fabs(ratio - 2.0) < 0.02);
        assert_in_range(reduction(&s, 0) + reduction(&s, 1), GIB - 2 * POLICY_PAGE_SIZE, GIB);
        assert_int_equal(s.summary.planned, reduction(&s, 0) + reduction(&s, 1));
        assert_reason(&s.out[0], "by weight 200");
        assert_reason(&s.summary, "goal 1G");
}

static void test_decide_min_respected(void **state) {
        Sim s;

        sim_init(&s, 3);
        s.p.max_step = 4 * GIB;
        s.p.host_reserve = 16 * GIB;
        s.host.available = 0; /* goal far beyond what the VMs have */
        s.vm[0].min = 512 * MIB + 1000; /* not a whole page */
        s.vm[1].actual = s.vm[1].target = s.vm[1].min;
        for (size_t i = 0; i < 3; i++)
                s.vm[i].guest_available = s.vm[i].actual;

        sim_decide(&s);

        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_true(s.out[0].target >= s.vm[0].min);
        assert_true(s.out[0].target - s.vm[0].min < POLICY_PAGE_SIZE);
        assert_true(s.out[0].target % POLICY_PAGE_SIZE == 0);
        assert_int_equal(s.out[1].action, POLICY_HOLD);
        assert_int_equal(s.out[1].target, s.vm[1].actual);
        assert_reason(&s.out[1], "at floor");
        assert_int_equal(s.out[2].action, POLICY_INFLATE);
        assert_int_equal(s.out[2].target, s.vm[2].min);
}

static void test_decide_guest_available_cap(void **state) {
        Sim s;

        sim_init(&s, 3);
        s.p.max_step = 2 * GIB;
        s.host.pressure = true;
        s.p.reclaim_step = 3 * GIB;
        s.vm[0].guest_available = 300 * MIB;
        s.vm[1].guest_available = 50 * MIB; /* below its reserve, above the pressure floor */
        s.vm[2].guest_available = 100 * MIB;
        s.vm[2].has_stats = false;

        sim_decide(&s);

        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(reduction(&s, 0), 300 * MIB - 64 * MIB);
        assert_reason(&s.out[0], "capped by guest available 300M - reserve 64M");
        assert_int_equal(s.out[1].action, POLICY_HOLD);
        assert_int_equal(s.out[1].target, s.vm[1].actual);
        assert_int_equal(s.out[1].guest_pressure, 0);
        assert_int_equal(s.out[2].action, POLICY_HOLD);
        assert_reason(&s.out[2], "no guest stats");
        assert_int_equal(s.summary.planned, 236 * MIB);
}

static void test_decide_max_respected(void **state) {
        Sim s;

        sim_init(&s, 3);
        s.vm[0].actual = s.vm[0].target = s.vm[0].max - 50 * MIB;
        s.vm[1].actual = s.vm[1].target = s.vm[1].max;
        s.vm[1].memory_high = s.vm[1].max + s.p.memory_high_overhead;
        s.vm[2].actual = s.vm[2].target = s.vm[2].max + 100 * MIB;
        /* Stats-based pressure: the daemon deflates itself (a device event would have acted already). */
        s.vm[0].swap_in_rate = s.vm[1].swap_in_rate = 2 * MIB;
        s.vm[2].guest_available = GIB;

        sim_decide(&s);

        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.out[0].target, s.vm[0].max);
        assert_int_equal(s.out[1].action, POLICY_NONE);
        assert_int_equal(s.out[1].target, s.vm[1].max);
        assert_reason(&s.out[1], "at max");
        /* Above MaxMemory: back to it. */
        assert_int_equal(s.out[2].action, POLICY_INFLATE);
        assert_int_equal(s.out[2].target, s.vm[2].max);
        assert_reason(&s.out[2], "above max");
}

static void test_decide_hysteresis(void **state) {
        Sim s;

        sim_init(&s, 1);
        s.vm[0].guest_available = GIB;
        s.vm[0].swap_in_rate = 2 * MIB;
        sim_tick(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.out[0].carry.hysteresis_until_usec, T0 + 60 * USEC_PER_SEC);
        s.vm[0].swap_in_rate = 0;

        assert_int_equal(sim_first_inflate(&s), T0 + 60 * USEC_PER_SEC);
}

static void test_decide_stall_backoff(void **state) {
        uint64_t backoffs[6], stalled_at[6];
        unsigned n_stalls = 0;
        Sim s;

        sim_init(&s, 1);
        s.vm[0].guest_available = 1500 * MIB;
        s.vm[0].target = s.vm[0].actual - 128 * MIB; /* stuck: the balloon never moves */
        s.vm[0].last_progress_usec = T0;

        for (unsigned k = 0; k < 2000 && n_stalls < ELEMENTSOF(backoffs); k++) {
                s.host.pressure = true;
                sim_tick(&s);
                if (s.out[0].action == POLICY_STALL) {
                        assert_int_equal(s.out[0].target, s.vm[0].actual);
                        assert_int_equal(s.out[0].carry.stall_count, n_stalls + 1);
                        assert_reason(&s.out[0], "stalled");
                        stalled_at[n_stalls] = s.host.now_usec;
                        backoffs[n_stalls++] = s.out[0].carry.backoff_until_usec - s.host.now_usec;
                } else if (n_stalls > 0 && s.host.now_usec < s.vm[0].carry.backoff_until_usec)
                        /* No retry during the back-off. */
                        assert_int_equal(s.out[0].action, POLICY_HOLD);
                s.host.now_usec += USEC_PER_SEC;
        }

        assert_int_equal(n_stalls, 6);
        assert_int_equal(stalled_at[0], T0 + 10 * USEC_PER_SEC);
        for (unsigned i = 0; i < 5; i++)
                assert_int_equal(backoffs[i], (30 * USEC_PER_SEC) << i);
        assert_int_equal(backoffs[5], 16 * 30 * USEC_PER_SEC);

        /* The balloon works again: after a completed move the count starts over. */
        s.host.now_usec = s.vm[0].carry.backoff_until_usec;
        s.host.pressure = true;
        sim_tick(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        s.host.now_usec += USEC_PER_SEC;
        sim_move(&s, 0);
        sim_tick(&s);
        assert_int_equal(s.out[0].carry.stall_count, 0);
}

static void test_decide_floor_wins(void **state) {
        Sim s;

        sim_init(&s, 2);
        s.host.pressure = true;
        s.host.available = 0;
        for (size_t i = 0; i < 2; i++) {
                s.vm[i].guest_available = 10 * MIB;
                s.vm[i].carry.hysteresis_until_usec = T0 + USEC_PER_SEC;
        }
        s.vm[0].actual = s.vm[0].target = s.vm[0].min - 200 * MIB;
        s.vm[1].actual = s.vm[1].target = s.vm[1].min - 400 * MIB;

        sim_decide(&s);

        /* Up to min at once (more than DeflateStep), at most MaxStep a decision. */
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.out[0].target, s.vm[0].min);
        assert_int_equal(s.out[1].action, POLICY_DEFLATE);
        assert_int_equal(s.out[1].target, s.vm[1].actual + s.p.max_step);
        assert_int_equal(s.out[0].guest_pressure, GUEST_PRESSURE_AVAILABLE);
        assert_reason(&s.out[0], "floor");
}

static void test_decide_hold_above_floor(void **state) {
        Sim s;

        sim_init(&s, 1);
        s.host.pressure = true;
        s.vm[0].swap_in_rate = 3 * MIB;

        sim_decide(&s);

        assert_int_equal(s.out[0].action, POLICY_HOLD);
        assert_int_equal(s.out[0].target, s.vm[0].actual);
        assert_int_equal(s.out[0].guest_pressure, GUEST_PRESSURE_SWAP_IN);
        assert_int_equal(s.out[0].carry.hysteresis_until_usec, T0 + s.p.hysteresis_usec);
        assert_reason(&s.out[0], "host under pressure too");
        assert_reason(&s.out[0], "swap-in 3M/s");
}

static void test_decide_cancel(void **state) {
        Sim s;

        sim_init(&s, 1);
        s.vm[0].target = s.vm[0].actual - 256 * MIB;
        s.vm[0].last_progress_usec = T0;
        s.vm[0].oom_kills = 1;

        sim_decide(&s);

        assert_int_equal(s.out[0].action, POLICY_CANCEL);
        assert_int_equal(s.out[0].target, s.vm[0].actual);
        assert_true(s.out[0].guest_pressure & GUEST_PRESSURE_OOM_KILL);
        assert_int_equal(s.out[0].memory_high, s.vm[0].memory_high);
}

/* Above MaxMemory= (lowered while the VM was larger) and inflating back to it:
 * guest pressure does not cancel that, nor sends a target above the ceiling. */
static void test_decide_cancel_above_max(void **state) {
        Sim s;

        sim_init(&s, 1);
        s.vm[0].max = s.vm[0].actual - 32 * MIB;
        s.vm[0].target = s.vm[0].max;
        s.vm[0].last_progress_usec = T0;
        s.vm[0].oom_kills = 1;

        sim_decide(&s);

        assert_true(s.out[0].action != POLICY_CANCEL);
        assert_true(s.out[0].target <= s.vm[0].max);
}

static void test_decide_memory_high(void **state) {
        Sim s;

        sim_init(&s, 1);
        uint64_t actual = s.vm[0].actual;

        /* Deflate: memory.high first. */
        s.vm[0].direct_reclaims = 5;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.out[0].target, actual + 128 * MIB);
        assert_int_equal(s.out[0].memory_high, actual + 128 * MIB + 256 * MIB);
        assert_true(s.out[0].raise_high_first);

        /* Inflate: memory.high stays until the balloon got there, then follows it down. */
        sim_init(&s, 1);
        s.vm[0].guest_available = GIB;
        s.host.pressure = true;
        sim_tick(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(s.out[0].memory_high, actual + 256 * MIB);
        assert_false(s.out[0].raise_high_first);

        s.host.now_usec += USEC_PER_SEC;
        sim_tick(&s); /* still in flight */
        assert_int_equal(s.out[0].action, POLICY_NONE);

        s.host.now_usec += USEC_PER_SEC;
        sim_move(&s, 0);
        sim_tick(&s);
        assert_int_equal(s.out[0].action, POLICY_SET_HIGH);
        assert_int_equal(s.out[0].memory_high, s.vm[0].actual + 256 * MIB);
        assert_true(s.out[0].memory_high < actual + 256 * MIB);
        assert_false(s.out[0].raise_high_first);

        s.host.now_usec += USEC_PER_SEC;
        sim_tick(&s);
        assert_int_equal(s.out[0].action, POLICY_NONE);
}

/* Host pressure every other tick, the guest's use swinging its available memory around the floor:
 * the balloon must not follow every swing. */
static void test_decide_no_flapping(void **state) {
        const unsigned ticks = 1000;
        const uint64_t tick = USEC_PER_SEC;
        unsigned changes[2] = {}, deflate_to_inflate[2] = {}, inflates[2] = {}, deflates[2] = {};
        PolicyAction last[2] = { POLICY_NONE, POLICY_NONE };
        uint64_t periods;
        Sim s;

        sim_init(&s, 2);
        s.vm[1].weight = 300;
        for (unsigned k = 0; k < ticks; k++) {
                s.host.pressure = k % 2 == 0;
                for (size_t i = 0; i < 2; i++) {
                        uint64_t used = 1500 * MIB + ((k / 3 + i) % 2) * 200 * MIB;
                        s.vm[i].guest_available = sub0(s.vm[i].actual, used);
                        s.vm[i].guest_free = s.vm[i].guest_available / 2;
                }
                sim_tick(&s);

                for (size_t i = 0; i < 2; i++) {
                        PolicyAction a = s.out[i].action;
                        if (a != POLICY_INFLATE && a != POLICY_DEFLATE)
                                continue;
                        assert_in_range(s.out[i].target, s.vm[i].min, s.vm[i].max);
                        if (last[i] != POLICY_NONE && a != last[i]) {
                                changes[i]++;
                                deflate_to_inflate[i] += a == POLICY_INFLATE;
                        }
                        last[i] = a;
                        inflates[i] += a == POLICY_INFLATE;
                        deflates[i] += a == POLICY_DEFLATE;
                }
                s.host.now_usec += tick;
                sim_move(&s, 0);
                sim_move(&s, 1);
        }

        periods = ticks * tick / s.p.hysteresis_usec;
        for (size_t i = 0; i < 2; i++) {
                /* The scenario does move both ways... */
                assert_true(inflates[i] > 0 && deflates[i] > 0 && changes[i] >= 2);
                /* ...but an inflate after a deflate waits out the hysteresis. */
                assert_true(deflate_to_inflate[i] <= periods + 1);
                assert_true(changes[i] <= 2 * periods + 2);
        }
}

static void test_decide_rate_cap(void **state) {
        uint64_t taken = 0;
        Sim s;

        sim_init(&s, 1);
        s.p.reclaim_settle_usec = 0; /* every trigger asks */
        s.p.max_step = 2 * GIB;
        s.vm[0].actual = s.vm[0].target = 4 * GIB;
        s.vm[0].guest_available = 3 * GIB;
        s.vm[0].carry.last_inflate_usec = T0; /* an inflate was just ordered */

        /* Ten trigger events in the next second. */
        for (unsigned k = 1; k <= 10; k++) {
                s.host.now_usec = T0 + k * 100 * USEC_PER_MSEC;
                s.host.pressure = true;
                s.p.reclaim_step = 2 * GIB;
                sim_tick(&s);
                assert_int_equal(s.out[0].action, POLICY_INFLATE);
                assert_true(reduction(&s, 0) <= s.p.max_rate / 10);
                taken += s.vm[0].actual - s.vm[0].target;
                sim_move(&s, 0);
                s.vm[0].guest_available = 3 * GIB;
        }
        assert_true(taken <= s.p.max_rate);
        assert_true(taken > s.p.max_rate - 10 * POLICY_PAGE_SIZE);
}

static void test_decide_slice_pressure(void **state) {
        Sim s;

        sim_init(&s, 3);
        for (size_t i = 0; i < 3; i++)
                s.vm[i].guest_available = GIB;
        /* Only the first at a memory.high under its balloon (the others would have it raised), and
         * at its allotment, MaxMemory= + overhead: below it, memory.high would be raised
         * (test-policy-signals.c). */
        s.vm[0].memory_high = s.vm[0].max + s.p.memory_high_overhead;
        s.vm[0].slice_pressure = true;
        s.vm[0].memory_current = s.vm[0].memory_high + 50 * MIB;
        s.vm[1].slice_pressure = true;
        s.vm[1].memory_current = 2 * GIB - 50 * MIB;
        s.vm[2].memory_current = 2 * GIB + 50 * MIB;

        sim_decide(&s);

        assert_false(s.summary.host_pressure);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(reduction(&s, 0), 66 * MIB);
        assert_reason(&s.out[0], "slice pressure");
        assert_int_equal(s.out[1].action, POLICY_NONE);
        assert_int_equal(s.out[2].action, POLICY_NONE);

        /* With host pressure too the larger of the two wins. */
        sim_init(&s, 1);
        s.vm[0].guest_available = GIB;
        s.vm[0].memory_high = 2 * GIB;
        s.vm[0].memory_current = 2 * GIB + 200 * MIB;
        s.vm[0].slice_pressure = true;
        s.host.pressure = true;
        s.p.reclaim_step = 32 * MIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(reduction(&s, 0), 216 * MIB);
        assert_reason(&s.out[0], "slice pressure");

        /* Not below the floor, however far over its allotment the VM is. */
        sim_init(&s, 1);
        s.vm[0].actual = s.vm[0].target = s.vm[0].min + 10 * MIB;
        s.vm[0].guest_available = GIB;
        s.vm[0].memory_high = s.vm[0].actual;
        s.vm[0].memory_current = s.vm[0].actual + 100 * MIB;
        s.vm[0].slice_pressure = true;
        s.host.available = s.p.host_reserve; /* no headroom to raise memory.high instead */
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(s.out[0].target, s.vm[0].min);
        assert_reason(&s.out[0], "capped by floor");
}

/* Targets are whole balloon pages even when the reported size is not (QEMU would round a target
 * up, never reach it exactly, and the balloon would look stalled). */
static void test_decide_pages(void **state) {
        Sim s;

        sim_init(&s, 1);
        s.vm[0].actual = s.vm[0].target = 2 * GIB + 3 * KIB;
        s.vm[0].guest_available = GIB;
        s.host.pressure = true;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(s.out[0].target % POLICY_PAGE_SIZE, 0);
        assert_true(s.vm[0].actual - s.out[0].target <= s.p.reclaim_step);

        sim_init(&s, 1);
        s.vm[0].min = 512 * MIB + 5;
        s.vm[0].actual = s.vm[0].target = 256 * MIB;
        s.vm[0].pressure_event = true;
        s.p.max_step = GIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.out[0].target, 512 * MIB + POLICY_PAGE_SIZE);
}

/* Triggers that fire while the last reclaim takes effect set no new goal; later ones do. */
static void test_decide_reclaim_settles(void **state) {
        Sim s;

        sim_init(&s, 2);
        s.host.pressure = true;
        sim_tick(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(s.summary.last_reclaim_usec, T0);
        sim_move(&s, 0);
        sim_move(&s, 1);
        uint64_t after_first = s.vm[0].actual + s.vm[1].actual;

        s.host.now_usec = T0 + 2 * USEC_PER_SEC;
        s.host.pressure = true;
        sim_tick(&s);
        assert_int_not_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_not_equal(s.out[1].action, POLICY_INFLATE);
        assert_int_equal(s.summary.goal, 0);
        assert_non_null(strstr(s.summary.reason, "settling"));
        assert_int_equal(s.vm[0].target + s.vm[1].target, after_first);

        s.host.now_usec = T0 + 5 * USEC_PER_SEC;
        s.host.pressure = true;
        sim_tick(&s);
        assert_int_equal(s.summary.goal, s.p.reclaim_step);
        assert_true(s.vm[0].target + s.vm[1].target < after_first);
}

/* The guest driver's message, forwarded by a device that decides nothing: the policy cancels and
 * deflates by level, from its own target; what the guest wrote as actual moves nothing beyond one
 * step. */
static void test_decide_guest_event(void **state) {
        Sim s;

        /* Low with nothing inflating: no memory back, but the hysteresis starts. */
        sim_init(&s, 1);
        s.vm[0].pressure_event = true;
        s.vm[0].pressure_event_level = GUEST_PRESSURE_LEVEL_LOW;
        s.vm[0].pressure_event_count = 1;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_HOLD);
        assert_int_equal(s.out[0].target, s.vm[0].target);
        assert_int_equal(s.out[0].carry.hysteresis_until_usec, T0 + s.p.hysteresis_usec);
        assert_reason(&s.out[0], "guest driver event low: no inflation in flight");

        /* Low with an inflation in flight: cancelled where the balloon is. */
        s.vm[0].target = s.vm[0].actual - 64 * MIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_CANCEL);
        assert_int_equal(s.out[0].target, s.vm[0].actual);

        /* Medium, folded from three messages, with the guest's estimate: a step back, memory.high
         * raised first. */
        sim_init(&s, 1);
        s.vm[0].pressure_event = true;
        s.vm[0].pressure_event_level = GUEST_PRESSURE_LEVEL_MEDIUM;
        s.vm[0].pressure_event_count = 3;
        s.vm[0].pressure_event_size = 8 * MIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.out[0].target, s.vm[0].actual + s.p.deflate_step);
        assert_true(s.out[0].raise_high_first);
        assert_int_equal(s.out[0].memory_high, s.out[0].target + s.p.memory_high_overhead);
        assert_string_equal(s.out[0].reason, "guest driver event medium (3 messages) lacking 8M: deflate 128M, hysteresis 60s");

        /* Messages in a row while the balloon has not moved yet: no step stacked on the one in flight,
         * and the hysteresis is not extended by messages alone. */
        sim_tick(&s);
        uint64_t target = s.vm[0].target;
        for (int i = 0; i < 5; i++) {
                s.host.now_usec += USEC_PER_SEC;
                s.vm[0].pressure_event = true;
                sim_tick(&s);
                assert_int_equal(s.out[0].action, POLICY_HOLD);
                assert_reason(&s.out[0], "deflate to 2.1G in flight");
                assert_int_equal(s.vm[0].target, target);
                assert_int_equal(s.vm[0].carry.hysteresis_until_usec, T0 + s.p.hysteresis_usec);
        }

        /* Critical: the guest's estimate, at least DeflateStep, at most MaxStep. */
        sim_init(&s, 1);
        s.vm[0].pressure_event = true;
        s.vm[0].pressure_event_level = GUEST_PRESSURE_LEVEL_CRITICAL;
        s.vm[0].pressure_event_size = 200 * MIB + 5;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.out[0].target, s.vm[0].actual + 200 * MIB);
        s.vm[0].pressure_event_size = 4 * GIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].target, s.vm[0].actual + s.p.max_step);
        s.vm[0].pressure_event_size = 0;
        sim_decide(&s);
        assert_int_equal(s.out[0].target, s.vm[0].actual + s.p.deflate_step);

        /* Under host pressure a medium guest keeps what it has, a critical one still gets its step. */
        sim_init(&s, 1);
        s.vm[0].pressure_event = true;
        s.vm[0].pressure_event_level = GUEST_PRESSURE_LEVEL_MEDIUM;
        s.host.pressure = true;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_HOLD);
        assert_reason(&s.out[0], "host under pressure too");
        s.vm[0].pressure_event_level = GUEST_PRESSURE_LEVEL_CRITICAL;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.out[0].target, s.vm[0].actual + s.p.deflate_step);

        /* Another signal with a low message counts as medium. */
        sim_init(&s, 1);
        s.vm[0].pressure_event = true;
        s.vm[0].alloc_stalls = 5;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_reason(&s.out[0], "5 allocation stalls, guest driver event low");

        /* At MaxMemory=: nothing to give. */
        sim_init(&s, 1);
        s.vm[0].actual = s.vm[0].target = s.vm[0].max;
        s.vm[0].pressure_event = true;
        s.vm[0].pressure_event_level = GUEST_PRESSURE_LEVEL_CRITICAL;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_HOLD);
        assert_reason(&s.out[0], "at max 4G");

        /* Below its floor the guest still gets back up to it, whatever the level. */
        sim_init(&s, 1);
        s.vm[0].actual = s.vm[0].target = s.vm[0].min - 64 * MIB;
        s.vm[0].pressure_event = true;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.out[0].target, s.vm[0].min);

        /* An invalid level from a trace is taken as it compares: above critical is critical. */
        sim_init(&s, 1);
        s.vm[0].pressure_event = true;
        s.vm[0].pressure_event_level = 7;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_reason(&s.out[0], "guest driver event unknown");
}

/* The guest writes actual: an inflation in flight from 3G to 1G that the guest says is still at 3G
 * (or says anything) is cancelled at most DeflateStep above the daemon's own target, and a medium or
 * critical message adds its step from there, not from actual. A guest saying 0 gets no deflation it
 * would not get anyway. */
static void test_decide_guest_event_lying_actual(void **state) {
        static const struct {
                int level;
                uint64_t size;
                uint64_t want; /* above the daemon's target */
        } cases[] = {
                { GUEST_PRESSURE_LEVEL_LOW, 0, 128 * MIB },
                { GUEST_PRESSURE_LEVEL_MEDIUM, 0, 256 * MIB },
                { GUEST_PRESSURE_LEVEL_CRITICAL, 4 * GIB, 384 * MIB },
        };
        Sim s;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                sim_init(&s, 1);
                s.vm[0].actual = 3 * GIB;
                s.vm[0].target = GIB;
                s.vm[0].pressure_event = true;
                s.vm[0].pressure_event_level = cases[i].level;
                s.vm[0].pressure_event_size = cases[i].size;
                sim_decide(&s);
                assert_int_equal(s.out[0].target, GIB + cases[i].want);
                assert_int_equal(s.out[0].action, cases[i].level == GUEST_PRESSURE_LEVEL_LOW ? POLICY_CANCEL : POLICY_DEFLATE);
                assert_reason(&s.out[0], "cancel inflate to 1G at 3G, up to 1.1G");
        }

        /* The RFC's emulation bounds its cancel the same way, by its own step. */
        sim_init(&s, 1);
        s.p.mode = POLICY_MODE_RFC;
        s.vm[0].actual = 3 * GIB;
        s.vm[0].target = GIB;
        s.vm[0].pressure_event = true;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_CANCEL);
        assert_int_equal(s.out[0].target, GIB + 32 * MIB);

        /* actual = 0 (a guest after S4, or lying): no inflation in flight, and a deflation from 0
         * is below the target, which stays. */
        for (int level = GUEST_PRESSURE_LEVEL_LOW; level <= GUEST_PRESSURE_LEVEL_CRITICAL; level++) {
                sim_init(&s, 1);
                s.vm[0].actual = 0;
                s.vm[0].min = 0;
                s.vm[0].pressure_event = true;
                s.vm[0].pressure_event_level = level;
                sim_decide(&s);
                assert_int_equal(s.out[0].action, POLICY_HOLD);
                assert_int_equal(s.out[0].target, s.vm[0].target);
        }
}

/* A missing reserve is not asked for twice while balloons are still on their way. */
static void test_decide_reserve_counts_inflight(void **state) {
        Sim s;

        sim_init(&s, 2);
        s.host.available = s.p.host_reserve - 100 * MIB;
        s.vm[0].target = s.vm[0].actual - 60 * MIB;
        s.vm[1].target = s.vm[1].actual - 60 * MIB;
        sim_decide(&s);
        assert_int_equal(s.summary.goal, 0);
        assert_int_equal(s.out[0].action, POLICY_NONE);

        s.vm[1].target = s.vm[1].actual;
        sim_decide(&s);
        assert_int_equal(s.summary.goal, 40 * MIB);
}

/* Credit for a balloon in flight is bounded: a step while it moves, none once it stalled (a balloon
 * crawling towards a far target would otherwise keep the host from reclaiming from anyone else). */
static void test_decide_inflight_credit_bounded(void **state) {
        Sim s;

        sim_init(&s, 2);
        s.p.host_reserve = GIB;
        s.host.available = GIB - 300 * MIB;
        s.vm[0].target = s.vm[0].actual - GIB;
        s.vm[0].last_progress_usec = s.host.now_usec;
        sim_decide(&s);
        assert_int_equal(s.summary.goal, 300 * MIB - s.p.max_step);

        s.vm[0].last_progress_usec = s.host.now_usec - s.p.stall_usec;
        sim_decide(&s);
        assert_int_equal(s.summary.goal, 300 * MIB);
        assert_int_equal(s.out[0].action, POLICY_STALL);
        assert_int_equal(s.out[1].action, POLICY_INFLATE);
}

static void test_decide_no_stacking(void **state) {
        Sim s;

        sim_init(&s, 1);
        s.p.reclaim_settle_usec = 0; /* every trigger asks */
        s.vm[0].guest_available = GIB;
        s.host.pressure = true;
        sim_tick(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        uint64_t target = s.out[0].target;

        /* The same pressure again before the balloon moved: what is in flight covers it. */
        s.host.now_usec += 2 * USEC_PER_SEC;
        s.host.pressure = true;
        sim_tick(&s);
        assert_int_equal(s.out[0].action, POLICY_NONE);
        assert_int_equal(s.out[0].target, target);
        assert_reason(&s.out[0], "in flight");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_water_fill_weights),
                cmocka_unit_test(test_water_fill_limits),
                cmocka_unit_test(test_water_fill_random),
                cmocka_unit_test(test_water_fill_level_reference),
                cmocka_unit_test(test_reason_format),
                cmocka_unit_test(test_water_fill_idle_gives_first),
                cmocka_unit_test(test_water_fill_tax_zero),
                cmocka_unit_test(test_water_fill_edges),
                cmocka_unit_test(test_decide_params),
                cmocka_unit_test(test_decide_host_split),
                cmocka_unit_test(test_decide_min_respected),
                cmocka_unit_test(test_decide_guest_available_cap),
                cmocka_unit_test(test_decide_max_respected),
                cmocka_unit_test(test_decide_hysteresis),
                cmocka_unit_test(test_decide_stall_backoff),
                cmocka_unit_test(test_decide_floor_wins),
                cmocka_unit_test(test_decide_hold_above_floor),
                cmocka_unit_test(test_decide_cancel),
                cmocka_unit_test(test_decide_cancel_above_max),
                cmocka_unit_test(test_decide_memory_high),
                cmocka_unit_test(test_decide_no_flapping),
                cmocka_unit_test(test_decide_rate_cap),
                cmocka_unit_test(test_decide_slice_pressure),
                cmocka_unit_test(test_decide_no_stacking),
                cmocka_unit_test(test_decide_reclaim_settles),
                cmocka_unit_test(test_decide_reserve_counts_inflight),
                cmocka_unit_test(test_decide_inflight_credit_bounded),
                cmocka_unit_test(test_decide_guest_event),
                cmocka_unit_test(test_decide_guest_event_lying_actual),
                cmocka_unit_test(test_decide_pages),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
