/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus.h"
#include "config.h"
#include "discovery.h"
#include "policy.h"
#include "state.h"
#include "vm.h"

typedef struct ManagerOptions {
        const char *config_dir;
        const char *cgroup_root;
        const char *proc_root;
        const char *runtime_dir;  /* overrides RuntimeDir= when set */
        const char *record_path;  /* appends each decision's input here (trace.h) when set */
        bool dry_run;
        bool allow_plain_cgroup_dir; /* accept a cgroup root that is not cgroup2 (tests only) */
        BusType bus_type;            /* where the D-Bus API is offered */
        const discovery_new_t *sources; /* where VMs come from (discovery_sources), NULL-terminated */
} ManagerOptions;

typedef struct Manager {
        sd_event *event;
        ManagerOptions options;
        Config *config;
        PolicyParams params;

        int cgroup_fd;
        char *runtime_dir;
        sd_bus *systemd_bus;         /* NULL without a system bus: memory.high through cgroupfs only */
        VMContext vm_context;        /* what the VMs see of the manager */
        DiscoveryContext discovery_context; /* what the VM sources see of it */
        Discovery **sources;         /* started, in the order of options.sources */
        size_t n_sources;
        Bus *bus;                    /* the D-Bus API */
        char *metrics_path;          /* <RuntimeDir>/metrics.prom, written each tick (metrics.c) */
        bool metrics_failed;         /* its last write failed and said so */
        bool paused;                 /* by the D-Bus API: decide and log only, as --dry-run */

        /* Pause and the VMs' carried policy state across restarts (state.h). */
        char *state_path;            /* <RuntimeDir>/state; NULL: not kept (no boot id) */
        char boot_id[37];
        State saved;                 /* as read at start; an entry is taken by its VM's adoption */
        bool state_dirty;            /* Pause or a VM's carried state changed since the last write */
        bool state_failed;           /* the last write failed and said so */

        sd_event_source *host_trigger;
        bool host_trigger_lost;      /* EPOLLERR: armed again at a tick once its cgroup is back */
        bool host_pressure;          /* trigger fired since the last decision */
        uint64_t host_trigger_usec;  /* when it last fired, for the latency figure */
        uint64_t host_total, host_available;
        uint64_t host_pgscan;        /* the host's reclaim scan counter at the last decision */
        bool host_pgscan_known;
        bool window_rounding_logged;

        sd_event_source *tick;       /* at the earliest VM's next refresh, StatsIdleIntervalSec= at most */
        sd_event_source *round_timer; /* the round's deadline */
        uint64_t round_usec;         /* when the round started: its VMs' refresh_usec */
        size_t round_pending;        /* VMs of the round still to answer; 0: the round has decided */
        bool refresh_all;            /* the host trigger fired: read every VM at the next tick */
        bool host_busy;              /* at the last tick (polling.h) */
        bool stopping;               /* manager_free(): nothing decides any more */

        VMList vms;                  /* every source's VMs, the sources own them */

        /* Preallocated so a decision does not allocate. */
        PolicyVM *snapshot;
        PolicyDecision *decisions;
        VM **snapshot_vms;
        size_t snapshot_allocated;

        PolicySummary last_summary;
        bool notified_ready;
        FILE *record;                /* --record=FILE */
} Manager;

int manager_new(const ManagerOptions *options, Manager **ret);

/* Writes <RuntimeDir>/state now; a decision calls it when a VM's carried state changed, the D-Bus
 * API when Pause did. A failed write is tried again at the next decision. */
void manager_save_state(Manager *m);
Manager *manager_free(Manager *m);
static inline void manager_freep(Manager **m) {
        manager_free(*m);
}

/* Signals, the host trigger, the system bus, the D-Bus API, the VM sources in their order, then the
 * tick: at each, the VMs due are refreshed (each at its own interval, polling.h) and a decision runs once
 * they answered, or at the round's deadline. */
int manager_start(Manager *m);
int manager_run(Manager *m);

/* A VM of any source, by name; NULL if none. */
VM *manager_find_vm(Manager *m, const char *name);

/* What the policy would decide for 'vm' (ready) now, with the reason of a "none" too: its give-back
 * entitlement, and why it is or is not given memory back (autoballoonctl explain). Nothing is
 * carried out. 0, -ENOENT if the VM is not ready, or -ENOMEM. */
int manager_explain_vm(Manager *m, VM *vm, PolicyDecision *ret);

/* The host's memory pressure, from where HostPressure= says: some avg10 in percent, -1 when it cannot
 * be read. */
double manager_host_pressure(Manager *m);
