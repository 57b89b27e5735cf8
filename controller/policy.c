/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "policy-internal.h"

/* Slice pressure takes at least this much, so a VM just over its memory.high is not nudged by a
 * few pages per trigger. */
#define SLICE_MIN_STEP (16 * MIB)
/* memory.high is only lowered when it is this far above where it should be (no churn). */
#define HIGH_SLACK MIB
/* Stall back-off doubles per stall up to 2^4 = 16x. */
#define BACKOFF_MAX_SHIFT 4U

static const char *const action_table[_POLICY_ACTION_MAX] = {
        [POLICY_NONE] = "none",
        [POLICY_INFLATE] = "inflate",
        [POLICY_DEFLATE] = "deflate",
        [POLICY_CANCEL] = "cancel",
        [POLICY_HOLD] = "hold",
        [POLICY_STALL] = "stall",
        [POLICY_SET_HIGH] = "set-high",
};

const char *policy_action_to_string(PolicyAction a) {
        if ((unsigned) a >= _POLICY_ACTION_MAX)
                return NULL;
        return action_table[a];
}

static const char *const mode_table[_POLICY_MODE_MAX] = {
        [POLICY_MODE_AUTOBALLOON] = "autoballoon",
        [POLICY_MODE_NONE] = "none",
        [POLICY_MODE_RFC] = "rfc",
        [POLICY_MODE_PROXMOX] = "proxmox",
};

const char *policy_mode_to_string(PolicyMode m) {
        if ((unsigned) m >= _POLICY_MODE_MAX)
                return NULL;
        return mode_table[m];
}

int policy_mode_from_string(const char *s, PolicyMode *ret) {
        for (PolicyMode m = 0; m < _POLICY_MODE_MAX; m++)
                if (streq_ptr(s, mode_table[m])) {
                        *ret = m;
                        return 0;
                }
        return -EINVAL;
}

static uint64_t u128_sat(unsigned __int128 v) {
        return v > UINT64_MAX ? UINT64_MAX : (uint64_t) v;
}

char *policy_fmt_usec(char *buf, uint64_t usec) {
        uint64_t tenths = usec % USEC_PER_SEC / (USEC_PER_SEC / 10);

        if (tenths > 0)
                (void) snprintf(buf, FMT_USEC_MAX, "%" PRIu64 ".%" PRIu64 "s", usec / USEC_PER_SEC, tenths);
        else
                (void) snprintf(buf, FMT_USEC_MAX, "%" PRIu64 "s", usec / USEC_PER_SEC);
        return buf;
}

void reason_add(char *reason, const char *format, ...) {
        size_t l = strnlen(reason, POLICY_REASON_MAX);
        va_list ap;

        if (l + 1 >= POLICY_REASON_MAX)
                return;
        va_start(ap, format);
        (void) vsnprintf(reason + l, POLICY_REASON_MAX - l, format, ap);
        va_end(ap);
}

/* ---- water-filling ---- */

static void fill_get(const FillOps *ops, size_t i, FillItem *ret) {
        ops->get(ops->userdata, i, ret);
        ret->weight = ret->weight ?: 1;
        /* Inconsistent limits: the floor wins, nobody is pushed below it. */
        ret->ceil = MAX(ret->ceil, ret->floor);
        ret->idle = MIN(ret->idle, ret->ceil - ret->floor);
}

/* Bytes above the floor an item gets at 'level': the largest x with cost(x) <= level * weight, where
 * the busy bytes cost 1 and the idle ones (the top of the range) 1/keep. */
static double fill_x(const FillItem *it, double level, double keep) {
        double range = (double) (it->ceil - it->floor), busy = (double) (it->ceil - it->floor - it->idle);
        double c = level * (double) it->weight, x;

        if (c <= busy)
                return c;
        x = busy + (c - busy) * keep;
        return MIN(x, range);
}

static uint64_t fill_bytes(const FillItem *it, double level, double keep) {
        uint64_t range = it->ceil - it->floor;
        double x = fill_x(it, level, keep);

        /* A double below (double) range converts to at most range. */
        if (!(x < (double) range))
                return range;
        return MIN((uint64_t) x, range);
}

void policy_fill(unsigned __int128 budget, size_t n, double tax_rate, const FillOps *ops) {
        unsigned __int128 sum_floor = 0, sum_ceil = 0, want, sum = 0;
        double keep = 1.0 - tax_rate, lo = 0, hi = 0;
        FillItem it;

        for (size_t i = 0; i < n; i++) {
                fill_get(ops, i, &it);
                sum_floor += it.floor;
                sum_ceil += it.ceil;
                double full = ((double) (it.ceil - it.floor - it.idle) + (double) it.idle / keep) /
                        (double) it.weight;
                hi = MAX(hi, full);
        }

        budget = CLAMP(budget, sum_floor, sum_ceil);
        if (budget == sum_floor || budget == sum_ceil) {
                for (size_t i = 0; i < n; i++) {
                        fill_get(ops, i, &it);
                        ops->put(ops->userdata, i, budget == sum_floor ? it.floor : it.ceil);
                }
                return;
        }
        want = budget - sum_floor;

        /* At 'hi' everybody is full, up to the rounding of the products: add a margin. */
        hi = hi * 2 + 1;
        /* Until lo and hi are adjacent doubles, which takes fewer steps than the bound. */
        for (unsigned k = 0; k < 2048; k++) {
                double mid = lo + (hi - lo) / 2, s = 0;
                if (mid <= lo || mid >= hi)
                        break;
                for (size_t i = 0; i < n; i++) {
                        fill_get(ops, i, &it);
                        s += fill_x(&it, mid, keep);
                }
                if (s <= (double) want)
                        lo = mid;
                else
                        hi = mid;
        }

        /* Integer allocations at 'lo', then the few bytes of rounding left: first to those that grow
         * between lo and hi, then anywhere there is room, in index order (deterministic). */
        unsigned __int128 room_hi = 0;
        for (size_t i = 0; i < n; i++) {
                fill_get(ops, i, &it);
                uint64_t a = fill_bytes(&it, lo, keep);
                sum += a;
                room_hi += sub_sat(fill_bytes(&it, hi, keep), a);
        }

        unsigned __int128 excess = sum > want ? sum - want : 0, deficit = sum < want ? want - sum : 0;
        unsigned __int128 give_hi = MIN(deficit, room_hi), give_any = deficit - give_hi;
        for (size_t i = 0; i < n; i++) {
                fill_get(ops, i, &it);
                uint64_t a = fill_bytes(&it, lo, keep), g;

                g = (uint64_t) MIN(excess, (unsigned __int128) a);
                a -= g;
                excess -= g;

                g = (uint64_t) MIN(give_hi, (unsigned __int128) sub_sat(fill_bytes(&it, hi, keep), a));
                a += g;
                give_hi -= g;

                g = (uint64_t) MIN(give_any, (unsigned __int128) (it.ceil - it.floor - a));
                a += g;
                give_any -= g;

                ops->put(ops->userdata, i, it.floor + a);
        }
}

typedef struct FillArrays {
        const uint64_t *weight, *floor, *ceil, *idle;
        uint64_t *alloc;
} FillArrays;

static void arrays_get(const void *userdata, size_t i, FillItem *ret) {
        const FillArrays *a = userdata;

        *ret = (FillItem) {
                .weight = a->weight[i],
                .floor = a->floor[i],
                .ceil = a->ceil[i],
                .idle = a->idle ? a->idle[i] : 0,
        };
}

static void arrays_put(void *userdata, size_t i, uint64_t alloc) {
        FillArrays *a = userdata;

        a->alloc[i] = alloc;
}

void policy_water_fill(uint64_t budget, size_t n, const uint64_t *weight, const uint64_t *floor,
                       const uint64_t *ceil, const uint64_t *idle, double tax_rate, uint64_t *alloc) {
        FillArrays a = {
                .weight = weight,
                .floor = floor,
                .ceil = ceil,
                .idle = idle,
                .alloc = alloc,
        };
        FillOps ops = {
                .get = arrays_get,
                .put = arrays_put,
                .userdata = &a,
        };

        if (!(tax_rate >= 0 && tax_rate < 1))
                tax_rate = 0;
        policy_fill(budget, n, tax_rate, &ops);
}

/* ---- decisions ---- */

typedef struct DecideContext {
        const PolicyParams *p;
        const PolicyHost *host;
        const PolicyVM *vms;
        PolicyDecision *out;
        bool host_pressure;   /* trigger fired or reserve missing: guests under pressure are held */
        bool settling;        /* the trigger fired, but the last reclaim has not had time to work */
        uint64_t goal;        /* 0 when nothing is to be reclaimed this round */
        uint64_t planned;
} DecideContext;

GuestPressure policy_guest_pressure(const PolicyParams *p, const PolicyVM *vm) {
        GuestPressure gp = 0;

        if (vm->has_stats && vm->guest_available < vm->guest_min_available)
                gp |= GUEST_PRESSURE_AVAILABLE;
        if (p->guest_swapin_rate > 0 && vm->swap_in_rate >= p->guest_swapin_rate)
                gp |= GUEST_PRESSURE_SWAP_IN;
        if (p->guest_major_fault_rate > 0 && vm->major_fault_rate >= p->guest_major_fault_rate)
                gp |= GUEST_PRESSURE_MAJOR_FAULTS;
        if (vm->alloc_stalls > 0)
                gp |= GUEST_PRESSURE_ALLOC_STALLS;
        if (vm->direct_reclaims > 0)
                gp |= GUEST_PRESSURE_DIRECT_RECLAIM;
        if (vm->oom_kills > 0)
                gp |= GUEST_PRESSURE_OOM_KILL;
        if (vm->pressure_event)
                gp |= GUEST_PRESSURE_EVENT;
        return gp;
}

static bool vm_stalled(const PolicyParams *p, uint64_t now, const PolicyVM *vm) {
        return vm->target != vm->actual && vm->last_progress_usec != 0 &&
                sub_sat(now, vm->last_progress_usec) >= p->stall_usec;
}

/* Why the VM may not be inflated now, guest pressure and stalls aside (they get their own decision). */
static InflateBlock inflate_block(uint64_t now, const PolicyVM *vm) {
        if (vm->actual <= vm_min(vm))
                return BLOCK_FLOOR;
        if (!vm->has_stats)
                return BLOCK_NO_STATS;
        if (now < vm->hysteresis_until_usec)
                return BLOCK_HYSTERESIS;
        if (now < vm->backoff_until_usec)
                return BLOCK_BACKOFF;
        return BLOCK_NONE;
}

/* 'd' holds the VM's guest pressure already (policy_decision_init), which the water-filling's
 * bisection would otherwise compute again at every step. */
static bool inflate_eligible(const PolicyParams *p, uint64_t now, const PolicyVM *vm, const PolicyDecision *d) {
        return !vm_stalled(p, now, vm) && d->guest_pressure == 0 && inflate_block(now, vm) == BLOCK_NONE;
}

static void decide_fill_get(const void *userdata, size_t i, FillItem *ret) {
        const DecideContext *c = userdata;
        const PolicyVM *vm = &c->vms[i];

        if (!inflate_eligible(c->p, c->host->now_usec, vm, &c->out[i])) {
                *ret = (FillItem) { .weight = 1 };
                return;
        }
        *ret = (FillItem) {
                .weight = vm->weight,
                .floor = vm_min(vm),
                .ceil = vm->actual,
                .idle = MIN(vm->guest_free, vm->actual - vm_min(vm)),
        };
}

static void decide_fill_put(void *userdata, size_t i, uint64_t alloc) {
        DecideContext *c = userdata;

        c->out[i].share = alloc;
}

void policy_reason_add_signals(char *reason, const PolicyVM *vm, GuestPressure gp) {
        const char *sep = "";

        reason_add(reason, "guest pressure (");
        if (gp & GUEST_PRESSURE_AVAILABLE) {
                reason_add(reason, "%savailable %s < %s", sep, FB(vm->guest_available), FB(vm->guest_min_available));
                sep = ", ";
        }
        if (gp & GUEST_PRESSURE_SWAP_IN) {
                reason_add(reason, "%sswap-in %s/s", sep, FB(vm->swap_in_rate));
                sep = ", ";
        }
        if (gp & GUEST_PRESSURE_MAJOR_FAULTS) {
                reason_add(reason, "%smajor faults %" PRIu64 "/s", sep, vm->major_fault_rate);
                sep = ", ";
        }
        if (gp & GUEST_PRESSURE_ALLOC_STALLS) {
                reason_add(reason, "%s%" PRIu64 " allocation stalls", sep, vm->alloc_stalls);
                sep = ", ";
        }
        if (gp & GUEST_PRESSURE_DIRECT_RECLAIM) {
                reason_add(reason, "%s%" PRIu64 " direct reclaims", sep, vm->direct_reclaims);
                sep = ", ";
        }
        if (gp & GUEST_PRESSURE_OOM_KILL) {
                reason_add(reason, "%s%" PRIu64 " OOM kills", sep, vm->oom_kills);
                sep = ", ";
        }
        if (gp & GUEST_PRESSURE_EVENT)
                reason_add(reason, "%sguest driver event", sep);
        reason_add(reason, ")");
}

/* The raise that must come before the balloon gives memory back, so the host does not reclaim at
 * once what the guest just got. */
static void raise_high_for(const PolicyParams *p, const PolicyVM *vm, uint64_t target, PolicyDecision *d) {
        uint64_t high = add_sat(target, p->memory_high_overhead);

        if (vm->memory_high_known && high > vm->memory_high) {
                d->memory_high = high;
                d->raise_high_first = true;
        }
}

void policy_follow_device(const PolicyVM *vm, PolicyDecision *d) {
        /* Following instead of deflating again: a guest flooding messages gets no more than the
         * device's rate. */
        if (vm->target > vm->actual)
                d->action = POLICY_DEFLATE;
        else if (streq_ptr(vm->pressure_event_action, "cancel"))
                d->action = POLICY_CANCEL;
        else
                d->action = POLICY_HOLD;
        d->target = vm->target;
        reason_add(d->reason, "guest driver event (level %d): the device's action %s, balloon %s, target %s",
                   vm->pressure_event_level, vm->pressure_event_action ?: "unknown", FB(vm->actual),
                   FB(vm->target));
}

bool policy_cancel_inflate(const PolicyVM *vm, PolicyDecision *d) {
        if (vm->target >= vm->actual)
                return false;
        d->action = POLICY_CANCEL;
        d->target = vm->actual;
        reason_add(d->reason, ": cancel inflate to %s at %s", FB(vm->target), FB(vm->actual));
        return true;
}

static void decide_guest_pressure(const DecideContext *c, const PolicyVM *vm, PolicyDecision *d) {
        const PolicyParams *p = c->p;
        uint64_t min = vm_min(vm), t;
        bool floor = vm->actual < min;

        if (d->guest_pressure == GUEST_PRESSURE_EVENT && !floor) {
                policy_follow_device(vm, d);
                raise_high_for(p, vm, vm->target, d);
                goto finish;
        }

        policy_reason_add_signals(d->reason, vm, d->guest_pressure);

        if (policy_cancel_inflate(vm, d))
                goto finish;

        if (!floor && c->host_pressure) {
                /* Above its floor the guest competes by weight: it keeps what it has, and is exempt
                 * from reclaim while in hysteresis. */
                d->action = POLICY_HOLD;
                reason_add(d->reason, ": host under pressure too (goal %s), holding at %s", FB(c->goal),
                           FB(vm->actual));
                goto finish;
        }

        if (floor) {
                /* The floor is guaranteed: up to min at once, whatever the host state. */
                t = MIN(add_sat(vm->actual, p->max_step), min);
                t = MIN(page_up(t), vm->max);
        } else
                t = page_down(MIN(add_sat(vm->actual, MIN(p->deflate_step, p->max_step)), vm->max));

        if (t <= vm->actual) {
                reason_add(d->reason, ": at max %s", FB(vm->max));
                goto finish;
        }
        if (vm->target >= t) {
                reason_add(d->reason, ": deflate to %s in flight", FB(vm->target));
                goto finish;
        }

        d->action = POLICY_DEFLATE;
        d->target = t;
        reason_add(d->reason, ": deflate %s%s", FB(t - vm->actual), floor ? " up to the floor" : "");

        raise_high_for(p, vm, t, d);

finish:
        reason_add(d->reason, ", hysteresis %s", FU(p->hysteresis_usec));
}

void policy_reason_add_block(char *reason, uint64_t now, const PolicyVM *vm, InflateBlock b) {
        switch (b) {
        case BLOCK_FLOOR:
                reason_add(reason, "at floor %s", FB(vm_min(vm)));
                break;
        case BLOCK_NO_STATS:
                reason_add(reason, "no guest stats");
                break;
        case BLOCK_HYSTERESIS:
                reason_add(reason, "in hysteresis after guest pressure, %s left",
                           FU(vm->hysteresis_until_usec - now));
                break;
        case BLOCK_BACKOFF:
                reason_add(reason, "balloon backed off after %u stall%s, %s left", vm->stall_count,
                           vm->stall_count == 1 ? "" : "s", FU(vm->backoff_until_usec - now));
                break;
        case BLOCK_NONE:
                break;
        }
}

static void decide_inflate(DecideContext *c, const PolicyVM *vm, PolicyDecision *d) {
        const PolicyParams *p = c->p;
        uint64_t now = c->host->now_usec, min = vm_min(vm);
        bool slice = vm->slice_pressure && vm->memory_high_known && vm->memory_current >= vm->memory_high;
        bool above_max = vm->actual > vm->max;
        uint64_t want_host = 0, want_slice = 0, want_max = 0, want, red, t;
        InflateBlock b;

        if (c->goal == 0 && !slice && !above_max)
                return;

        b = inflate_block(now, vm);
        if (b != BLOCK_NONE) {
                d->action = POLICY_HOLD;
                if (c->goal > 0)
                        reason_add(d->reason, "host pressure: goal %s", FB(c->goal));
                else if (slice)
                        reason_add(d->reason, "slice pressure: current %s >= memory.high %s",
                                   FB(vm->memory_current), FB(vm->memory_high));
                else
                        reason_add(d->reason, "above max %s", FB(vm->max));
                reason_add(d->reason, "; held: ");
                policy_reason_add_block(d->reason, now, vm, b);
                return;
        }

        if (c->goal > 0)
                want_host = vm->actual - d->share;
        if (slice)
                want_slice = MAX(vm->memory_current - vm->memory_high + SLICE_MIN_STEP, SLICE_MIN_STEP);
        if (above_max)
                want_max = vm->actual - vm->max;
        want = MAX(want_host, MAX(want_slice, want_max));

        /* The reason names what asked for the most. */
        if (want == want_max && above_max)
                reason_add(d->reason, "above max %s by %s", FB(vm->max), FB(want_max));
        else if (want == want_slice && slice)
                reason_add(d->reason, "slice pressure: current %s >= memory.high %s, excess %s%s",
                           FB(vm->memory_current), FB(vm->memory_high), FB(want_slice),
                           c->goal > 0 ? " (more than the host share)" : "");
        else
                reason_add(d->reason, "host pressure: goal %s, share %s of %s by weight %" PRIu64
                           ", idle %s taxed at %.2f",
                           FB(c->goal), FB(d->share), FB(vm->actual), vm->weight ?: 1,
                           FB(MIN(vm->guest_free, vm->actual - min)), p->tax_rate);

        if (want == 0) {
                reason_add(d->reason, ": nothing to give");
                return;
        }

        /* The caps, the tightest of which is named. */
        uint64_t cap_rate = UINT64_MAX, since = 0;
        InflateCap cap;
        if (vm->last_inflate_usec != 0) {
                since = sub_sat(now, vm->last_inflate_usec);
                cap_rate = u128_sat((unsigned __int128) p->max_rate * since / USEC_PER_SEC);
        }
        red = policy_cap_inflate(vm, want, MIN(p->max_step, cap_rate), &cap);
        if (cap == CAP_MODE && red == cap_rate)
                reason_add(d->reason, "; capped by rate %s/s (%s since the last inflate)", FB(p->max_rate), FU(since));
        else if (cap == CAP_MODE)
                reason_add(d->reason, "; capped by max step %s", FB(p->max_step));
        else
                policy_reason_add_cap(d->reason, vm, cap);

        t = policy_inflate_target(vm, red);
        if (t >= vm->actual) {
                d->action = POLICY_HOLD;
                reason_add(d->reason, "; held: nothing left under the caps");
                return;
        }

        c->planned += vm->actual - MIN(t, vm->target);

        if (vm->target < vm->actual && vm->target <= t) {
                /* Do not stack: what is already asked covers this round. */
                reason_add(d->reason, "; inflate to %s in flight", FB(vm->target));
                return;
        }

        d->action = POLICY_INFLATE;
        d->target = t;
        d->last_inflate_usec = now;
}

static void decide_high(const DecideContext *c, const PolicyVM *vm, PolicyDecision *d) {
        uint64_t high = add_sat(vm->actual, c->p->memory_high_overhead);

        /* Not while in hysteresis: the guest just won memory back and is exempt from reclaim. */
        if (!vm->memory_high_known || vm->target != vm->actual || c->host->now_usec < vm->hysteresis_until_usec ||
            vm->memory_high <= add_sat(high, HIGH_SLACK))
                return;

        d->action = POLICY_SET_HIGH;
        d->memory_high = high;
        d->reason[0] = 0;
        reason_add(d->reason, "memory.high follows the balloon: %s -> %s (balloon %s + overhead %s)",
                   FB(vm->memory_high), FB(high), FB(vm->actual), FB(c->p->memory_high_overhead));
}

static void decide_vm(DecideContext *c, const PolicyVM *vm, PolicyDecision *d) {
        const PolicyParams *p = c->p;
        uint64_t now = c->host->now_usec;

        if (d->guest_pressure != 0)
                d->hysteresis_until_usec = add_sat(now, p->hysteresis_usec);

        /* A move completed: but not the stop a stall ordered itself (progress before the back-off
         * ended), or the back-off would never grow. */
        if (vm->actual == vm->target && vm->last_progress_usec >= vm->backoff_until_usec)
                d->stall_count = 0;

        if (vm_stalled(p, now, vm)) {
                unsigned shift = MIN(vm->stall_count, BACKOFF_MAX_SHIFT);
                uint64_t backoff = p->stall_backoff_usec > (UINT64_MAX >> shift) ?
                        UINT64_MAX : p->stall_backoff_usec << shift;

                d->action = POLICY_STALL;
                d->target = vm->actual;
                d->stall_count = vm->stall_count + 1;
                d->backoff_until_usec = add_sat(now, backoff);
                reason_add(d->reason, "balloon stalled: no progress towards %s for %s (at %s); back-off %s (stall %u)",
                           FB(vm->target), FU(now - vm->last_progress_usec), FB(vm->actual), FU(backoff),
                           d->stall_count);
                return;
        }

        if (d->guest_pressure != 0)
                decide_guest_pressure(c, vm, d);
        else
                decide_inflate(c, vm, d);

        if (d->action == POLICY_NONE)
                decide_high(c, vm, d);
}

/* ---- shared by the modes ---- */

uint64_t policy_cap_inflate(const PolicyVM *vm, uint64_t want, uint64_t mode_cap, InflateCap *ret_cap) {
        uint64_t cap_floor = sub_sat(vm->actual, vm_min(vm));
        uint64_t cap_avail = vm->has_stats ? sub_sat(vm->guest_available, vm->guest_reserve) : 0;
        uint64_t red = MIN(MIN(want, cap_floor), MIN(cap_avail, mode_cap));

        *ret_cap = red == want ? CAP_NONE : red == cap_avail ? CAP_AVAILABLE : red == cap_floor ? CAP_FLOOR : CAP_MODE;
        return red;
}

void policy_reason_add_cap(char *reason, const PolicyVM *vm, InflateCap cap) {
        if (cap == CAP_AVAILABLE && !vm->has_stats)
                reason_add(reason, "; capped: no guest stats");
        else if (cap == CAP_AVAILABLE)
                reason_add(reason, "; capped by guest available %s - reserve %s", FB(vm->guest_available),
                           FB(vm->guest_reserve));
        else if (cap == CAP_FLOOR)
                reason_add(reason, "; capped by floor %s", FB(vm_min(vm)));
}

void policy_decision_init(PolicyDecision *d, const PolicyParams *p, const PolicyVM *vm) {
        *d = (PolicyDecision) {
                .action = POLICY_NONE,
                .target = vm->target,
                .memory_high = vm->memory_high,
                .guest_pressure = policy_guest_pressure(p, vm),
                .hysteresis_until_usec = vm->hysteresis_until_usec,
                .backoff_until_usec = vm->backoff_until_usec,
                .stall_count = vm->stall_count,
                .last_inflate_usec = vm->last_inflate_usec,
        };
}

void policy_summary_init(PolicySummary *s, const PolicyHost *host) {
        *s = (PolicySummary) {
                .last_reclaim_usec = host->last_reclaim_usec,
                .last_cycle_usec = host->last_cycle_usec,
        };
}

void policy_reason_add_counts(char *reason, const PolicyDecision *out, size_t n, const char *sep) {
        static const char *const labels[_POLICY_ACTION_MAX] = {
                [POLICY_INFLATE] = "inflate",
                [POLICY_DEFLATE] = "deflate",
                [POLICY_CANCEL] = "cancel",
                [POLICY_HOLD] = "held",
                [POLICY_STALL] = "stalled",
                [POLICY_SET_HIGH] = "memory.high",
        };
        size_t count[_POLICY_ACTION_MAX] = {};
        bool any = false;

        for (size_t i = 0; i < n; i++)
                count[out[i].action]++;
        for (PolicyAction a = POLICY_INFLATE; a < _POLICY_ACTION_MAX; a++) {
                if (count[a] == 0)
                        continue;
                reason_add(reason, "%s%zu %s", any ? ", " : sep, count[a], labels[a]);
                any = true;
        }
        if (!any)
                reason_add(reason, "%snothing to do", sep);
}

/* "host pressure (trigger, available 100M < reserve 256M)", or "no host pressure"; returns whether
 * there is. */
static bool reason_add_host(char *reason, const PolicyParams *p, const PolicyHost *host) {
        bool low = host->available < p->host_reserve;

        if (!host->pressure && !low) {
                reason_add(reason, "no host pressure");
                return false;
        }
        reason_add(reason, "host pressure (%s%s", host->pressure ? "trigger" : "", host->pressure && low ? ", " : "");
        if (low)
                reason_add(reason, "available %s < reserve %s", FB(host->available), FB(p->host_reserve));
        reason_add(reason, ")");
        return true;
}

/* ---- autoballoon ---- */

static void summarize(const DecideContext *c, size_t n, PolicySummary *ret) {
        ret->host_pressure = c->host_pressure;
        ret->goal = c->goal;
        ret->planned = c->planned;

        for (size_t i = 0; i < n && c->goal > 0; i++)
                if (c->out[i].action == POLICY_INFLATE) {
                        ret->last_reclaim_usec = c->host->now_usec;
                        break;
                }

        if (reason_add_host(ret->reason, c->p, c->host)) {
                reason_add(ret->reason, ": goal %s, planned %s", FB(c->goal), FB(c->planned));
                if (c->settling)
                        reason_add(ret->reason, ", settling: last reclaim %s ago",
                                   FU(c->host->now_usec - c->host->last_reclaim_usec));
        }
        policy_reason_add_counts(ret->reason, c->out, n, c->host_pressure ? "; " : ": ");
}

static void decide_autoballoon(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n,
                               PolicyDecision *out, PolicySummary *summary) {
        uint64_t now = host->now_usec;
        DecideContext c = {
                .p = p,
                .host = host,
                .vms = vms,
                .out = out,
        };

        /* What the balloons already in flight will return counts against the missing reserve. */
        uint64_t inflight = 0;
        for (size_t i = 0; i < n; i++)
                if (vms[i].target < vms[i].actual)
                        inflight = add_sat(inflight, vms[i].actual - vms[i].target);
        if (host->available < p->host_reserve)
                c.goal = sub_sat(p->host_reserve - host->available, inflight);

        /* A trigger reports stalls over its whole window: one firing right after a reclaim mostly
         * measures the time before the reclaim. Each trigger asks for ReclaimStep= only once the last
         * reclaim had reclaim_settle_usec to take effect, so goals do not stack up. */
        c.settling = host->pressure && host->last_reclaim_usec != 0 &&
                now < add_sat(host->last_reclaim_usec, p->reclaim_settle_usec);
        if (host->pressure && !c.settling)
                c.goal = MAX(c.goal, p->reclaim_step);
        c.host_pressure = host->pressure || host->available < p->host_reserve;

        if (c.goal > 0) {
                /* The eligible VMs share what they have minus the goal. */
                unsigned __int128 total = 0;
                for (size_t i = 0; i < n; i++)
                        if (inflate_eligible(p, now, &vms[i], &out[i]))
                                total += vms[i].actual;

                FillOps ops = {
                        .get = decide_fill_get,
                        .put = decide_fill_put,
                        .userdata = &c,
                };
                policy_fill(total > c.goal ? total - c.goal : 0, n, p->tax_rate, &ops);
        }

        for (size_t i = 0; i < n; i++)
                decide_vm(&c, &vms[i], &out[i]);

        summarize(&c, n, summary);
}

/* ---- none ---- */

void policy_decide_none(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n,
                        PolicyDecision *out, PolicySummary *summary) {
        /* Says what it ignores, so a comparison run shows what the others would have acted on. */
        for (size_t i = 0; i < n; i++) {
                reason_add(out[i].reason, "policy none: no ballooning");
                if (out[i].guest_pressure != 0) {
                        reason_add(out[i].reason, "; ignored: ");
                        policy_reason_add_signals(out[i].reason, &vms[i], out[i].guest_pressure);
                }
        }

        reason_add(summary->reason, "policy none: no ballooning; ");
        summary->host_pressure = reason_add_host(summary->reason, p, host);
        if (summary->host_pressure)
                reason_add(summary->reason, " ignored");
}

/* ---- dispatch ---- */

static bool params_valid(const PolicyParams *p) {
        return (unsigned) p->mode < _POLICY_MODE_MAX &&
                p->tax_rate >= 0 && p->tax_rate < 1 && /* false for NaN too */
                p->reclaim_step > 0 && p->max_step > 0 && p->max_rate > 0 && p->deflate_step > 0 &&
                p->stall_usec > 0;
}

int policy_decide(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n,
                  PolicyDecision *out, PolicySummary *summary) {
        static void (*const decide[_POLICY_MODE_MAX])(const PolicyParams *, const PolicyHost *, const PolicyVM *,
                                                      size_t, PolicyDecision *, PolicySummary *) = {
                [POLICY_MODE_AUTOBALLOON] = decide_autoballoon,
                [POLICY_MODE_NONE] = policy_decide_none,
                [POLICY_MODE_RFC] = policy_decide_rfc,
                [POLICY_MODE_PROXMOX] = policy_decide_proxmox,
        };
        PolicySummary s;

        if (!p || !host || (n > 0 && (!vms || !out)) || !params_valid(p))
                return -EINVAL;

        for (size_t i = 0; i < n; i++)
                policy_decision_init(&out[i], p, &vms[i]);
        policy_summary_init(&s, host);

        decide[p->mode](p, host, vms, n, out, &s);

        if (summary)
                *summary = s;
        return 0;
}
