/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Policy=autoballoon, the default: host pressure sets a reclaim goal shared by weighted water-filling
 * with the idle memory tax, slice pressure inflates the VM that stalls against its memory.high,
 * guest pressure deflates with hysteresis, memory.high follows the balloon, stalled balloons are
 * backed off. docs/design.md ("Where each decision is made") walks through it. */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "policy-internal.h"

/* Slice pressure takes at least this much, so a VM just over its memory.high is not nudged by a
 * few pages per trigger. */
#define SLICE_MIN_STEP (16 * MIB)
/* memory.high is only lowered when it is this far above where it should be (no churn). */
#define HIGH_SLACK MIB
/* Idle reclaim takes idle memory only this far above the guest's headroom, where give-back stops:
 * the dead band between the two. */
#define IDLE_RECLAIM_BAND (16 * MIB)
/* Stall back-off doubles per stall up to 2^4 = 16x. */
#define BACKOFF_MAX_SHIFT 4U

static uint64_t u128_sat(unsigned __int128 v) {
        return v > UINT64_MAX ? UINT64_MAX : (uint64_t) v;
}

typedef struct DecideContext {
        const PolicyParams *p;
        const PolicyHost *host;
        const PolicyVM *vms;
        PolicyDecision *out;
        bool explain;         /* reasons for the "none" decisions too */
        char tax_rate[16];    /* "0.75": formatted once, not in every VM's reason */
        bool host_pressure;   /* trigger fired or reserve missing: guests under pressure are held */
        bool settling;        /* the trigger fired, but the last reclaim has not had time to work */
        uint64_t goal;        /* 0 when nothing is to be reclaimed this round */
        uint64_t planned;
        bool calm;            /* give-back: the host has had room for refill_settle_usec */
        uint64_t spare;       /* available memory above host_reserve + refill_margin, less give-backs in flight */
        uint64_t short_total; /* what the VMs not in flight are short of their entitlements */
} DecideContext;

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
        if (now < vm->carry.hysteresis_until_usec)
                return BLOCK_HYSTERESIS;
        if (now < vm->carry.backoff_until_usec)
                return BLOCK_BACKOFF;
        return BLOCK_NONE;
}

/* The free memory the tax sees: what the guest used within IdleWindowSec= is not idle, or what a
 * guest freed a moment ago would be taken before it uses it again. */
static uint64_t vm_free_idle(const PolicyVM *vm) {
        return vm->has_stats ? sub_sat(vm->guest_free, vm->guest_free_recent) : 0;
}

static uint64_t vm_idle(const PolicyVM *vm) {
        return MIN(vm_free_idle(vm), sub_sat(vm->actual, vm_min(vm)));
}

/* The available memory a squeezed guest keeps: GuestReserve=, or more for a guest whose demand grew
 * by more than that between two stats reports within the window, as it may again before the next. */
static uint64_t vm_headroom(const PolicyVM *vm) {
        return MAX(vm->guest_reserve, vm->guest_growth);
}

/* Idle reclaim (IdleReclaimRate=): free memory the guest did not use within IdleWindowSec=, beyond
 * its headroom and the band, goes back to the host whatever the host's state: memory nothing uses is
 * not left in a guest (TMO's principle). */
static uint64_t vm_idle_excess(const PolicyParams *p, const PolicyVM *vm) {
        uint64_t excess;

        if (p->idle_reclaim_rate == 0 || !vm->has_stats)
                return 0;
        excess = sub_sat(vm_free_idle(vm), vm_headroom(vm));
        return excess > IDLE_RECLAIM_BAND ? excess : 0;
}

/* What the VM really holds of its slice: memory.current without the host page cache charged to it
 * (QEMU's disk I/O), which the host reclaims at memory.high. */
static uint64_t vm_held(const PolicyVM *vm) {
        return sub_sat(vm->memory_current, vm->slice_cache);
}

/* What a slice trigger means for a VM at its memory.high. */
typedef enum SliceCase {
        SLICE_NONE,  /* no trigger, or below memory.high */
        SLICE_CACHE, /* the host reclaiming page cache charged to the slice: not demand */
        SLICE_OWN,   /* our own throttling, the host has headroom: memory.high is raised */
        SLICE_SHORT, /* the host is short, or the VM at its allotment: inflated */
} SliceCase;

/* An own-throttled VM's allotment: its give-back entitlement (or its balloon, if above) when the host
 * is calm and entitlements are shared, else MaxMemory=. */
static uint64_t slice_allotment(const DecideContext *c, const PolicyVM *vm, const PolicyDecision *d) {
        return c->calm && d->entitlement > 0 ? MIN(vm->max, MAX(d->entitlement, vm->actual)) : vm->max;
}

/* The memory.high an own-throttled VM gets: what it holds plus a step, within its allotment plus
 * overhead and the host's headroom above HostReserve=. */
static uint64_t slice_raise(const DecideContext *c, const PolicyVM *vm, const PolicyDecision *d) {
        uint64_t high = add_sat(MAX(vm_held(vm), vm->memory_high), SLICE_MIN_STEP);

        high = MIN(high, add_sat(slice_allotment(c, vm, d), c->p->memory_high_overhead));
        return MIN(high, add_sat(vm->memory_high, sub_sat(c->host->available, c->p->host_reserve)));
}

static SliceCase slice_case(const DecideContext *c, const PolicyVM *vm, const PolicyDecision *d) {
        if (!vm->slice_pressure || !vm->memory_high_known || vm->memory_current < vm->memory_high)
                return SLICE_NONE;
        if (add_sat(vm_held(vm), SLICE_MIN_STEP) <= vm->memory_high)
                return SLICE_CACHE;
        if (!c->host_pressure && vm->actual <= vm->max && slice_raise(c, vm, d) > vm->memory_high)
                return SLICE_OWN;
        return SLICE_SHORT;
}

/* 'd' holds the VM's guest pressure already (policy_decision_init). */
static bool inflate_eligible(const PolicyParams *p, uint64_t now, const PolicyVM *vm, const PolicyDecision *d) {
        return !vm_stalled(p, now, vm) && d->guest_pressure == 0 && inflate_block(now, vm) == BLOCK_NONE;
}

/* The eligible VMs share what they have minus the goal; the others' share stays 0. */
static int decide_shares(DecideContext *c, size_t n) {
        uint64_t now = c->host->now_usec;
        unsigned __int128 total = 0;
        size_t m = 0;

        _cleanup_free_ FillItem *items = reallocarray(NULL, MAX(n, 1u), sizeof(FillItem));
        if (!items)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const PolicyVM *vm = &c->vms[i];

                if (!inflate_eligible(c->p, now, vm, &c->out[i]))
                        continue;
                items[m++] = (FillItem) {
                        .weight = vm->weight,
                        .floor = vm_min(vm),
                        .ceil = vm->actual,
                        .idle = vm_idle(vm),
                        .vm = i,
                };
                total += vm->actual;
        }

        int r = policy_fill(total > c->goal ? total - c->goal : 0, items, m, c->p->tax_rate, NULL);
        if (r < 0)
                return r;
        for (size_t k = 0; k < m; k++)
                c->out[items[k].vm].share = items[k].alloc;
        return 0;
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

/* Give-back refills a balloon by at least this much, so a VM near its entitlement is not nudged by
 * a few pages per decision. */
#define REFILL_MIN_STEP (4 * MIB)

/* Each VM's entitlement: what the VMs hold of the host plus its spare memory, shared by weight within
 * [MinMemory=, MaxMemory=] with the idle tax. What a VM holds is its balloon size, or less while its
 * slice (beyond MemoryHighOverhead= for QEMU) has not touched it all: a deflation the guest has not
 * used yet is still available on the host and must not count twice. Its idle memory is what is free
 * in the guest plus what a deflation would add, the top of its range above the memory it uses: that
 * a VM is given memory back does not change its entitlement, and a VM with free memory is the first
 * to stop growing when the spare does not cover every VM's MaxMemory=. What the VMs are short of
 * their entitlements, in c->short_total, shares the spare a round may give. */
static int decide_entitlements(DecideContext *c, size_t n) {
        unsigned __int128 pool = c->spare;

        _cleanup_free_ FillItem *items = reallocarray(NULL, MAX(n, 1u), sizeof(FillItem));
        if (!items)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const PolicyVM *vm = &c->vms[i];
                uint64_t min = vm_min(vm), free = vm_free_idle(vm);

                pool += vm->memory_high_known ?
                        MIN(vm->actual, sub_sat(vm->memory_current, c->p->memory_high_overhead)) : vm->actual;
                items[i] = (FillItem) {
                        .weight = vm->weight,
                        .floor = min,
                        .ceil = vm->max,
                        .idle = MIN(add_sat(free, sub_sat(vm->max, vm->actual)), vm->max - min),
                        .vm = i,
                };
        }

        int r = policy_fill(pool, items, n, c->p->tax_rate, NULL);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                const PolicyVM *vm = &c->vms[i];

                c->out[i].entitlement = page_down(items[i].alloc);
                /* With idle reclaim, a guest is given back only what it lacks of its headroom in free
                 * memory: more would be idle, and taken again. */
                if (c->p->idle_reclaim_rate > 0 && vm->has_stats)
                        c->out[i].entitlement = MIN(c->out[i].entitlement,
                                                    page_down(add_sat(vm->actual, sub_sat(vm_headroom(vm), vm->guest_free))));
                /* Give-backs in flight take their part of the spare already. */
                if (vm->target > vm->actual)
                        c->spare = sub_sat(c->spare, vm->target - vm->actual);
                else
                        c->short_total = add_sat(c->short_total, sub_sat(c->out[i].entitlement, vm->actual));
        }
        return 0;
}

/* Why the host is not calm, for the reasons of the VMs that are not given memory back. */
static void refill_reason_host(const DecideContext *c, PolicyDecision *d) {
        const PolicyParams *p = c->p;
        const PolicyHost *host = c->host;

        if (p->refill_rate == 0)
                reason_add(d->reason, "give-back off (RefillRate=0)");
        else if (c->host_pressure)
                reason_add(d->reason, "no give-back: host pressure");
        else if (host->available < add_sat(p->host_reserve, p->refill_margin))
                reason_add(d->reason, "no give-back: available %s < reserve %s + margin %s (dead band)",
                           FB(host->available), FB(p->host_reserve), FB(p->refill_margin));
        else
                reason_add(d->reason, "no give-back: host pressure %s ago, settling for %s",
                           FU(host->now_usec - host->last_pressure_usec), FU(p->refill_settle_usec));
}

/* Give-back: a VM below its entitlement while the host is calm is deflated towards it, memory.high
 * first, at most max_step and refill_rate allow; not within refill_delay_usec of its last inflation,
 * so that a host around its thresholds does not take and give the same memory in turn. */
static void decide_refill(const DecideContext *c, const PolicyVM *vm, PolicyDecision *d) {
        const PolicyParams *p = c->p;
        uint64_t now = c->host->now_usec, e = d->entitlement, want, step, since;
        bool capped_rate = false, capped_spare = false;

        if (!c->calm) {
                if (c->explain) {
                        if (e > 0)
                                reason_add(d->reason, "entitlement %s; ", FB(e));
                        refill_reason_host(c, d);
                }
                return;
        }

        /* Small moves only to the ceiling, which does not move with the spare. */
        want = sub_sat(MIN(e, vm->max), vm->actual);
        if (want < POLICY_PAGE_SIZE || (want < REFILL_MIN_STEP && e < vm->max) || vm->target != vm->actual) {
                /* At its entitlement, or a move in flight: a "none" without a reason but explaining. */
                if (!c->explain)
                        return;
                reason_add(d->reason, "entitlement %s: ", FB(e));
                if (vm->target > vm->actual)
                        reason_add(d->reason, "give-back to %s in flight", FB(vm->target));
                else if (vm->target < vm->actual)
                        reason_add(d->reason, "inflate to %s in flight", FB(vm->target));
                else
                        reason_add(d->reason, "at it (balloon %s)", FB(vm->actual));
                return;
        }

        if (vm->carry.last_inflate_usec != 0 && now < add_sat(vm->carry.last_inflate_usec, p->refill_delay_usec)) {
                if (c->explain)
                        reason_add(d->reason, "entitlement %s, %s short: no give-back for %s after the last inflate (%s ago)",
                                   FB(e), FB(want), FU(p->refill_delay_usec), FU(now - vm->carry.last_inflate_usec));
                return;
        }

        /* The spare is split in proportion to what each VM is short, so that one round never gives
         * more than the host has above the give-back threshold: a VM above its entitlement is not
         * reclaimed for another's give-back, only on host pressure. */
        step = MIN(want, p->max_step);
        uint64_t part = u128_sat((unsigned __int128) c->spare * want / MAX(c->short_total, want));
        if (part < step) {
                step = part;
                capped_spare = true;
        }
        if (vm->carry.last_refill_usec != 0) {
                since = sub_sat(now, vm->carry.last_refill_usec);
                uint64_t cap = u128_sat((unsigned __int128) p->refill_rate * since / USEC_PER_SEC);
                if (cap < step) {
                        step = cap;
                        capped_rate = true;
                        capped_spare = false;
                }
        }
        /* No remainder too small to be given later. */
        if (want - step < REFILL_MIN_STEP) {
                step = want;
                capped_rate = capped_spare = false;
        }
        if (step < REFILL_MIN_STEP && step < want) {
                if (c->explain)
                        reason_add(d->reason, "entitlement %s, %s short: %s", FB(e), FB(want),
                                   capped_spare ? "no spare left this round" : "waiting for the rate");
                return;
        }

        d->action = POLICY_DEFLATE;
        d->target = page_down(vm->actual + step);
        d->carry.last_refill_usec = now;
        raise_high_for(p, vm, d->target, d);
        reason_add(d->reason, "give-back: host calm, spare %s; entitlement %s by weight %" PRIu64
                   ", idle %s taxed at %s: deflate %s", FB(c->spare), FB(e), vm->weight ?: 1,
                   FB(vm_free_idle(vm)), c->tax_rate, FB(d->target - vm->actual));
        if (capped_rate)
                reason_add(d->reason, "; capped by rate %s/s", FB(p->refill_rate));
        else if (capped_spare)
                reason_add(d->reason, "; capped by its part of the spare");
        else if (step < want)
                reason_add(d->reason, "; capped by max step %s", FB(p->max_step));
}

/* A deflation gives what the guest lacks of its headroom rather than a fixed step: a guest that grew
 * by 128M at once gets 128M back at once, not in 60 s of hysteresis-separated steps. DeflateStep= at
 * least when its available memory does not show the pressure (swap-in, faults: it is short of what
 * it counts as available). At most MaxStep=. */
static uint64_t deflate_size(const PolicyParams *p, const PolicyVM *vm, GuestPressure gp) {
        uint64_t s = vm->has_stats ? sub_sat(vm_headroom(vm), vm->guest_available) : 0;

        if (!(gp & GUEST_PRESSURE_AVAILABLE))
                s = MAX(s, p->deflate_step);
        return MIN(s, p->max_step);
}

static void decide_guest_pressure(const DecideContext *c, const PolicyVM *vm, PolicyDecision *d) {
        const PolicyParams *p = c->p;
        uint64_t min = vm_min(vm), t;
        bool floor = vm->actual < min;
        /* Below half GuestMinAvailable= the guest is about to OOM-kill, which the host's swap would
         * have saved: it is given its shortfall even while the host is short too. */
        bool starving = vm->has_stats && vm->guest_available < vm->guest_min_available / 2;

        if (floor) {
                /* The floor is guaranteed: up to min at once, whatever the host state. */
                t = MIN(add_sat(vm->actual, p->max_step), min);
                t = MIN(page_up(t), vm->max);
        } else
                t = page_down(MIN(add_sat(vm->actual, deflate_size(p, vm, d->guest_pressure)), vm->max));

        /* Nothing to do (at max, or the deflation in flight): no reason but when explaining. */
        if (!c->explain && vm->target >= MIN(vm->actual, vm->max) && (floor || starving || !c->host_pressure) &&
            (t <= vm->actual || vm->target >= t))
                return;

        policy_reason_add_signals(d->reason, vm, d->guest_pressure);

        if (policy_cancel_inflate(vm, UINT64_MAX, d))
                goto finish;

        if (!floor && !starving && c->host_pressure) {
                /* Above its floor the guest competes by weight: it keeps what it has, and is exempt
                 * from reclaim while in hysteresis. */
                d->action = POLICY_HOLD;
                reason_add(d->reason, ": host under pressure too (goal %s), holding at %s", FB(c->goal),
                           FB(vm->actual));
                /* Held where the balloon is, which memory.high must not be under. */
                raise_high_for(p, vm, MAX(vm->actual, vm->target), d);
                goto finish;
        }

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
        reason_add(d->reason, ": deflate %s", FB(t - vm->actual));
        if (floor)
                reason_add(d->reason, " up to the floor");
        else if (d->guest_pressure & GUEST_PRESSURE_AVAILABLE)
                reason_add(d->reason, " (shortfall: headroom %s - available %s)", FB(vm_headroom(vm)),
                           FB(vm->guest_available));
        if (!floor && c->host_pressure)
                reason_add(d->reason, ", though the host is short too (goal %s): below half of %s available",
                           FB(c->goal), FB(vm->guest_min_available));

        raise_high_for(p, vm, t, d);

finish:
        reason_add(d->reason, ", hysteresis %s", FU(p->hysteresis_usec));
}

/* A guest pressure message (the device forwards it and decides nothing; other signals may come with
 * it, and count as medium). An inflation in flight is cancelled, but never more than DeflateStep
 * above the daemon's own target, however far the guest-written actual says the balloon is; medium
 * and critical then give a step back on top (critical: the guest's own estimate, up to MaxStep);
 * low only cancels, as nothing is to be given back on low while nothing is being inflated. Under
 * host pressure a medium guest keeps what it has and competes by weight, as on the other signals;
 * a critical one still gets its step, its allocations being about to fail. */
static void decide_guest_event(const DecideContext *c, const PolicyVM *vm, PolicyDecision *d) {
        const PolicyParams *p = c->p;
        uint64_t step = MIN(p->deflate_step, p->max_step), give = step, base, t;
        int level = vm->pressure_event_level;
        bool cancel;

        if (d->guest_pressure != GUEST_PRESSURE_EVENT)
                level = MAX(level, (int) GUEST_PRESSURE_LEVEL_MEDIUM);
        if (level >= GUEST_PRESSURE_LEVEL_CRITICAL)
                give = MIN(MAX(p->deflate_step, vm->pressure_event_size), p->max_step);

        policy_reason_add_signals(d->reason, vm, d->guest_pressure);
        cancel = policy_cancel_inflate(vm, page_down(policy_event_cancel_bound(vm, step)), d);
        base = cancel ? d->target : vm->actual;

        if (level < GUEST_PRESSURE_LEVEL_MEDIUM) {
                if (!cancel) {
                        d->action = POLICY_HOLD;
                        reason_add(d->reason, ": no inflation in flight, holding at %s", FB(vm->actual));
                }
                goto finish;
        }
        if (level < GUEST_PRESSURE_LEVEL_CRITICAL && c->host_pressure) {
                if (!cancel) {
                        d->action = POLICY_HOLD;
                        raise_high_for(p, vm, MAX(vm->actual, vm->target), d);
                }
                reason_add(d->reason, "%shost under pressure too (goal %s), holding at %s", cancel ? "; " : ": ",
                           FB(c->goal), FB(base));
                goto finish;
        }

        t = page_down(MIN(add_sat(base, give), vm->max));
        if (t <= base || t <= vm->target) {
                if (!cancel)
                        d->action = POLICY_HOLD;
                if (t <= base)
                        reason_add(d->reason, "%sat max %s", cancel ? "; " : ": ", FB(vm->max));
                else
                        reason_add(d->reason, "%sdeflate to %s in flight", cancel ? "; " : ": ", FB(vm->target));
                goto finish;
        }
        d->action = POLICY_DEFLATE;
        d->target = t;
        reason_add(d->reason, "%sdeflate %s", cancel ? "; then " : ": ", FB(t - base));
        raise_high_for(p, vm, t, d);

finish:
        reason_add(d->reason, ", hysteresis %s", FU(p->hysteresis_usec));
}

/* What an inflation asks for and is allowed, kept for its reason. */
typedef struct InflateAsk {
        uint64_t want;                       /* the largest of: */
        uint64_t want_host, want_slice, want_max, want_idle;
        bool idle_only;                      /* idle reclaim asks the most: its own rate, no hold said */
        uint64_t red;                        /* want after the caps */
        InflateCap cap;
        uint64_t rate, cap_rate, since;      /* the rate, its cap, and the time it is over */
} InflateAsk;

/* The reason of an inflation, before what follows the caps: what asked for the most, then the
 * tightest cap. */
static void inflate_reason(const DecideContext *c, const PolicyVM *vm, const InflateAsk *a, PolicyDecision *d) {
        const PolicyParams *p = c->p;

        if (a->want == a->want_max && vm->actual > vm->max)
                reason_add(d->reason, "above max %s by %s", FB(vm->max), FB(a->want_max));
        else if (a->idle_only)
                reason_add(d->reason, "idle reclaim: free %s, used within the window %s, headroom %s + band %s: "
                           "excess %s", FB(vm->guest_free), FB(vm->guest_free_recent), FB(vm_headroom(vm)),
                           FB(IDLE_RECLAIM_BAND), FB(a->want_idle));
        else if (a->want == a->want_slice && a->want_slice > 0)
                reason_add(d->reason, "slice pressure, %s: holds %s (+ cache %s) at memory.high %s, excess %s%s",
                           c->host_pressure ? "host short" : "at its allotment", FB(vm_held(vm)),
                           FB(vm->slice_cache), FB(vm->memory_high), FB(a->want_slice),
                           c->goal > 0 ? " (more than the host share)" : "");
        else
                reason_add(d->reason, "host pressure: goal %s, share %s of %s by weight %" PRIu64
                           ", idle %s taxed at %s",
                           FB(c->goal), FB(d->share), FB(vm->actual), vm->weight ?: 1,
                           FB(vm_idle(vm)), c->tax_rate);

        if (a->want == 0) {
                reason_add(d->reason, ": nothing to give");
                return;
        }
        if (a->cap == CAP_AVAILABLE && vm->has_stats &&
            (vm->guest_growth > vm->guest_reserve || vm->guest_free_recent > 0)) {
                reason_add(d->reason, "; capped by guest available %s - freed within the window %s - headroom %s%s",
                           FB(vm->guest_available), FB(vm->guest_free_recent),
                           FB(vm_headroom(vm)),
                           vm->guest_growth > vm->guest_reserve ? " (growth seen)" : "");
                return;
        }
        if (a->cap == CAP_MODE && a->red == a->cap_rate)
                reason_add(d->reason, "; capped by rate %s/s (%s%s)", FB(a->rate), FU(a->since),
                           vm->carry.last_inflate_usec != 0 ? " since the last inflate" : ": the first inflate");
        else if (a->cap == CAP_MODE)
                reason_add(d->reason, "; capped by max step %s", FB(p->max_step));
        else
                policy_reason_add_cap(d->reason, vm, a->cap);
}

/* Slice pressure that is no shortage of the host: memory.high is raised, or nothing is done. */
static void decide_slice(const DecideContext *c, const PolicyVM *vm, SliceCase sc, PolicyDecision *d) {
        uint64_t high;

        if (sc == SLICE_CACHE) {
                if (c->explain)
                        reason_add(d->reason, "slice pressure on host page cache: holds %s + cache %s, memory.high %s: "
                                   "reclaimable, not inflated", FB(vm_held(vm)), FB(vm->slice_cache),
                                   FB(vm->memory_high));
                return;
        }

        high = slice_raise(c, vm, d);
        d->action = POLICY_SET_HIGH;
        d->memory_high = high;
        d->raise_high_first = true;
        reason_add(d->reason, "slice pressure, own throttling: holds %s at memory.high %s, host available %s: "
                   "memory.high -> %s (at most %s %s + overhead %s)", FB(vm_held(vm)), FB(vm->memory_high),
                   FB(c->host->available), FB(high), c->calm && d->entitlement > 0 ? "entitlement" : "max",
                   FB(slice_allotment(c, vm, d)),
                   FB(c->p->memory_high_overhead));
}

static void decide_inflate(DecideContext *c, const PolicyVM *vm, PolicyDecision *d) {
        const PolicyParams *p = c->p;
        uint64_t now = c->host->now_usec;
        SliceCase sc = slice_case(c, vm, d);
        bool slice = sc == SLICE_SHORT;
        bool above_max = vm->actual > vm->max;
        InflateAsk a = { .cap_rate = UINT64_MAX };
        uint64_t t;
        PolicyVM seen;
        InflateBlock b;

        if (sc == SLICE_OWN || (sc == SLICE_CACHE && c->goal == 0 && !above_max)) {
                decide_slice(c, vm, sc, d);
                return;
        }
        if (c->goal > 0)
                a.want_host = vm->actual - d->share;
        if (slice)
                a.want_slice = MAX(sub_sat(add_sat(vm_held(vm), SLICE_MIN_STEP), vm->memory_high), SLICE_MIN_STEP);
        if (above_max)
                a.want_max = vm->actual - vm->max;
        /* Under a goal idle memory goes first anyway: the tax. */
        if (c->goal == 0)
                a.want_idle = vm_idle_excess(p, vm);
        a.want = MAX(MAX(a.want_host, a.want_idle), MAX(a.want_slice, a.want_max));
        a.idle_only = a.want_idle > MAX(MAX(a.want_host, a.want_slice), a.want_max);
        if (c->goal == 0 && !slice && !above_max && !a.idle_only)
                return;

        b = inflate_block(now, vm);
        if (b != BLOCK_NONE) {
                /* Idle memory waits for the hysteresis or back-off to end: no hold to log. */
                if (a.idle_only) {
                        if (c->explain) {
                                inflate_reason(c, vm, &a, d);
                                reason_add(d->reason, "; waits: ");
                                policy_reason_add_block(d->reason, now, vm, b);
                        }
                        return;
                }
                d->action = POLICY_HOLD;
                if (c->goal > 0)
                        reason_add(d->reason, "host pressure: goal %s", FB(c->goal));
                else if (slice)
                        reason_add(d->reason, "slice pressure: holds %s at memory.high %s",
                                   FB(vm_held(vm)), FB(vm->memory_high));
                else
                        reason_add(d->reason, "above max %s", FB(vm->max));
                reason_add(d->reason, "; held: ");
                policy_reason_add_block(d->reason, now, vm, b);
                return;
        }

        if (a.want == 0) {
                /* Most VMs, when a goal is shared among many: a "none" without a reason. */
                if (c->explain)
                        inflate_reason(c, vm, &a, d);
                return;
        }

        /* The caps, the tightest of which is named. Idle reclaim has its own rate, from the first
         * decision on (as if the last inflation was a second ago). */
        a.rate = a.idle_only ? MIN(p->idle_reclaim_rate, p->max_rate) : p->max_rate;
        if (vm->carry.last_inflate_usec != 0 || a.idle_only) {
                a.since = vm->carry.last_inflate_usec != 0 ? sub_sat(now, vm->carry.last_inflate_usec) : USEC_PER_SEC;
                a.cap_rate = u128_sat((unsigned __int128) a.rate * a.since / USEC_PER_SEC);
        }
        /* The guest keeps its headroom, grown with its demand, and what it freed within
         * IdleWindowSec= is not there to take: it was in use a moment ago. */
        seen = *vm;
        seen.guest_reserve = vm_headroom(vm);
        seen.guest_available = sub_sat(vm->guest_available, vm->guest_free_recent);
        a.red = policy_cap_inflate(&seen, a.want, MIN(p->max_step, a.cap_rate), &a.cap);

        t = policy_inflate_target(vm, a.red);
        if (t >= vm->actual && a.idle_only) {
                if (c->explain) {
                        inflate_reason(c, vm, &a, d);
                        reason_add(d->reason, "; nothing left under the caps");
                }
                return;
        }
        if (t >= vm->actual) {
                d->action = POLICY_HOLD;
                inflate_reason(c, vm, &a, d);
                reason_add(d->reason, "; held: nothing left under the caps");
                return;
        }

        c->planned += vm->actual - MIN(t, vm->target);

        if (vm->target < vm->actual && vm->target <= t) {
                /* Do not stack: what is already asked covers this round. */
                if (c->explain) {
                        inflate_reason(c, vm, &a, d);
                        reason_add(d->reason, "; inflate to %s in flight", FB(vm->target));
                }
                return;
        }

        d->action = POLICY_INFLATE;
        d->target = t;
        d->carry.last_inflate_usec = now;
        inflate_reason(c, vm, &a, d);
}

static void decide_high(const DecideContext *c, const PolicyVM *vm, PolicyDecision *d) {
        uint64_t now = c->host->now_usec, overhead = c->p->memory_high_overhead;
        uint64_t floor = add_sat(MAX(MAX(vm_min(vm), vm->target), vm->actual), overhead), high, keep;
        bool hysteresis = now < vm->carry.hysteresis_until_usec;

        if (!vm->memory_high_known)
                return;

        if (vm->memory_high < floor) {
                /* The balloon deflated outside the daemon (the guest on OOM, another QMP client,
                 * virsh setmem): the host must not reclaim what the guest got back. */
                d->action = POLICY_SET_HIGH;
                d->memory_high = floor;
                d->raise_high_first = true;
                d->reason[0] = 0;
                reason_add(d->reason, "memory.high up to the balloon: %s -> %s (balloon %s, target %s + overhead %s)",
                           FB(vm->memory_high), FB(floor), FB(vm->actual), FB(vm->target), FB(overhead));
                return;
        }

        /* Lowered once the balloon is where it goes; in hysteresis (the guest just won memory back
         * and is exempt from reclaim) only down to MaxMemory=, which no guest pressure lifts. */
        high = add_sat(hysteresis ? MAX(vm->actual, vm->max) : vm->actual, overhead);
        /* While the host has headroom, not below what the VM holds (an own-throttled VM's raise):
         * lowered only once it holds a step less, so the raise and this do not alternate. */
        keep = c->host_pressure ? 0 : MIN(add_sat(vm_held(vm), SLICE_MIN_STEP), add_sat(vm->max, overhead));
        if (keep > high) {
                if (vm->target != vm->actual || vm->memory_high <= add_sat(keep, SLICE_MIN_STEP))
                        return;
                d->action = POLICY_SET_HIGH;
                d->memory_high = keep;
                d->reason[0] = 0;
                reason_add(d->reason, "memory.high down to what the VM holds: %s -> %s (holds %s + %s)",
                           FB(vm->memory_high), FB(keep), FB(vm_held(vm)), FB(SLICE_MIN_STEP));
                return;
        }
        if (vm->target != vm->actual || vm->memory_high <= add_sat(high, HIGH_SLACK))
                return;

        d->action = POLICY_SET_HIGH;
        d->memory_high = high;
        d->reason[0] = 0;
        if (hysteresis)
                reason_add(d->reason, "memory.high down to max %s + overhead %s in hysteresis: %s -> %s",
                           FB(vm->max), FB(overhead), FB(vm->memory_high), FB(high));
        else
                reason_add(d->reason, "memory.high follows the balloon: %s -> %s (balloon %s + overhead %s)",
                           FB(vm->memory_high), FB(high), FB(vm->actual), FB(overhead));
}

static void decide_vm(DecideContext *c, const PolicyVM *vm, PolicyDecision *d) {
        const PolicyParams *p = c->p;
        uint64_t now = c->host->now_usec;

        /* The guest driver's messages alone start a hysteresis but do not extend it: a guest
         * sending them without end would otherwise stay exempt from reclaim and MaxMemory=. */
        if (d->guest_pressure != 0 &&
            (d->guest_pressure != GUEST_PRESSURE_EVENT || now >= vm->carry.hysteresis_until_usec))
                d->carry.hysteresis_until_usec = add_sat(now, p->hysteresis_usec);

        /* A move completed: but not the stop a stall ordered itself (progress before the back-off
         * ended), or the back-off would never grow. */
        if (vm->actual == vm->target && vm->last_progress_usec >= vm->carry.backoff_until_usec)
                d->carry.stall_count = 0;

        if (vm_stalled(p, now, vm)) {
                unsigned shift = MIN(vm->carry.stall_count, BACKOFF_MAX_SHIFT);
                uint64_t backoff = p->stall_backoff_usec > (UINT64_MAX >> shift) ?
                        UINT64_MAX : p->stall_backoff_usec << shift;

                d->action = POLICY_STALL;
                d->target = vm->actual;
                d->carry.stall_count = vm->carry.stall_count + 1;
                d->carry.backoff_until_usec = add_sat(now, backoff);
                reason_add(d->reason, "balloon stalled: no progress towards %s for %s (at %s); back-off %s (stall %u)",
                           FB(vm->target), FU(now - vm->last_progress_usec), FB(vm->actual), FU(backoff),
                           d->carry.stall_count);
                return;
        }

        /* Below its floor the guest gets back up to it whatever the signal (decide_guest_pressure). */
        if ((d->guest_pressure & GUEST_PRESSURE_EVENT) && vm->actual >= vm_min(vm))
                decide_guest_event(c, vm, d);
        else if (d->guest_pressure != 0)
                decide_guest_pressure(c, vm, d);
        else {
                decide_inflate(c, vm, d);
                if (d->action == POLICY_NONE && c->goal == 0)
                        decide_refill(c, vm, d);
        }

        if (d->action == POLICY_NONE)
                decide_high(c, vm, d);
}

static void summarize(const DecideContext *c, size_t n, PolicySummary *ret) {
        ret->host_pressure = c->host_pressure;
        ret->goal = c->goal;
        ret->planned = c->planned;
        if (c->host_pressure)
                ret->last_pressure_usec = c->host->now_usec;

        for (size_t i = 0; i < n && c->goal > 0; i++)
                if (c->out[i].action == POLICY_INFLATE) {
                        ret->last_reclaim_usec = c->host->now_usec;
                        break;
                }

        if (policy_reason_add_host(ret->reason, c->p, c->host)) {
                reason_add(ret->reason, ": goal %s, planned %s", FB(c->goal), FB(c->planned));
                if (c->settling)
                        reason_add(ret->reason, ", settling: last reclaim %s ago",
                                   FU(c->host->now_usec - c->host->last_reclaim_usec));
        } else if (c->calm)
                reason_add(ret->reason, ", give-back: spare %s", FB(c->spare));
        policy_reason_add_counts(ret->reason, c->out, n, c->host_pressure ? "; " : ": ");
}

int policy_decide_autoballoon(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n,
                              bool explain, PolicyDecision *out, PolicySummary *summary) {
        uint64_t now = host->now_usec;
        DecideContext c = {
                .p = p,
                .host = host,
                .vms = vms,
                .out = out,
                .explain = explain,
        };

        (void) snprintf(c.tax_rate, sizeof c.tax_rate, "%.2f", p->tax_rate);

        /* What the balloons already in flight will return counts against the missing reserve: only
         * those still moving, and no more than a step each, so a balloon that crawls cannot hold
         * back reclaim from every other VM. */
        uint64_t inflight = 0;
        for (size_t i = 0; i < n; i++)
                if (vms[i].target < vms[i].actual && !vm_stalled(p, now, &vms[i]))
                        inflight = add_sat(inflight, MIN(vms[i].actual - vms[i].target, p->max_step));
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
                int r = decide_shares(&c, n);
                if (r < 0)
                        return r;
        }

        /* Give-back once the host has had room for a while: above the dead band, and no pressure for
         * refill_settle_usec (0 is "never", at the start the host is judged by its available memory). */
        c.spare = sub_sat(host->available, add_sat(p->host_reserve, p->refill_margin));
        c.calm = p->refill_rate > 0 && !c.host_pressure &&
                host->available >= add_sat(p->host_reserve, p->refill_margin) &&
                (host->last_pressure_usec == 0 || now >= add_sat(host->last_pressure_usec, p->refill_settle_usec));
        if (c.calm || (explain && p->refill_rate > 0)) {
                int r = decide_entitlements(&c, n);
                if (r < 0)
                        return r;
        }

        for (size_t i = 0; i < n; i++)
                decide_vm(&c, &vms[i], &out[i]);

        summarize(&c, n, summary);
        return 0;
}
