/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The policy: pure C. A snapshot of the host and the VMs goes in, one decision per VM comes out with
 * a human-readable reason. No I/O, no clock (the time is part of the snapshot); the only allocation
 * is the water-filling's scratch array, freed before it returns.
 * State that must survive between decisions (hysteresis, stall back-off, rate cap) is carried by the
 * caller: it is read from PolicyVM.carry and the new values are returned in PolicyDecision.carry.
 * trace.c writes and reads every field of PolicyParams, PolicyHost and PolicyVM: a new one goes
 * into its tables too. */

/* Which algorithm decides (Policy= in autoballoon.conf). All take the same snapshot and give the same
 * kind of decisions, so they can be compared on one host or on a recorded trace. rfc and proxmox use
 * their originals' fixed steps and periods rather than the params below, apart from the safety caps
 * every mode keeps (floor, ceiling, guest available minus reserve). */
typedef enum PolicyMode {
        POLICY_MODE_AUTOBALLOON, /* pressure-driven water-filling, idle tax, memory.high (the default) */
        POLICY_MODE_NONE,        /* no ballooning: decides nothing, says why */
        POLICY_MODE_RFC,         /* the 2013 automatic ballooning RFC: 32 MiB per event, 60 s hysteresis */
        POLICY_MODE_PROXMOX,     /* Proxmox VE's auto-ballooning: host used at 80%, 100 MiB per VM per 10 s */
        _POLICY_MODE_MAX,
} PolicyMode;

const char *policy_mode_to_string(PolicyMode m);
/* -EINVAL for an unknown name. */
int policy_mode_from_string(const char *s, PolicyMode *ret);

typedef struct PolicyParams {
        PolicyMode mode;
        uint64_t host_reserve;        /* host pressure when host available memory is below this */
        uint64_t reclaim_step;        /* reclaim goal per host pressure event */
        uint64_t reclaim_settle_usec; /* a trigger this soon after a reclaim sets no new goal */
        double tax_rate;              /* idle memory tax, 0 <= t < 1 */
        uint64_t hysteresis_usec;     /* after guest pressure: no inflation for this long */
        uint64_t max_step;            /* per VM and decision, inflate and deflate */
        uint64_t max_rate;            /* per VM, bytes per second of inflation */
        uint64_t deflate_step;        /* given back to a guest under pressure */
        uint64_t guest_swapin_rate;   /* bytes/s of guest swap-in counted as guest pressure */
        uint64_t guest_major_fault_rate; /* faults/s counted as guest pressure */
        uint64_t memory_high_overhead;/* memory.high = balloon size + this (QEMU's own memory) */
        uint64_t stall_usec;          /* a balloon not moving towards its target this long is stalled */
        uint64_t stall_backoff_usec;  /* first back-off after a stall; doubles per stall, up to 16x */
        /* Give-back (autoballoon mode): with available memory at least host_reserve + refill_margin
         * and no host pressure for refill_settle_usec, balloons deflate towards each VM's entitlement
         * at up to refill_rate bytes/s, but not within refill_delay_usec of the VM's last inflation.
         * Between host_reserve and that threshold is a dead band where nothing moves. 0: no give-back. */
        uint64_t refill_margin;
        uint64_t refill_settle_usec;
        uint64_t refill_delay_usec;
        uint64_t refill_rate;
        /* Idle reclaim (autoballoon mode): free guest memory not used within IdleWindowSec= beyond the
         * guest's headroom is inflated away at up to this many bytes/s, whatever the host's state;
         * give-back then gives a guest only what it lacks of its headroom in free memory. 0: off. */
        uint64_t idle_reclaim_rate;
} PolicyParams;

typedef struct PolicyHost {
        uint64_t now_usec;            /* monotonic time of the snapshot */
        uint64_t total;               /* host (or parent slice) memory */
        uint64_t available;           /* MemAvailable, or the parent slice's limit minus its usage */
        bool pressure;                /* the host trigger fired since the last decision */
        uint64_t last_reclaim_usec;   /* PolicySummary.last_reclaim_usec of the previous decision */
        uint64_t last_cycle_usec;     /* PolicySummary.last_cycle_usec of the previous decision */
        uint64_t last_pressure_usec;  /* PolicySummary.last_pressure_usec of the previous decision */
        uint64_t scanned;             /* pages the host's reclaim scanned since the previous decision
                                       * (its cgroup's memory.stat pgscan, or /proc/vmstat's), plus
                                       * PolicySummary.scan_left of that decision: rfc's event count */
} PolicyHost;

/* What a VM carries from one decision to the next: the policy reads it from PolicyVM.carry and
 * returns the new values in PolicyDecision.carry, which the caller keeps for the next snapshot.
 * 0 means "never". */
typedef struct PolicyCarry {
        uint64_t hysteresis_until_usec; /* no inflation before this: guest pressure was seen */
        uint64_t backoff_until_usec;    /* no inflation before this: the balloon stalled */
        uint64_t last_inflate_usec;     /* when the last inflation was ordered (rate cap) */
        unsigned stall_count;           /* stalls in a row: the back-off doubles with each */
        uint64_t last_refill_usec;      /* when the last give-back was ordered (its rate cap) */
} PolicyCarry;

static inline bool policy_carry_equal(const PolicyCarry *a, const PolicyCarry *b) {
        return a->hysteresis_until_usec == b->hysteresis_until_usec &&
                a->backoff_until_usec == b->backoff_until_usec && a->last_inflate_usec == b->last_inflate_usec &&
                a->stall_count == b->stall_count && a->last_refill_usec == b->last_refill_usec;
}

static inline bool policy_carry_is_empty(const PolicyCarry *c) {
        return policy_carry_equal(c, &(const PolicyCarry) {});
}

/* Why a guest is considered under pressure; several may hold at once. */
typedef enum GuestPressure {
        GUEST_PRESSURE_AVAILABLE     = 1 << 0, /* available memory below its floor */
        GUEST_PRESSURE_SWAP_IN       = 1 << 1,
        GUEST_PRESSURE_MAJOR_FAULTS  = 1 << 2,
        GUEST_PRESSURE_ALLOC_STALLS  = 1 << 3, /* Linux >= 6.12 */
        GUEST_PRESSURE_DIRECT_RECLAIM= 1 << 4, /* Linux >= 6.12 */
        GUEST_PRESSURE_OOM_KILL      = 1 << 5, /* Linux >= 6.12 */
        GUEST_PRESSURE_EVENT         = 1 << 6, /* the guest driver said so over the message queue */
} GuestPressure;

/* The levels of the guest pressure queue's messages (docs/guest-pressure.md), in
 * increasing urgency. */
typedef enum GuestPressureLevel {
        GUEST_PRESSURE_LEVEL_LOW,      /* tasks waited for reclaim, which succeeds */
        GUEST_PRESSURE_LEVEL_MEDIUM,   /* they keep waiting: reclaim is inefficient or stalls frequent */
        GUEST_PRESSURE_LEVEL_CRITICAL, /* allocations about to fail, or the OOM handling about to run */
        _GUEST_PRESSURE_LEVEL_MAX,
} GuestPressureLevel;

/* "low", "medium", "critical"; NULL for anything else (a trace may hold any int). */
const char *guest_pressure_level_to_string(int level);
/* The inverse; -1 for an unknown name. */
int guest_pressure_level_from_string(const char *name);

typedef struct PolicyVM {
        const char *name;
        uint64_t weight;              /* 1..10000 */
        uint64_t min, max;            /* floor and ceiling of the balloon size (guest memory), bytes */
        uint64_t actual;              /* current balloon size as QEMU reports it ("actual") */
        uint64_t target;              /* last target requested; == actual when nothing is in flight */
        bool memory_high_known;       /* the slice has a memory.high we manage */
        uint64_t memory_high;         /* SIZE_UNLIMITED for "max" */
        uint64_t memory_current;
        uint64_t slice_cache;         /* memory.stat file - shmem: host page cache charged to the slice,
                                       * which the host reclaims; not what the VM holds */

        bool has_stats;               /* guest stats are fresh; no stats, no inflation */
        uint64_t guest_available;     /* stat-available-memory */
        uint64_t guest_free;          /* stat-free-memory: idle memory, taxed */
        uint64_t guest_free_recent;   /* of guest_free, what the guest used within IdleWindowSec= (its
                                       * most use, balloon size minus free, over the window minus its
                                       * use now): not idle, not taxed */
        uint64_t guest_growth;        /* the largest growth of the guest's demand (balloon size minus
                                       * available) between two stats reports within IdleWindowSec=:
                                       * a squeezed guest keeps at least this much available */
        uint64_t guest_reserve;       /* resolved GuestReserve= for this VM */
        uint64_t guest_min_available; /* resolved GuestMinAvailable= for this VM */
        uint64_t swap_in_rate;        /* bytes/s over the last stats interval */
        uint64_t major_fault_rate;    /* faults/s over the last stats interval */
        uint64_t alloc_stalls, direct_reclaims, oom_kills; /* increase over the last stats interval */
        /* Guest pressure messages (the device forwards them and decides nothing), folded since the
         * last one acted on; the caller presents them at most once per GuestPressureIntervalSec=. */
        bool pressure_event;          /* messages to act on in this decision */
        int pressure_event_level;     /* GuestPressureLevel, the highest of them */
        uint64_t pressure_event_size; /* the largest "bytes lacking" hint, bounded by boot memory; 0: none */
        uint64_t pressure_event_count; /* how many were folded into this one */
        bool slice_pressure;          /* the slice's trigger fired since the last decision */

        PolicyCarry carry;            /* as returned in the previous PolicyDecision */
        /* The caller's observation, not carried by the policy: the last time actual moved towards
         * target or target changed (0: never). */
        uint64_t last_progress_usec;
} PolicyVM;

typedef enum PolicyAction {
        POLICY_NONE,       /* nothing to do */
        POLICY_INFLATE,    /* lower the balloon target (take memory from the guest) */
        POLICY_DEFLATE,    /* raise the balloon target (give memory back) */
        POLICY_CANCEL,     /* stop an inflation in flight: target = actual */
        POLICY_HOLD,       /* wanted to inflate but may not (hysteresis, floor, back-off, no stats) */
        POLICY_STALL,      /* balloon did not move: target = actual, backed off */
        POLICY_SET_HIGH,   /* only memory.high changes (follows a completed inflation) */
        _POLICY_ACTION_MAX,
} PolicyAction;

const char *policy_action_to_string(PolicyAction a);

/* Balloon targets the policy chooses are whole pages of this size (QEMU rounds the target to
 * pages, and a target the balloon cannot reach exactly would look stalled). */
#define POLICY_PAGE_SIZE UINT64_C(4096)

#define POLICY_REASON_MAX 256

typedef struct PolicyDecision {
        PolicyAction action;
        uint64_t target;              /* balloon target to request (== the VM's target when unchanged) */
        uint64_t memory_high;         /* memory.high to set (== the VM's memory_high when unchanged) */
        bool raise_high_first;        /* write memory.high before the balloon command (deflation) */
        GuestPressure guest_pressure; /* signals seen */
        uint64_t share;               /* the VM's water-filling allocation this round (0 if none) */
        uint64_t entitlement;         /* autoballoon: what give-back deflates towards (0 if not computed:
                                       * computed when the host is calm, and always when explaining) */

        PolicyCarry carry;            /* to pass back in the next PolicyVM */

        char reason[POLICY_REASON_MAX]; /* "" for a "none" decision, but from policy_explain() */
} PolicyDecision;

typedef struct PolicySummary {
        bool host_pressure;           /* as the mode sees it (proxmox: host used above its target) */
        uint64_t goal;                /* bytes the host asked for this round */
        uint64_t planned;             /* bytes the decisions take (after caps) */
        uint64_t last_reclaim_usec;   /* when host pressure last led to an inflation; carry it over */
        uint64_t last_cycle_usec;     /* proxmox: when its last 10 s cycle ran; carry it over */
        uint64_t last_pressure_usec;  /* when host pressure was last seen (give-back waits); carry it over */
        uint64_t scan_left;           /* rfc: scanned pages short of a whole event; add them to the next */
        char reason[POLICY_REASON_MAX];
} PolicySummary;

/* Decides for every VM with the algorithm p->mode; 'out' has room for n decisions. Returns 0, -EINVAL
 * on invalid params (an unknown mode, tax_rate outside [0, 1), reclaim_step, max_step, max_rate,
 * deflate_step or stall_usec 0), or -ENOMEM. Only the decisions that act get a reason: the daemon
 * uses no other, and at thousands of VMs formatting them would cost most of a decision.
 * Carried state: stall_count is reset once a move completed (actual == target with progress after
 * the back-off ended, so the stop a stall orders does not reset it); back-off delays inflation only,
 * deflation towards a guest's needs is never delayed. 'summary' may be NULL. */
int policy_decide(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n,
                  PolicyDecision *out, PolicySummary *summary);
/* policy_decide() with the reasons of the "none" decisions too (why nothing is done, e.g. "nothing to
 * give"): the same decisions otherwise, for explaining a snapshot (the policy tests check both). */
int policy_explain(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n,
                   PolicyDecision *out, PolicySummary *summary);

/* Water-filling on its own (what policy_decide does, for the tests): shares 'budget' bytes among n VMs,
 * each getting an allocation in [floor[i], ceil[i]] so that, where not clamped, the VMs' cost above
 * their floor per unit of weight is equal. Memory between floor[i] and ceil[i] costs 1 per byte,
 * except the top idle[i] bytes below ceil[i] (idle guest memory, which a balloon takes first), which
 * cost 1/(1 - tax_rate) per byte. Writes alloc[i]; the sum equals the budget clamped to
 * [sum floor, sum ceil]. A weight of 0 counts as 1, a ceil below its floor as the floor, a tax_rate
 * outside [0, 1) as 0, and idle may be NULL (no idle memory). The level, the cost above the floor
 * per unit of weight where not clamped, in *ret_level if not NULL: 0 when the budget is at most the
 * floors' sum, INFINITY when at least the ceilings'. 0 or -ENOMEM. */
int policy_water_fill(uint64_t budget, size_t n, const uint64_t *weight, const uint64_t *floor,
                      const uint64_t *ceil, const uint64_t *idle, double tax_rate, uint64_t *alloc,
                      double *ret_level);
