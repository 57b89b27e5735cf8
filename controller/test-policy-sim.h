/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A tiny manager around policy_decide() for the policy tests (test-policy*.c). */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "macro.h"
#include "policy.h"

#define T0 (1000 * USEC_PER_SEC)
#define assert_reason(d, s) assert_non_null(strstr((d)->reason, (s)))

static inline PolicyParams test_params(void) {
        return (PolicyParams) {
                .host_reserve = 256 * MIB,
                .reclaim_step = 128 * MIB,
                .reclaim_settle_usec = 5 * USEC_PER_SEC,
                .tax_rate = 0.75,
                .hysteresis_usec = 60 * USEC_PER_SEC,
                .max_step = 256 * MIB,
                .max_rate = 128 * MIB,
                .deflate_step = 128 * MIB,
                .guest_swapin_rate = MIB,
                .guest_major_fault_rate = 100,
                .memory_high_overhead = 256 * MIB,
                .stall_usec = 10 * USEC_PER_SEC,
                .stall_backoff_usec = 30 * USEC_PER_SEC,
        };
}

static inline PolicyVM test_vm(const char *name, uint64_t weight, uint64_t actual) {
        return (PolicyVM) {
                .name = name,
                .weight = weight,
                .min = 512 * MIB,
                .max = 4 * GIB,
                .actual = actual,
                .target = actual,
                .memory_high_known = true,
                .memory_high = actual + 256 * MIB,
                .memory_current = actual,
                .has_stats = true,
                .guest_available = actual / 2,
                .guest_reserve = 64 * MIB,
                .guest_min_available = 32 * MIB,
        };
}

/* Runs the policy on the snapshot and carries the decisions back into it. */
typedef struct Sim {
        PolicyParams p;
        PolicyHost host;
        PolicyVM vm[8];
        PolicyDecision out[8];
        PolicySummary summary;
        size_t n;
} Sim;

static inline void sim_init(Sim *s, size_t n) {
        *s = (Sim) {
                .p = test_params(),
                .host = {
                        .now_usec = T0,
                        .total = 16 * GIB,
                        .available = 8 * GIB,
                },
                .n = n,
        };
        for (size_t i = 0; i < n; i++)
                s->vm[i] = test_vm("vm", 100, 2 * GIB);
}

/* Decides with policy_explain(), whose reasons the tests check, and with policy_decide(), which must
 * decide the same with the reasons of the decisions that act only. */
static inline void sim_decide(Sim *s) {
        PolicyDecision quiet[8];
        PolicySummary summary;

        assert_int_equal(policy_explain(&s->p, &s->host, s->vm, s->n, s->out, &s->summary), 0);
        assert_int_equal(policy_decide(&s->p, &s->host, s->vm, s->n, quiet, &summary), 0);

        assert_int_equal(summary.host_pressure, s->summary.host_pressure);
        assert_int_equal(summary.goal, s->summary.goal);
        assert_int_equal(summary.planned, s->summary.planned);
        assert_int_equal(summary.last_reclaim_usec, s->summary.last_reclaim_usec);
        assert_int_equal(summary.last_cycle_usec, s->summary.last_cycle_usec);
        assert_int_equal(summary.last_pressure_usec, s->summary.last_pressure_usec);
        assert_int_equal(summary.scan_left, s->summary.scan_left);
        assert_string_equal(summary.reason, s->summary.reason);
        for (size_t i = 0; i < s->n; i++) {
                const PolicyDecision *d = &s->out[i], *q = &quiet[i];

                assert_int_equal(q->action, d->action);
                assert_int_equal(q->target, d->target);
                assert_int_equal(q->memory_high, d->memory_high);
                assert_int_equal(q->raise_high_first, d->raise_high_first);
                assert_int_equal(q->guest_pressure, d->guest_pressure);
                assert_int_equal(q->share, d->share);
                assert_memory_equal(&q->carry, &d->carry, sizeof q->carry);
                assert_string_equal(q->reason, d->action == POLICY_NONE ? "" : d->reason);
        }
}

/* What the manager does with the decisions: new carried state, memory.high, balloon commands (a
 * new target counts as progress), and the "since the last decision" flags are consumed. */
static inline void sim_apply(Sim *s) {
        for (size_t i = 0; i < s->n; i++) {
                PolicyVM *vm = &s->vm[i];
                const PolicyDecision *d = &s->out[i];

                vm->carry = d->carry;
                vm->memory_high = d->memory_high;
                if (d->target != vm->target) {
                        vm->target = d->target;
                        vm->last_progress_usec = s->host.now_usec;
                }
                vm->pressure_event = vm->slice_pressure = false;
        }
        s->host.pressure = false;
        s->host.last_reclaim_usec = s->summary.last_reclaim_usec;
        s->host.last_cycle_usec = s->summary.last_cycle_usec;
        s->host.last_pressure_usec = s->summary.last_pressure_usec;
        s->host.scanned = s->summary.scan_left;
}

/* The balloon reaches its target (QEMU reports the move). What it took leaves the slice too: QEMU
 * discards inflated pages; what it gives back is charged once the guest uses it. */
static inline void sim_move(Sim *s, size_t i) {
        PolicyVM *vm = &s->vm[i];

        if (vm->actual > vm->target)
                vm->memory_current -= MIN(vm->memory_current, vm->actual - vm->target);
        if (vm->actual != vm->target) {
                vm->actual = vm->target;
                vm->last_progress_usec = s->host.now_usec;
        }
}

static inline void sim_tick(Sim *s) {
        sim_decide(s);
        sim_apply(s);
}

/* Host pressure every second, the first VM's balloon following its target: the time of its first
 * inflation, every decision before it being a hold for hysteresis. */
static inline uint64_t sim_first_inflate(Sim *s) {
        for (unsigned k = 0; k < 120; k++) {
                s->host.now_usec += USEC_PER_SEC;
                sim_move(s, 0);
                s->host.pressure = true;
                sim_tick(s);
                if (s->out[0].action == POLICY_INFLATE)
                        return s->host.now_usec;
                assert_int_equal(s->out[0].action, POLICY_HOLD);
                assert_reason(&s->out[0], "in hysteresis");
        }
        fail_msg("no inflation in 120 s");
        return 0;
}
