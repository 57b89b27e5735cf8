/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Policy=rfc: the algorithm of the 2013 "automatic ballooning" RFC for QEMU, as it was. On every host
 * pressure event each guest not under pressure is asked for 32 MiB more, stacked on the target in
 * flight (ten events in a row ask for 320 MiB).
 *
 * The RFC's events were vmpressure's "low" events on the root memcg, which the kernel raises per
 * window of 512 pages scanned by reclaim (mm/vmpressure.c; its work item may fold several windows
 * into one event, so this count is an upper bound). They are emulated from the host's scan counter:
 * one event per 512 pages of PolicyHost.scanned, the rest carried to the next decision in
 * PolicySummary.scan_left; a host trigger with no whole window scanned counts as one event (traces
 * recorded without the counter decide as before). Guest pressure cancels an inflation in flight
 * (target = actual) or else gives 32 MiB back, and starts 60 s during which the guest is not
 * inflated. No fairness, no idle tax, no memory.high, no stall detection, no host reserve: only the
 * trigger counts as host pressure.
 *
 * What the RFC did not have and every mode of the daemon keeps: targets never below MinMemory= nor
 * above MaxMemory=, and an inflation never takes more than the guest's available memory minus
 * GuestReserve= (the RFC inflated until the guest OOM-killed or said it was under pressure).
 */

#include "policy-internal.h"

#define RFC_STEP (32 * MIB)
#define RFC_VMPRESSURE_WIN 512 /* pages: vmpressure_win, SWAP_CLUSTER_MAX * 16 */
#define RFC_HYSTERESIS_USEC (60 * USEC_PER_SEC)

static void rfc_guest_pressure(uint64_t now, const PolicyVM *vm, bool explain, PolicyDecision *d) {
        uint64_t t;

        d->carry.hysteresis_until_usec = add_sat(now, RFC_HYSTERESIS_USEC);

        t = page_down(MIN(add_sat(vm->target, RFC_STEP), vm->max));
        /* At max: a "none" without a reason but when explaining. */
        if (!explain && vm->target >= vm->actual && t <= vm->target)
                return;

        policy_reason_add_signals(d->reason, vm, d->guest_pressure);
        /* The guest writes actual: its message cancels at most the RFC's step above our target. */
        if (policy_cancel_inflate(vm, d->guest_pressure & GUEST_PRESSURE_EVENT ?
                                  page_down(policy_event_cancel_bound(vm, RFC_STEP)) : UINT64_MAX, d))
                goto finish;

        if (t <= vm->target) {
                reason_add(d->reason, ": at max %s", FB(vm->max));
                goto finish;
        }
        d->action = POLICY_DEFLATE;
        d->target = t;
        reason_add(d->reason, ": deflate %s", FB(t - vm->target));

finish:
        reason_add(d->reason, ", hysteresis %s", FU(RFC_HYSTERESIS_USEC));
}

static uint64_t rfc_step(uint64_t events) {
        return events > UINT64_MAX / RFC_STEP ? UINT64_MAX : events * RFC_STEP;
}

static void rfc_inflate(uint64_t now, uint64_t events, const PolicyVM *vm, PolicyDecision *d) {
        uint64_t step = rfc_step(events);
        InflateCap cap = CAP_NONE;
        uint64_t t;

        if (events == 1)
                reason_add(d->reason, "host pressure event: inflate %s", FB(step));
        else
                reason_add(d->reason, "%lu host pressure events: inflate %s", (unsigned long) events, FB(step));

        /* The RFC's "guest in pressure": the event is skipped. */
        if (now < vm->carry.hysteresis_until_usec) {
                d->action = POLICY_HOLD;
                reason_add(d->reason, "; held: ");
                policy_reason_add_block(d->reason, now, vm, BLOCK_HYSTERESIS);
                return;
        }

        t = sub_sat(vm->target, step);
        if (t < vm->actual)
                t = policy_inflate_target(vm, policy_cap_inflate(vm, vm->actual - t, UINT64_MAX, &cap));
        /* Not even a deflation in flight is cut below the floor. */
        t = MAX(t, MIN(page_up(vm_min(vm)), vm->target));
        policy_reason_add_cap(d->reason, vm, cap);

        if (t >= vm->target) {
                d->action = POLICY_HOLD;
                reason_add(d->reason, "; held: %s", cap == CAP_NONE ? "at floor" : "nothing left under the caps");
                return;
        }
        d->action = POLICY_INFLATE;
        d->target = t;
        d->carry.last_inflate_usec = now;
}

int policy_decide_rfc(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n,
                      bool explain, PolicyDecision *out, PolicySummary *summary) {
        uint64_t now = host->now_usec, events = host->scanned / RFC_VMPRESSURE_WIN;

        summary->scan_left = host->scanned % RFC_VMPRESSURE_WIN;
        if (events == 0 && host->pressure)
                events = 1;

        for (size_t i = 0; i < n; i++) {
                if (out[i].guest_pressure != 0)
                        rfc_guest_pressure(now, &vms[i], explain, &out[i]);
                else if (events > 0)
                        rfc_inflate(now, events, &vms[i], &out[i]);

                if (out[i].action == POLICY_INFLATE) {
                        summary->planned += vms[i].target - out[i].target;
                        summary->last_reclaim_usec = now;
                }
        }

        summary->host_pressure = events > 0;
        if (events > 0) {
                uint64_t step = rfc_step(events);

                summary->goal = n > 0 && step > UINT64_MAX / n ? UINT64_MAX : step * n;
                if (host->scanned >= RFC_VMPRESSURE_WIN)
                        reason_add(summary->reason, "rfc: host pressure events: %lu (%lu pages scanned): ",
                                   (unsigned long) events, (unsigned long) host->scanned);
                else
                        reason_add(summary->reason, "rfc: host pressure event: ");
                reason_add(summary->reason, "%s from each guest, planned %s", FB(step), FB(summary->planned));
        } else
                reason_add(summary->reason, "rfc: no host pressure event");
        policy_reason_add_counts(summary->reason, out, n, events > 0 ? "; " : ": ");
        return 0;
}
