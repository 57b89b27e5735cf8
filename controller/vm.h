/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "policy.h"
#include "guest-stats.h"
#include "systemd.h"

/* What the daemon knows of one VM: its slice, its backend (QMP or libvirt), the balloon as last seen,
 * the guest stats, and the policy state carried between decisions. */

/* What a VM needs of the daemon around it, given at vm_new(). The manager owns it, keeps it current
 * (the config after a reload) and outlives its VMs. */
typedef struct VMContext VMContext;
typedef struct VM VM;
struct VMContext {
        sd_event *event;
        int cgroup_fd;                /* the cgroup root: a VM's cgpath is relative to it */
        sd_bus *systemd_bus;          /* NULL: memory.high through cgroupfs only */
        const Config *config;
        /* Decides now, on the last known state ("slice pressure", "guest pressure event"). */
        void (*decide)(const VMContext *ctx, const char *why);
        /* The last answer of the VM's refresh came in (or failed): its state is as fresh as it gets. */
        void (*query_done)(const VMContext *ctx, VM *vm);
        /* The VM wants to be refreshed now (adopted, its slice trigger fired): vm->next_refresh_usec
         * is 0. */
        void (*refresh_soon)(const VMContext *ctx);
        /* Arms a PSI trigger on 'path' under the cgroup root. */
        int (*arm_trigger)(const VMContext *ctx, const char *path, uint64_t stall_usec,
                           sd_event_io_handler_t handler, void *userdata, sd_event_source **ret);
        /* What the daemon carried for this VM before it restarted, once; false if nothing. NULL: none. */
        bool (*take_saved_carry)(const VMContext *ctx, const char *name, PolicyCarry *ret);
        void *userdata;               /* the callbacks' */
};

#define VM_HISTORY_MAX 16
/* Guest reports kept for IdleWindowSec=: the oldest go first beyond this (a window of a minute at
 * most one read a second fits). */
#define VM_WINDOW_MAX 128

typedef struct VMWindowSample {
        uint64_t usec;
        uint64_t demand; /* balloon size minus available: what the guest uses, whatever the balloon */
        uint64_t actual; /* the balloon size then */
        unsigned guest_deflations; /* VM.guest_deflations then */
        bool moved;      /* the balloon moved since the sample before, other than by the guest deflating it */
        uint64_t used;   /* balloon size minus free: what a deflation gives is not counted as used */
} VMWindowSample;
/* How long an unchanged hold, or an unchanged decision while paused or in a dry run, stays unsaid. */
#define REPEAT_LOG_USEC (10 * 60 * USEC_PER_SEC)

/* A warning the guest can cause, said once per interval with the count of those not said. */
typedef struct VMLogLimit {
        uint64_t logged_usec;
        unsigned suppressed;
} VMLogLimit;

typedef struct VMLoggedDecision {
        PolicyAction action;
        uint64_t target, memory_high;
        char cause[32];           /* the reason up to its first ':' ("host pressure", ...) */
        uint64_t usec;
} VMLoggedDecision;

typedef struct VMHistoryEntry {
        uint64_t usec;
        PolicyAction action;
        uint64_t actual, target, memory_high;
        char reason[POLICY_REASON_MAX];
} VMHistoryEntry;

typedef enum VMState {
        VM_CONNECTING,  /* waiting for the backend (not started yet, restarting, or back-off after an error) */
        VM_PROBING,     /* connected; finding the balloon device and the boot memory size */
        VM_READY,       /* managed */
        VM_UNSUPPORTED, /* cannot balloon: reported once, not retried until the backend reconnects */
} VMState;

typedef struct Backend Backend;
typedef struct Discovery Discovery;

struct VM {
        const VMContext *ctx;
        Discovery *source;   /* the source that found it and owns it (discovery.h) */
        char *name;
        char *cgpath;        /* relative to the cgroup root; NULL: its cgroup is out of reach, balloon only */
        SystemdUnit *unit;   /* the slice as a systemd unit: memory.high through systemd when it manages it */
        VMConfig config;     /* resolved against the config file; name borrowed from 'name' */
        VMConfig backend_config; /* Weight/MinMemory/MaxMemory the backend found (libvirt metadata) */

        Backend *backend;
        VMState state;
        char *device;        /* the balloon as the backend names it, for messages */
        uint64_t boot_memory;
        unsigned stats_missing;   /* refreshes in a row without guest stats */

        /* Refresh: one at a time per VM, so a silent peer holds back no one but itself. */
        unsigned refresh_pending;    /* answers of the refresh in flight still to come */
        uint64_t refresh_usec;       /* when the last refresh was asked */
        uint64_t next_refresh_usec;  /* when the next one is due; 0: now */
        uint64_t poll_interval_usec; /* the interval it is read (and its guest asked) at now */
        uint64_t stats_seen_usec;    /* when the current guest report was first read */

        uint64_t actual, target;
        uint64_t memory_high, memory_current;
        uint64_t slice_cache;      /* memory.stat file - shmem */
        bool memory_high_known;
        bool memory_high_checked; /* read at least once: say once that it is missing */

        GuestStats stats, prev_stats;
        bool has_stats, has_prev_stats;
        uint64_t swap_in_rate, major_fault_rate;
        uint64_t alloc_stalls, direct_reclaims, oom_kills;
        VMWindowSample window[VM_WINDOW_MAX]; /* the guest reports of the last IdleWindowSec=, a ring */
        unsigned window_start, n_window;
        unsigned guest_deflations; /* times the balloon deflated past our target (deflate-on-oom) */
        uint64_t guest_free_recent, guest_growth; /* from the window, for the policy */

        sd_event_source *slice_trigger;
        bool min_from_domain;      /* MinMemory= is the domain's: DomainMaxMinMemory= bounds it */
        bool limits_checked;       /* vm_check_limits() ran for this config and boot memory */
        bool slice_trigger_lost;   /* EPOLLERR: its cgroup went away; re-armed if it comes back */
        bool slice_pressure;      /* trigger fired since the last decision */
        /* Guest pressure messages not acted on yet, folded: the highest level, the largest size
         * hint, how many. Presented to the policy at most once per GuestPressureIntervalSec=; one
         * arriving sooner waits for pressure_timer. */
        bool pressure_event;
        GuestPressureLevel pressure_event_level;
        uint64_t pressure_event_size;
        uint64_t pressure_event_count;
        uint64_t pressure_acted_usec; /* when the last ones were acted on; 0: never */
        sd_event_source *pressure_timer;
        VMLogLimit invalid_event_log; /* malformed events: warned once per interval */

        /* Policy state carried between decisions, and the last time the balloon made progress
         * towards its target (or was given a new one), for the policy's stall detection; progress is
         * counted from where the balloon was then, progress_actual. */
        PolicyCarry carry;
        uint64_t last_progress_usec;
        uint64_t progress_actual;

        /* Balloon sizes rejected (out of [0, boot memory], or malformed): logged once per interval. */
        VMLogLimit invalid_size_log;
        VMLoggedDecision logged;  /* the last decision logged: repeats of it are not */

        VMHistoryEntry history[VM_HISTORY_MAX];
        unsigned n_history;
        uint64_t n_decisions[_POLICY_ACTION_MAX]; /* logged decisions by action, for the metrics */

        uint64_t runtime_weight;  /* SetWeight(runtime) over D-Bus, kept across reloads; 0: none */
};

/* A VM without a backend yet: the caller attaches one, then vm_start(). 'cgpath' (relative to the
 * cgroup root) may be NULL: the VM's cgroup is out of reach. */
int vm_new(const VMContext *ctx, const char *name, const char *cgpath, VM **ret);
/* Links the VM and its backend, which the VM owns from then on (vm_free() frees it). */
void vm_attach_backend(VM *vm, Backend *b);
int vm_start(VM *vm);
VM *vm_free(VM *vm);
static inline void vm_freep(VM **vm) {
        vm_free(*vm);
}

/* The configuration changed (ctx->config): resolves the VM's Weight/MinMemory/MaxMemory again and
 * re-arms its slice trigger. */
void vm_reload(VM *vm);

/* Asks the backend for the balloon size and guest stats and reads the slice's memory files, unless
 * the VM is not managed or its last refresh has not answered yet. Returns the number of answers
 * still to come; the last calls ctx->query_done(). The next one is due poll_interval_usec later. */
unsigned vm_refresh(VM *vm);
/* The interval the VM is read at from now on; the backend asks the guest for stats at it too. */
void vm_set_poll_interval(VM *vm, uint64_t usec);

/* How old the guest stats may get before they are stale: twice the sum of StatsIntervalSec= and the
 * VM's current interval (a report and a read per interval, with room for one missed). */
uint64_t vm_stats_max_age(const VM *vm);

/* Fills the policy's view of this VM. */
void vm_snapshot(VM *vm, uint64_t now, PolicyVM *ret);

/* The decisions logged, oldest first: entry i of vm_history_count(), the last VM_HISTORY_MAX. */
unsigned vm_history_count(const VM *vm);
const VMHistoryEntry *vm_history_entry(const VM *vm, unsigned i);
/* The last logged decision, NULL if none. */
const VMHistoryEntry *vm_last_decision(const VM *vm);

/* The slice's memory pressure now: some avg10, percent. -ENOENT without a cgroup. */
int vm_read_slice_pressure(const VM *vm, double *ret);

/* Acts on a decision: memory.high and the balloon command, unless dry_run. Logs it, and consumes the
 * pressure seen since the last decision (slice trigger, guest pressure event). */
void vm_apply_decision(VM *vm, uint64_t now, const PolicyDecision *d, bool dry_run);

const char *vm_state_to_string(VMState s);

/* VMs by reference, in no order: the manager's (all of them) and each source's (its own). */
typedef struct VMList {
        VM **items;
        size_t n;
} VMList;

int vm_list_add(VMList *l, VM *vm);
void vm_list_remove(VMList *l, VM *vm);
VM *vm_list_find(const VMList *l, const char *name);
/* Frees the list, not the VMs. */
void vm_list_done(VMList *l);
