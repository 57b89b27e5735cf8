/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Policy=proxmox: Proxmox VE's auto-ballooning (pvestatd's auto_balloning, PVE::AutoBalloon's
 * compute_alg1), written from its description. Every 10 s: goal = 80% of host memory - host used
 * (total - available). Within 10 MiB of that nothing happens. A positive goal grows guests (deflates
 * balloons), first among the VMs short of free memory (free at most a quarter of their floor, or
 * below it); a negative goal shrinks them (inflates), first among the VMs with more free memory; when
 * those move nothing, all VMs take part. The VMs taking part share what they have plus the goal by
 * shares (Weight=) within [MinMemory=, MaxMemory=], and each moves towards its share by at most
 * 100 MiB a cycle; on a grow request a VM above its share still shrinks towards it, on a shrink
 * request none grows. The daemon decides every StatsIntervalSec= and on every trigger: the time of
 * the last cycle is carried in PolicyHost/PolicySummary.last_cycle_usec.
 *
 * Where it differs from Proxmox's code:
 *  - compute_alg1 iterates passes, each computing one level from all the VMs of the pass, and stops
 *    when a pass changes nothing; a VM clamped at its min or max keeps its proportional share in that
 *    level, so part of the goal can stay unspent. Here the level is found by the default policy's
 *    water-filling (policy-fill.c): what a clamped VM cannot take goes to the others.
 *  - When the preferred VMs move nothing, Proxmox's second pass starts from the first pass's
 *    results; here it starts over.
 *  - The safety caps of every mode: no inflation past the guest's available memory minus
 *    GuestReserve= (none without guest stats); Proxmox lets the guest swap and OOM-kill. Targets are
 *    whole pages.
 *  - The 80% target, the 10 MiB dead band and the 100 MiB step are Proxmox's defaults, fixed here.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "policy-internal.h"

#define PVE_CYCLE_USEC (10 * USEC_PER_SEC)
#define PVE_TARGET_PERCENT 80
#define PVE_DEADBAND (10 * MIB)
#define PVE_MAX_CHANGE (100 * MIB)

typedef struct ProxmoxContext {
        const PolicyVM *vms;
        PolicyDecision *out;
        bool grow;  /* the goal is positive: guests get memory */
        bool all;   /* every VM takes part, not only the preferred ones */
} ProxmoxContext;

static bool pve_short_of_memory(const PolicyVM *vm) {
        return !(vm->has_stats && vm->guest_free > vm_min(vm) / 4 && vm->actual >= vm_min(vm));
}

static bool pve_takes_part(const ProxmoxContext *c, size_t i) {
        return c->all || pve_short_of_memory(&c->vms[i]) == c->grow;
}


/* Where the VM goes this cycle, from its share: at most 100 MiB away from its actual size. */
static uint64_t pve_move(const ProxmoxContext *c, size_t i, InflateCap *ret_cap) {
        const PolicyVM *vm = &c->vms[i];
        uint64_t share = c->out[i].share;

        *ret_cap = CAP_NONE;
        if (share > vm->actual && c->grow) {
                if (share - vm->actual > PVE_MAX_CHANGE)
                        *ret_cap = CAP_MODE;
                return MAX(page_down(MIN(share, add_sat(vm->actual, PVE_MAX_CHANGE))), vm->actual);
        }
        if (share < vm->actual)
                return policy_inflate_target(vm, policy_cap_inflate(vm, vm->actual - share, PVE_MAX_CHANGE, ret_cap));
        return vm->actual;
}

/* The VMs taking part share what they have plus the goal ('items' has room for n); the net change it
 * leads to in *ret_net. 0 or -ENOMEM. */
static int pve_pass(ProxmoxContext *c, size_t n, __int128 goal, FillItem *items, __int128 *ret_net) {
        __int128 total = 0, net = 0;
        InflateCap cap;
        size_t m = 0;
        int r;

        for (size_t i = 0; i < n; i++) {
                const PolicyVM *vm = &c->vms[i];

                if (!pve_takes_part(c, i))
                        continue;
                items[m++] = (FillItem) {
                        .weight = vm->weight,
                        .floor = vm_min(vm),
                        .ceil = vm->max,
                        .vm = i,
                };
                total += vm->actual;
        }
        r = policy_fill((unsigned __int128) MAX(total + goal, 0), items, m, 0, NULL);
        if (r < 0)
                return r;

        for (size_t k = 0; k < m; k++) {
                size_t i = items[k].vm;

                c->out[i].share = items[k].alloc;
                net += (__int128) pve_move(c, i, &cap) - c->vms[i].actual;
        }
        *ret_net = net;
        return 0;
}

static void pve_decide_vm(const ProxmoxContext *c, size_t i, uint64_t now, const char *why, bool explain,
                          PolicyDecision *d) {
        const PolicyVM *vm = &c->vms[i];
        InflateCap cap;
        uint64_t t = pve_move(c, i, &cap);

        /* Nothing to do, or in flight: a "none" without a reason but when explaining. */
        if (t == vm->actual || (t == vm->target && !explain))
                return;

        reason_add(d->reason, "%s; share %s by weight %" PRIu64 " among %s", why, FB(d->share), vm->weight ?: 1,
                   c->all ? "all VMs" : c->grow ? "the VMs short of memory" : "the VMs with free memory");
        if (cap == CAP_MODE)
                reason_add(d->reason, "; capped by max change %s per %s cycle", FB(PVE_MAX_CHANGE),
                           FU(PVE_CYCLE_USEC));
        else
                policy_reason_add_cap(d->reason, vm, cap);

        if (t == vm->target) {
                reason_add(d->reason, "; %s to %s in flight", t < vm->actual ? "inflate" : "deflate", FB(t));
                return;
        }
        d->action = t < vm->actual ? POLICY_INFLATE : POLICY_DEFLATE;
        d->target = t;
        if (t < vm->actual)
                d->carry.last_inflate_usec = now;
}

int policy_decide_proxmox(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n,
                          bool explain, PolicyDecision *out, PolicySummary *summary) {
        uint64_t now = host->now_usec, used = sub_sat(host->total, host->available);
        char why[POLICY_REASON_MAX] = "";

        if (host->last_cycle_usec != 0 && now < add_sat(host->last_cycle_usec, PVE_CYCLE_USEC)) {
                reason_add(summary->reason, "proxmox: next cycle in %s",
                           FU(host->last_cycle_usec + PVE_CYCLE_USEC - now));
                return 0;
        }
        summary->last_cycle_usec = now;

        __int128 goal = (__int128) host->total * PVE_TARGET_PERCENT / 100 - used;
        reason_add(why, "proxmox: host used %s of %s (%.0f%%), target %d%%", FB(used), FB(host->total),
                   host->total > 0 ? 100.0 * (double) used / (double) host->total : 0.0, PVE_TARGET_PERCENT);

        if (goal >= -(__int128) PVE_DEADBAND && goal <= (__int128) PVE_DEADBAND) {
                reason_add(summary->reason, "%s: within %s, nothing to do", why, FB(PVE_DEADBAND));
                return 0;
        }

        ProxmoxContext c = {
                .vms = vms,
                .out = out,
                .grow = goal > 0,
        };
        uint64_t magnitude = (uint64_t) (goal > 0 ? goal : -goal);
        reason_add(why, ": %s %s", c.grow ? "grow by" : "shrink by", FB(magnitude));

        _cleanup_free_ FillItem *items = reallocarray(NULL, MAX(n, 1u), sizeof(FillItem));
        __int128 net;
        int r;

        if (!items)
                return -ENOMEM;
        r = pve_pass(&c, n, goal, items, &net);
        if (r >= 0 && (c.grow ? net <= 0 : net >= 0)) {
                c.all = true;
                r = pve_pass(&c, n, goal, items, &net);
        }
        if (r < 0)
                return r;

        for (size_t i = 0; i < n; i++)
                if (pve_takes_part(&c, i)) {
                        pve_decide_vm(&c, i, now, why, explain, &out[i]);
                        if (out[i].action == POLICY_INFLATE)
                                summary->planned += vms[i].actual - out[i].target;
                }

        summary->host_pressure = !c.grow;
        summary->goal = c.grow ? 0 : magnitude;
        reason_add(summary->reason, "%s, planned %s", why, FB(summary->planned));
        policy_reason_add_counts(summary->reason, out, n, "; ");
        return 0;
}
