/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the policy modes (policy-autoballoon.c, policy-rfc.c, policy-proxmox.c, and "none" in policy.c)
 * share: saturating arithmetic, balloon pages, reasons, guest pressure, the safety caps (policy.c) and
 * water-filling (policy-fill.c). Not for the rest of the daemon, which sees policy.h only. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "policy.h"
#include "util.h"

static inline uint64_t add_sat(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static inline uint64_t sub_sat(uint64_t a, uint64_t b) {
        return a > b ? a - b : 0;
}

static inline uint64_t page_down(uint64_t x) {
        return x & ~(POLICY_PAGE_SIZE - 1);
}

static inline uint64_t page_up(uint64_t x) {
        return x > UINT64_MAX - (POLICY_PAGE_SIZE - 1) ? page_down(x) : page_down(x + POLICY_PAGE_SIZE - 1);
}

static inline uint64_t vm_min(const PolicyVM *vm) {
        return MIN(vm->min, vm->max);
}

/* Sizes as the rest of the daemon prints them ("1.5G", "320M"), in a buffer of the caller's frame. */
#define FB(b) format_bytes((char[FORMAT_BYTES_MAX]) { 0 }, FORMAT_BYTES_MAX, (b))

/* "60s", "2.5s". */
#define FMT_USEC_MAX 48
#define FU(u) policy_fmt_usec((char[FMT_USEC_MAX]) { 0 }, (u))
char *policy_fmt_usec(char *buf, uint64_t usec);

/* Appends to a reason of POLICY_REASON_MAX bytes, truncating. */
_printf_(2, 3) void reason_add(char *reason, const char *format, ...);

/* The guest pressure signals in the VM's snapshot, and their description ("guest pressure (...)"). */
GuestPressure policy_guest_pressure(const PolicyParams *p, const PolicyVM *vm);
void policy_reason_add_signals(char *reason, const PolicyVM *vm, GuestPressure gp);

/* The decision that changes nothing: the VM's target and memory.high, its carried state, and the
 * guest pressure signals seen. */
void policy_decision_init(PolicyDecision *d, const PolicyParams *p, const PolicyVM *vm);
/* A summary that carries the host state through unchanged. */
void policy_summary_init(PolicySummary *s, const PolicyHost *host);
/* Appends "N inflate, M held" for the decisions, or "nothing to do", after 'sep'. */
void policy_reason_add_counts(char *reason, const PolicyDecision *out, size_t n, const char *sep);
/* Appends "host pressure (trigger, available 100M < reserve 256M)", or "no host pressure"; returns
 * whether there is. */
bool policy_reason_add_host(char *reason, const PolicyParams *p, const PolicyHost *host);

/* Guest pressure while an inflation is in flight: stop it where the balloon is (target = actual), or
 * at 'bound' if lower. Returns false, changing nothing, when no inflation is in flight. */
bool policy_cancel_inflate(const PolicyVM *vm, uint64_t bound, PolicyDecision *d);
/* The highest target a guest pressure message may cancel an inflation up to: the guest writes
 * 'actual', so a message moves the target at most 'step' above what the daemon itself asked. */
static inline uint64_t policy_event_cancel_bound(const PolicyVM *vm, uint64_t step) {
        return add_sat(vm->target, step);
}

/* Why a VM may not be inflated now. */
typedef enum InflateBlock {
        BLOCK_NONE,
        BLOCK_FLOOR,
        BLOCK_NO_STATS,
        BLOCK_HYSTERESIS,
        BLOCK_BACKOFF,
} InflateBlock;
void policy_reason_add_block(char *reason, uint64_t now, const PolicyVM *vm, InflateBlock b);

/* The safety caps every mode keeps on an inflation, measured from the balloon's actual size: never
 * below the VM's floor, never more than the guest's available memory minus its reserve (a balloon
 * pushed past the guest's free memory makes it OOM-kill its next allocation; no stats, no inflation).
 * 'mode_cap' is the mode's own cap on top (step, rate), UINT64_MAX for none. */
typedef enum InflateCap {
        CAP_NONE,      /* 'want' fits */
        CAP_AVAILABLE,
        CAP_FLOOR,
        CAP_MODE,
} InflateCap;
uint64_t policy_cap_inflate(const PolicyVM *vm, uint64_t want, uint64_t mode_cap, InflateCap *ret_cap);
/* "; capped by ..." for CAP_AVAILABLE and CAP_FLOOR (CAP_MODE is the mode's to name). */
void policy_reason_add_cap(char *reason, const PolicyVM *vm, InflateCap cap);

/* The target that takes 'red' bytes from the balloon's actual size: whole pages (the balloon rounds,
 * and a target it cannot reach exactly would look stalled), never below the floor when the caps
 * above were applied. */
static inline uint64_t policy_inflate_target(const PolicyVM *vm, uint64_t red) {
        return page_up(vm->actual - page_down(MIN(red, vm->actual)));
}

/* Water-filling over a compact array of the items taking part (policy-fill.c says how): see
 * policy_water_fill() in policy.h for what it computes. Writes each item's alloc, normalizing its
 * weight, ceil and idle as policy_water_fill() says, and the level in *ret_level if not NULL; 'vm' is
 * the caller's. Expected O(n); 0 or -ENOMEM. */
typedef struct FillItem {
        uint64_t weight, floor, ceil, idle;
        size_t vm;
        uint64_t alloc;
} FillItem;

int policy_fill(unsigned __int128 budget, FillItem *items, size_t n, double tax_rate, double *ret_level);

/* The modes; 'summary' is never NULL, 'out' holds policy_decision_init(). 'explain': reasons for the
 * "none" decisions too. 0 or -ENOMEM. */
int policy_decide_autoballoon(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n,
                              bool explain, PolicyDecision *out, PolicySummary *summary);
int policy_decide_none(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n,
                       bool explain, PolicyDecision *out, PolicySummary *summary);
int policy_decide_rfc(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n,
                      bool explain, PolicyDecision *out, PolicySummary *summary);
int policy_decide_proxmox(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n,
                          bool explain, PolicyDecision *out, PolicySummary *summary);
