/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Policy=none, rfc and proxmox: what each does with the same snapshots. */

#include "test-policy-sim.h"

static void sim_mode(Sim *s, size_t n, PolicyMode mode) {
        sim_init(s, n);
        s->p.mode = mode;
}

static void assert_changes_nothing(const Sim *s, size_t i) {
        assert_int_equal(s->out[i].target, s->vm[i].target);
        assert_int_equal(s->out[i].memory_high, s->vm[i].memory_high);
        assert_false(s->out[i].raise_high_first);
}

static void test_mode_names(void **state) {
        PolicyMode m;

        for (PolicyMode i = 0; i < _POLICY_MODE_MAX; i++) {
                assert_int_equal(policy_mode_from_string(policy_mode_to_string(i), &m), 0);
                assert_int_equal(m, i);
        }
        assert_string_equal(policy_mode_to_string(POLICY_MODE_AUTOBALLOON), "autoballoon");
        assert_int_equal(policy_mode_from_string("Proxmox", &m), -EINVAL);
        assert_int_equal(policy_mode_from_string(NULL, &m), -EINVAL);
        assert_null(policy_mode_to_string(_POLICY_MODE_MAX));

        Sim s;
        sim_mode(&s, 1, _POLICY_MODE_MAX);
        assert_int_equal(policy_decide(&s.p, &s.host, s.vm, s.n, s.out, NULL), -EINVAL);
}

/* ---- none ---- */

static void test_none_never_acts(void **state) {
        Sim s;

        sim_mode(&s, 4, POLICY_MODE_NONE);
        s.host.available = 0;
        s.vm[0].swap_in_rate = 10 * MIB;                 /* guest pressure */
        s.vm[1].actual = s.vm[1].target = 8 * GIB;       /* above max */
        s.vm[2].target = s.vm[2].actual - 256 * MIB;     /* inflation in flight */
        s.vm[2].last_progress_usec = T0;
        s.vm[3].actual = s.vm[3].target = 256 * MIB;     /* below its floor */
        s.vm[3].memory_high = 8 * GIB;                   /* far above the balloon */

        for (unsigned k = 0; k < 30; k++) {
                s.host.pressure = true;
                s.vm[0].pressure_event = true;
                s.vm[0].pressure_event_level = GUEST_PRESSURE_LEVEL_CRITICAL;
                s.vm[1].slice_pressure = true;
                sim_decide(&s);
                for (size_t i = 0; i < s.n; i++) {
                        assert_int_equal(s.out[i].action, POLICY_NONE);
                        assert_changes_nothing(&s, i);
                        assert_int_equal(s.out[i].carry.hysteresis_until_usec, 0);
                        assert_int_equal(s.out[i].carry.backoff_until_usec, 0);
                        assert_reason(&s.out[i], "policy none");
                }
                assert_reason(&s.out[0], "ignored: guest pressure (swap-in 10M/s, guest driver event critical)");
                assert_true(s.out[0].guest_pressure & GUEST_PRESSURE_SWAP_IN);
                assert_true(s.summary.host_pressure);
                assert_reason(&s.summary, "policy none");
                assert_reason(&s.summary, "host pressure (trigger, available 0B < reserve 256M) ignored");
                sim_apply(&s);
                s.host.now_usec += 2 * USEC_PER_SEC;
        }
}

/* ---- rfc ---- */

static void test_rfc_inflates_per_event(void **state) {
        Sim s;

        sim_mode(&s, 2, POLICY_MODE_RFC);
        /* No fairness: weight and size make no difference. */
        s.vm[0] = test_vm("a", 1, 2 * GIB);
        s.vm[1] = test_vm("b", 10000, 3 * GIB);
        for (size_t i = 0; i < 2; i++)
                s.vm[i].guest_available = GIB;

        s.host.pressure = true;
        sim_tick(&s);
        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(s.out[i].action, POLICY_INFLATE);
                assert_int_equal(s.out[i].target, s.vm[i].actual - 32 * MIB);
                assert_int_equal(s.out[i].memory_high, s.vm[i].memory_high);
        }
        assert_int_equal(s.summary.planned, 64 * MIB);

        /* Each event stacks 32 MiB on the target in flight, as the RFC's num_pages did: ten events,
         * 320 MiB, however slowly the balloon moves. */
        for (unsigned k = 1; k < 10; k++) {
                s.host.now_usec += USEC_PER_SEC;
                s.host.pressure = true;
                sim_tick(&s);
                assert_int_equal(s.out[0].action, POLICY_INFLATE);
        }
        assert_int_equal(s.vm[0].target, 2 * GIB - 320 * MIB);
        assert_int_equal(s.vm[1].target, 3 * GIB - 320 * MIB);

        /* No event, nothing: available below HostReserve= is not a trigger for the RFC. */
        s.host.now_usec += USEC_PER_SEC;
        s.host.available = 0;
        sim_tick(&s);
        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(s.out[i].action, POLICY_NONE);
                assert_changes_nothing(&s, i);
        }
}

/* The RFC's events were vmpressure's, one per 512 pages scanned: the emulation counts them from the
 * host's scan counter, carries what is short of a window, and the caps bound what they ask. */
static void test_rfc_scan_events(void **state) {
        Sim s;

        sim_mode(&s, 3, POLICY_MODE_RFC);
        for (size_t i = 0; i < 3; i++)
                s.vm[i].guest_available = GIB;
        s.vm[2].actual = s.vm[2].target = s.vm[2].min + 64 * MIB;

        /* Three windows and 100 pages, no trigger: three events, 96 MiB from each guest. */
        s.host.scanned = 3 * 512 + 100;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(s.out[0].target, 2 * GIB - 96 * MIB);
        assert_reason(&s.out[0], "3 host pressure events: inflate 96M");
        assert_int_equal(s.out[2].target, s.vm[2].min);
        assert_reason(&s.out[2], "capped by floor");
        assert_true(s.summary.host_pressure);
        assert_int_equal(s.summary.goal, 3 * 96 * MIB);
        assert_int_equal(s.summary.planned, 2 * 96 * MIB + 64 * MIB);
        assert_int_equal(s.summary.scan_left, 100);
        assert_reason(&s.summary, "host pressure events: 3 (1636 pages scanned)");
        sim_apply(&s);
        for (size_t i = 0; i < 3; i++)
                sim_move(&s, i);

        /* The 100 pages carried over make a window with 412 more: one event, stacked on the target. */
        s.host.now_usec += USEC_PER_SEC;
        s.host.scanned += 412;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(s.out[0].target, 2 * GIB - 128 * MIB);
        assert_reason(&s.out[0], "host pressure event: inflate 32M");
        assert_int_equal(s.out[2].action, POLICY_HOLD);
        assert_int_equal(s.summary.scan_left, 0);
        sim_apply(&s);
        sim_move(&s, 0);
        sim_move(&s, 1);

        /* Less than a window, no trigger: no event, the pages carried. */
        s.host.now_usec += USEC_PER_SEC;
        s.host.scanned += 511;
        sim_decide(&s);
        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(s.out[i].action, POLICY_NONE);
                assert_changes_nothing(&s, i);
        }
        assert_false(s.summary.host_pressure);
        assert_int_equal(s.summary.scan_left, 511);

        /* The trigger with less than a window scanned is one event, as without the counter. */
        s.host.pressure = true;
        sim_decide(&s);
        assert_int_equal(s.out[0].target, 2 * GIB - 160 * MIB);
        assert_int_equal(s.summary.goal, 3 * 32 * MIB);
        assert_reason(&s.summary, "rfc: host pressure event: 32M from each guest");

        /* Heavy reclaim: a thousand events in one decision ask 32,000 MiB, the guest's available memory
         * minus GuestReserve= is what is taken; a guest under pressure is not inflated. */
        s.host.pressure = false;
        s.host.scanned = 1000 * 512;
        s.vm[1].swap_in_rate = 10 * MIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(s.out[0].target, s.vm[0].actual - (GIB - 64 * MIB));
        assert_reason(&s.out[0], "1000 host pressure events: inflate 31.2G");
        assert_reason(&s.out[0], "capped by guest available 1G - reserve 64M");
        assert_int_equal(s.out[1].action, POLICY_DEFLATE);
        assert_int_equal(s.summary.goal, 3 * 32000 * MIB);

        /* Saturating, not wrapping. */
        s.host.scanned = UINT64_MAX;
        sim_decide(&s);
        assert_int_equal(s.summary.goal, UINT64_MAX);
        assert_int_equal(s.out[0].target, s.vm[0].actual - (GIB - 64 * MIB));
}

static void test_rfc_safety_caps(void **state) {
        Sim s;

        sim_mode(&s, 4, POLICY_MODE_RFC);
        s.vm[0].actual = s.vm[0].target = s.vm[0].min + 16 * MIB;   /* 16M above its floor */
        s.vm[0].guest_available = GIB;
        s.vm[1].guest_available = 80 * MIB;                          /* 16M above its reserve */
        s.vm[2].has_stats = false;
        s.vm[3].guest_available = GIB;
        s.vm[3].actual = s.vm[3].target = s.vm[3].min;

        s.host.pressure = true;
        sim_decide(&s);

        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(s.out[0].target, s.vm[0].min);
        assert_reason(&s.out[0], "capped by floor");
        assert_int_equal(s.out[1].action, POLICY_INFLATE);
        assert_int_equal(s.out[1].target, s.vm[1].actual - 16 * MIB);
        assert_reason(&s.out[1], "capped by guest available 80M - reserve 64M");
        assert_int_equal(s.out[2].action, POLICY_HOLD);
        assert_int_equal(s.out[2].target, s.vm[2].actual);
        assert_reason(&s.out[2], "no guest stats");
        assert_int_equal(s.out[3].action, POLICY_HOLD);
        assert_reason(&s.out[3], "capped by floor 512M; held");

        /* A deflation in flight below the floor is not cut below it either. */
        sim_mode(&s, 1, POLICY_MODE_RFC);
        s.vm[0].actual = s.vm[0].min - 64 * MIB;
        s.vm[0].target = s.vm[0].min + 16 * MIB;
        s.vm[0].last_progress_usec = T0;
        s.vm[0].guest_available = GIB;
        s.host.pressure = true;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_int_equal(s.out[0].target, s.vm[0].min);

        /* Deflation never goes above MaxMemory=. */
        sim_mode(&s, 1, POLICY_MODE_RFC);
        s.vm[0].actual = s.vm[0].target = s.vm[0].max - 8 * MIB;
        s.vm[0].major_fault_rate = 1000;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.out[0].target, s.vm[0].max);
        s.vm[0].actual = s.vm[0].target = s.vm[0].max;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_NONE);
        assert_int_equal(s.out[0].target, s.vm[0].max);
        assert_reason(&s.out[0], "at max");
}

static void test_rfc_guest_pressure(void **state) {
        Sim s;

        /* An inflation in flight is cancelled where the balloon is. */
        sim_mode(&s, 1, POLICY_MODE_RFC);
        s.vm[0].target = s.vm[0].actual - 96 * MIB;
        s.vm[0].last_progress_usec = T0;
        s.vm[0].swap_in_rate = 2 * MIB;
        s.host.pressure = true;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_CANCEL);
        assert_int_equal(s.out[0].target, s.vm[0].actual);
        assert_int_equal(s.out[0].carry.hysteresis_until_usec, T0 + 60 * USEC_PER_SEC);
        assert_reason(&s.out[0], "hysteresis 60s");

        /* Otherwise 32 MiB back, on top of the target; memory.high is not touched. */
        sim_mode(&s, 1, POLICY_MODE_RFC);
        s.p.hysteresis_usec = 5 * USEC_PER_SEC; /* HysteresisSec= is not the RFC's */
        s.p.deflate_step = 512 * MIB;           /* nor is DeflateStep= */
        s.vm[0].actual = s.vm[0].target = 2 * GIB;
        s.vm[0].guest_available = 8 * MIB;
        sim_tick(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.out[0].target, 2 * GIB + 32 * MIB);
        assert_int_equal(s.out[0].memory_high, 2 * GIB + 256 * MIB);
        assert_false(s.out[0].raise_high_first);
        assert_int_equal(s.out[0].carry.hysteresis_until_usec, T0 + 60 * USEC_PER_SEC);
        /* The next one stacks too. */
        s.host.now_usec += USEC_PER_SEC;
        sim_tick(&s);
        assert_int_equal(s.out[0].target, 2 * GIB + 64 * MIB);
        assert_int_equal(s.out[0].carry.hysteresis_until_usec, T0 + 61 * USEC_PER_SEC);
}

static void test_rfc_hysteresis(void **state) {
        Sim s;

        sim_mode(&s, 1, POLICY_MODE_RFC);
        s.vm[0].guest_available = GIB;
        s.vm[0].oom_kills = 1;
        sim_tick(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        s.vm[0].oom_kills = 0;

        assert_int_equal(sim_first_inflate(&s), T0 + 60 * USEC_PER_SEC);
}

/* The device forwards the guest's message and decides nothing: the RFC's step is the policy's, once
 * per message presented (vm.c presents them at most once per GuestPressureIntervalSec=), whatever
 * the level, and every one restarts the 60 s. */
static void test_rfc_guest_event(void **state) {
        Sim s;

        sim_mode(&s, 1, POLICY_MODE_RFC);
        uint64_t actual = s.vm[0].actual;
        for (int i = 1; i <= 5; i++) {
                s.vm[0].pressure_event = true;
                s.vm[0].pressure_event_level = GUEST_PRESSURE_LEVEL_LOW;
                s.host.pressure = true;
                s.host.now_usec += USEC_PER_SEC;
                sim_tick(&s);
                assert_int_equal(s.out[0].action, POLICY_DEFLATE);
                assert_int_equal(s.vm[0].target, actual + (uint64_t) i * 32 * MIB);
                assert_int_equal(s.out[0].carry.hysteresis_until_usec, s.host.now_usec + 60 * USEC_PER_SEC);
                assert_reason(&s.out[0], "guest driver event low");
        }
}

/* ---- proxmox ---- */

/* A 20G host: 80% is 16G, so a host available of 4G + g sets a goal of g. */
static void pve_init(Sim *s, size_t n, int64_t goal) {
        sim_mode(s, n, POLICY_MODE_PROXMOX);
        s->host.total = 20 * GIB;
        s->host.available = (uint64_t) ((int64_t) (4 * GIB) + goal);
        for (size_t i = 0; i < n; i++) {
                s->vm[i].min = GIB;
                s->vm[i].max = 4 * GIB;
                s->vm[i].guest_available = 2 * GIB;
                s->vm[i].guest_free = GIB;   /* more than a quarter of the floor: not short */
        }
}

#define assert_near_page(a, b) assert_true((a) + POLICY_PAGE_SIZE > (b) && (b) + POLICY_PAGE_SIZE > (a))

static void test_proxmox_deadband(void **state) {
        static const int64_t goals[] = { 0, 5 * (int64_t) MIB, -5 * (int64_t) MIB, 10 * (int64_t) MIB,
                                         -10 * (int64_t) MIB };
        Sim s;

        for (size_t k = 0; k < ELEMENTSOF(goals); k++) {
                pve_init(&s, 2, goals[k]);
                s.vm[1].guest_free = 0;
                s.host.pressure = true;
                sim_decide(&s);
                for (size_t i = 0; i < 2; i++) {
                        assert_int_equal(s.out[i].action, POLICY_NONE);
                        assert_changes_nothing(&s, i);
                }
                assert_reason(&s.summary, "within 10M, nothing to do");
                assert_int_equal(s.summary.last_cycle_usec, T0);
        }

        /* Just outside it, it acts. */
        pve_init(&s, 1, -11 * (int64_t) MIB);
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_near_page(s.out[0].target, s.vm[0].actual - 11 * MIB);
}

/* At most 100 MiB per VM per 10 s cycle, however far the host is from its target and however often
 * the daemon decides. */
static void test_proxmox_max_change_per_cycle(void **state) {
        uint64_t start[3], cycles = 0;
        Sim s;

        pve_init(&s, 3, -3 * (int64_t) GIB);
        for (size_t i = 0; i < 3; i++) {
                s.vm[i].actual = s.vm[i].target = 4 * GIB;
                start[i] = s.vm[i].actual;
        }

        for (unsigned k = 0; k <= 30; k++) {            /* 60 s of 2 s ticks */
                s.host.pressure = k % 3 == 0;          /* triggers change nothing */
                sim_decide(&s);
                bool cycle = k % 5 == 0;
                cycles += cycle;
                for (size_t i = 0; i < 3; i++) {
                        assert_int_equal(s.out[i].memory_high, s.vm[i].memory_high);
                        if (cycle) {
                                assert_int_equal(s.out[i].action, POLICY_INFLATE);
                                assert_int_equal(s.vm[i].actual - s.out[i].target, 100 * MIB);
                                assert_reason(&s.out[i], "capped by max change 100M per 10s cycle");
                        } else {
                                assert_int_equal(s.out[i].action, POLICY_NONE);
                                assert_changes_nothing(&s, i);
                        }
                }
                if (!cycle)
                        assert_reason(&s.summary, "next cycle in");
                sim_apply(&s);
                s.host.now_usec += 2 * USEC_PER_SEC;
                for (size_t i = 0; i < 3; i++)
                        sim_move(&s, i);
        }
        assert_int_equal(cycles, 7);
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(start[i] - s.vm[i].actual, 7 * 100 * MIB);
}

/* Under 80% the guests grow, the VMs short of free memory first, split by shares within
 * [min, max]; what a VM at its max cannot take goes to the others. */
static void test_proxmox_grows_by_shares(void **state) {
        Sim s;

        pve_init(&s, 3, 90 * (int64_t) MIB);
        s.vm[0].weight = 200;
        s.vm[0].actual = s.vm[0].target = 3 * GIB;     /* 2G above its floor */
        s.vm[1].weight = 100;
        s.vm[1].actual = s.vm[1].target = 2 * GIB;     /* 1G: the same per share */
        s.vm[0].guest_free = s.vm[1].guest_free = 64 * MIB; /* short of free memory */
        s.vm[2].actual = s.vm[2].target = 2 * GIB;     /* free memory: grows only if they cannot */
        sim_decide(&s);

        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_near_page(s.out[0].target, 3 * GIB + 60 * MIB);
        assert_int_equal(s.out[1].action, POLICY_DEFLATE);
        assert_near_page(s.out[1].target, 2 * GIB + 30 * MIB);
        assert_reason(&s.out[1], "by weight 100 among the VMs short of memory");
        assert_int_equal(s.out[2].action, POLICY_NONE);
        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(s.out[i].memory_high, s.vm[i].memory_high);
                assert_false(s.out[i].raise_high_first);
        }

        /* The first is 20M below its max: the rest of the goal goes to the second. */
        s.vm[0].max = 3 * GIB + 20 * MIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].target, 3 * GIB + 20 * MIB);
        assert_near_page(s.out[1].target, 2 * GIB + 70 * MIB);

        /* Nobody short of memory can grow: everybody takes part. */
        pve_init(&s, 2, 2 * (int64_t) GIB);
        s.vm[0].actual = s.vm[0].target = 2 * GIB;
        s.vm[1].actual = s.vm[1].target = 4 * GIB;     /* at max */
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_DEFLATE);
        assert_int_equal(s.out[0].target, 2 * GIB + 100 * MIB);
        assert_reason(&s.out[0], "among all VMs");
        assert_int_equal(s.out[1].action, POLICY_NONE);
        assert_int_equal(s.out[1].target, 4 * GIB);
}

/* Give-back: once the host is below 80% again, the balloons deflate 100 MiB per VM per cycle until
 * the host is back at its target (within the 10 MiB dead band), each guest using what it gets. */
static void test_proxmox_refills(void **state) {
        uint64_t given = 0;
        unsigned deflates = 0, cycles = 0;
        Sim s;

        pve_init(&s, 3, 0);
        for (size_t i = 0; i < 3; i++) {
                s.vm[i].actual = s.vm[i].target = 2 * GIB;
                s.vm[i].guest_free = 64 * MIB;         /* short of memory: squeezed earlier */
        }
        s.host.available = 4 * GIB + 700 * MIB;        /* 700M below the target */

        for (unsigned k = 0; k < 30; k++) {            /* 60 s of 2 s ticks */
                sim_decide(&s);
                for (size_t i = 0; i < 3; i++) {
                        assert_int_not_equal(s.out[i].action, POLICY_INFLATE);
                        if (s.out[i].action != POLICY_DEFLATE)
                                continue;
                        assert_true(s.out[i].target - s.vm[i].actual <= 100 * MIB);
                        deflates++;
                }
                cycles += s.summary.last_cycle_usec == s.host.now_usec;
                sim_apply(&s);
                s.host.now_usec += 2 * USEC_PER_SEC;
                for (size_t i = 0; i < 3; i++) {
                        uint64_t before = s.vm[i].actual;

                        sim_move(&s, i);
                        s.host.available -= s.vm[i].actual - before;
                        given += s.vm[i].actual - before;
                }
        }
        assert_int_equal(cycles, 6);
        assert_true(deflates >= 7);            /* 700M at 3 x 100M a cycle: 3 cycles */
        assert_true(given >= 690 * MIB && given <= 700 * MIB);
        assert_true(s.host.available >= 4 * GIB && s.host.available <= 4 * GIB + 10 * MIB);
}

/* Over 80% the VMs with free memory give first, never below their floor nor past their available
 * memory minus GuestReserve=. */
static void test_proxmox_shrinks(void **state) {
        Sim s;

        pve_init(&s, 4, -4 * (int64_t) GIB);                /* everybody's share is the floor */
        s.vm[0].guest_free = 0;                          /* short: not asked while others can give */
        s.vm[1].actual = s.vm[1].target = GIB + 40 * MIB; /* 40M above its floor */
        s.vm[2].guest_available = 64 * MIB + 30 * MIB;   /* 30M above its reserve */
        s.vm[3].guest_free = 400 * MIB;                  /* a quarter of the floor is 256M */
        sim_decide(&s);

        assert_int_equal(s.out[0].action, POLICY_NONE);
        assert_int_equal(s.out[1].action, POLICY_INFLATE);
        assert_int_equal(s.out[1].target, GIB);
        assert_int_equal(s.out[2].action, POLICY_INFLATE);
        assert_int_equal(s.out[2].target, s.vm[2].actual - 30 * MIB);
        assert_reason(&s.out[2], "capped by guest available 94M - reserve 64M");
        assert_int_equal(s.out[3].action, POLICY_INFLATE);
        assert_int_equal(s.out[3].target, s.vm[3].actual - 100 * MIB);
        assert_reason(&s.out[3], "among the VMs with free memory");
        assert_true(s.summary.host_pressure);
        assert_int_equal(s.summary.goal, 4 * GIB);
        assert_int_equal(s.summary.planned, 170 * MIB);

        /* Only the short one is left: it gives after all. */
        pve_init(&s, 1, -(int64_t) GIB);
        s.vm[0].guest_free = 0;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_INFLATE);
        assert_reason(&s.out[0], "among all VMs");

        /* A shrink request grows nobody; a VM above its share moves towards it, by more than the
         * goal if need be (as Proxmox does). */
        pve_init(&s, 2, -40 * (int64_t) MIB);
        s.vm[0].actual = s.vm[0].target = GIB + 100 * MIB;
        s.vm[1].actual = s.vm[1].target = 3 * GIB;
        sim_decide(&s);
        assert_int_equal(s.out[0].action, POLICY_NONE);
        assert_int_equal(s.out[1].action, POLICY_INFLATE);
        assert_int_equal(s.out[1].target, 3 * GIB - 100 * MIB);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_mode_names),
                cmocka_unit_test(test_none_never_acts),
                cmocka_unit_test(test_rfc_inflates_per_event),
                cmocka_unit_test(test_rfc_scan_events),
                cmocka_unit_test(test_rfc_safety_caps),
                cmocka_unit_test(test_rfc_guest_pressure),
                cmocka_unit_test(test_rfc_hysteresis),
                cmocka_unit_test(test_rfc_guest_event),
                cmocka_unit_test(test_proxmox_deadband),
                cmocka_unit_test(test_proxmox_max_change_per_cycle),
                cmocka_unit_test(test_proxmox_grows_by_shares),
                cmocka_unit_test(test_proxmox_shrinks),
                cmocka_unit_test(test_proxmox_refills),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
