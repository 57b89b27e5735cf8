/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "policy-internal.h"

/* The names of actions and modes, the helpers every mode shares (policy-internal.h), the mode "none"
 * and the dispatch. The other modes: policy-autoballoon.c, policy-rfc.c, policy-proxmox.c. */

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

static const char *const guest_pressure_level_table[_GUEST_PRESSURE_LEVEL_MAX] = {
        [GUEST_PRESSURE_LEVEL_LOW] = "low",
        [GUEST_PRESSURE_LEVEL_MEDIUM] = "medium",
        [GUEST_PRESSURE_LEVEL_CRITICAL] = "critical",
};

const char *guest_pressure_level_to_string(int level) {
        if ((unsigned) level >= _GUEST_PRESSURE_LEVEL_MAX)
                return NULL;
        return guest_pressure_level_table[level];
}

int guest_pressure_level_from_string(const char *name) {
        for (int l = 0; l < _GUEST_PRESSURE_LEVEL_MAX; l++)
                if (streq_ptr(name, guest_pressure_level_table[l]))
                        return l;
        return -1;
}

static char *reason_put(char *p, char *end, const char *s, size_t l) {
        l = MIN(l, (size_t) (end - p));
        memcpy(p, s, l);
        return p + l;
}

static char *reason_put_u(char *p, char *end, unsigned long long u) {
        char digits[20];
        size_t k = sizeof digits;

        do {
                digits[--k] = (char) ('0' + u % 10);
                u /= 10;
        } while (u > 0);
        return reason_put(p, end, digits + k, sizeof digits - k);
}

char *policy_fmt_usec(char *buf, uint64_t usec) {
        uint64_t tenths = usec % USEC_PER_SEC / (USEC_PER_SEC / 10);
        char *end = buf + FMT_USEC_MAX - 1, *p;

        /* By hand, as the reasons are (reason_format()). */
        p = reason_put_u(buf, end, usec / USEC_PER_SEC);
        if (tenths > 0 && p + 2 <= end) {
                *p++ = '.';
                *p++ = (char) ('0' + tenths);
        }
        if (p < end)
                *p++ = 's';
        *p = 0;
        return buf;
}

/* vsnprintf() for the conversions %s, %d, %u, %zu, %lu, %llu and %%, at a fraction of its cost: a
 * decision on a large host formats thousands of reasons. Writes at most end - p bytes, then the NUL.
 * false at any other conversion, the arguments consumed up to it. */
static bool reason_format(char *p, char *end, const char *format, va_list ap) {
        for (const char *f = format; *f && p < end; f++) {
                const char *pc = strchrnul(f, '%');

                p = reason_put(p, end, f, (size_t) (pc - f));
                f = pc;
                if (*f == 0)
                        break;
                f++;
                if (*f == '%')
                        p = reason_put(p, end, "%", 1);
                else if (*f == 's') {
                        const char *a = va_arg(ap, const char *) ?: "(null)";
                        p = reason_put(p, end, a, strlen(a));
                } else if (*f == 'd') {
                        int d = va_arg(ap, int);
                        if (d < 0)
                                p = reason_put(p, end, "-", 1);
                        p = reason_put_u(p, end, d < 0 ? -(unsigned long long) d : (unsigned long long) d);
                } else if (*f == 'u')
                        p = reason_put_u(p, end, va_arg(ap, unsigned));
                else if (f[0] == 'z' && f[1] == 'u') {
                        f++;
                        p = reason_put_u(p, end, va_arg(ap, size_t));
                } else if (f[0] == 'l' && f[1] == 'l' && f[2] == 'u') {
                        f += 2;
                        p = reason_put_u(p, end, va_arg(ap, unsigned long long));
                } else if (f[0] == 'l' && f[1] == 'u') {
                        f++;
                        p = reason_put_u(p, end, va_arg(ap, unsigned long));
                } else
                        return false;
        }
        *p = 0;
        return true;
}

void reason_add(char *reason, const char *format, ...) {
        size_t l = strnlen(reason, POLICY_REASON_MAX);
        va_list ap, aq;

        if (l + 1 >= POLICY_REASON_MAX)
                return;
        va_start(ap, format);
        va_copy(aq, ap);
        if (!reason_format(reason + l, reason + POLICY_REASON_MAX - 1, format, ap))
                (void) vsnprintf(reason + l, POLICY_REASON_MAX - l, format, aq);
        va_end(aq);
        va_end(ap);
}

/* ---- shared by the modes ---- */

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

static void reason_add_event(char *reason, const PolicyVM *vm) {
        reason_add(reason, "guest driver event %s", guest_pressure_level_to_string(vm->pressure_event_level) ?: "unknown");
        if (vm->pressure_event_count > 1)
                reason_add(reason, " (%" PRIu64 " messages)", vm->pressure_event_count);
        if (vm->pressure_event_size > 0)
                reason_add(reason, " lacking %s", FB(vm->pressure_event_size));
}

void policy_reason_add_signals(char *reason, const PolicyVM *vm, GuestPressure gp) {
        const char *sep = "";

        /* The driver's message alone: its own words ("guest driver event critical"), which the
         * journal, the benchmarks and the end-to-end tests look for. */
        if (gp == GUEST_PRESSURE_EVENT) {
                reason_add_event(reason, vm);
                return;
        }
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
        if (gp & GUEST_PRESSURE_EVENT) {
                reason_add(reason, "%s", sep);
                reason_add_event(reason, vm);
        }
        reason_add(reason, ")");
}

bool policy_cancel_inflate(const PolicyVM *vm, uint64_t bound, PolicyDecision *d) {
        /* Stopped where it is, but never above MaxMemory=: an inflation down to it goes on, as no
         * guest pressure lifts the ceiling. */
        uint64_t t = MIN(MIN(vm->actual, vm->max), bound);

        if (vm->target >= t)
                return false;
        d->action = POLICY_CANCEL;
        d->target = t;
        reason_add(d->reason, ": cancel inflate to %s at %s", FB(vm->target), FB(vm->actual));
        if (t < MIN(vm->actual, vm->max))
                reason_add(d->reason, ", up to %s", FB(t));
        return true;
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
                           FU(vm->carry.hysteresis_until_usec - now));
                break;
        case BLOCK_BACKOFF:
                reason_add(reason, "balloon backed off after %u stall%s, %s left", vm->carry.stall_count,
                           vm->carry.stall_count == 1 ? "" : "s", FU(vm->carry.backoff_until_usec - now));
                break;
        case BLOCK_NONE:
                break;
        }
}

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
        /* The reason's first byte only: at 10,000 VMs, zeroing every buffer is a tenth of a decision. */
        memset(d, 0, offsetof(PolicyDecision, reason));
        d->action = POLICY_NONE;
        d->target = vm->target;
        d->memory_high = vm->memory_high;
        d->guest_pressure = policy_guest_pressure(p, vm);
        d->carry = vm->carry;
        d->reason[0] = 0;
}

void policy_summary_init(PolicySummary *s, const PolicyHost *host) {
        *s = (PolicySummary) {
                .last_reclaim_usec = host->last_reclaim_usec,
                .last_cycle_usec = host->last_cycle_usec,
                .last_pressure_usec = host->last_pressure_usec,
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

bool policy_reason_add_host(char *reason, const PolicyParams *p, const PolicyHost *host) {
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

/* ---- none ---- */

int policy_decide_none(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n,
                       bool explain, PolicyDecision *out, PolicySummary *summary) {
        /* Explains what it ignores, so a comparison run shows what the others would have acted on. */
        for (size_t i = 0; i < n && explain; i++) {
                reason_add(out[i].reason, "policy none: no ballooning");
                if (out[i].guest_pressure != 0) {
                        reason_add(out[i].reason, "; ignored: ");
                        policy_reason_add_signals(out[i].reason, &vms[i], out[i].guest_pressure);
                }
        }

        reason_add(summary->reason, "policy none: no ballooning; ");
        summary->host_pressure = policy_reason_add_host(summary->reason, p, host);
        if (summary->host_pressure)
                reason_add(summary->reason, " ignored");
        return 0;
}

/* ---- dispatch ---- */

static bool params_valid(const PolicyParams *p) {
        return (unsigned) p->mode < _POLICY_MODE_MAX &&
                p->tax_rate >= 0 && p->tax_rate < 1 && /* false for NaN too */
                p->reclaim_step > 0 && p->max_step > 0 && p->max_rate > 0 && p->deflate_step > 0 &&
                p->stall_usec > 0;
}

static int decide(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n, bool explain,
                  PolicyDecision *out, PolicySummary *summary) {
        static int (*const modes[_POLICY_MODE_MAX])(const PolicyParams *, const PolicyHost *, const PolicyVM *,
                                                    size_t, bool, PolicyDecision *, PolicySummary *) = {
                [POLICY_MODE_AUTOBALLOON] = policy_decide_autoballoon,
                [POLICY_MODE_NONE] = policy_decide_none,
                [POLICY_MODE_RFC] = policy_decide_rfc,
                [POLICY_MODE_PROXMOX] = policy_decide_proxmox,
        };
        PolicySummary s;
        int r;

        if (!p || !host || (n > 0 && (!vms || !out)) || !params_valid(p))
                return -EINVAL;

        for (size_t i = 0; i < n; i++)
                policy_decision_init(&out[i], p, &vms[i]);
        policy_summary_init(&s, host);

        r = modes[p->mode](p, host, vms, n, explain, out, &s);
        if (r < 0)
                return r;

        if (summary)
                *summary = s;
        return 0;
}

int policy_decide(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n,
                  PolicyDecision *out, PolicySummary *summary) {
        return decide(p, host, vms, n, false, out, summary);
}

int policy_explain(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n,
                   PolicyDecision *out, PolicySummary *summary) {
        return decide(p, host, vms, n, true, out, summary);
}
