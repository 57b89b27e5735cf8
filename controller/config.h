/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

/* A size that is either absolute or a share of some base the key documents (host memory, the VM's
 * boot memory, ...). */
typedef struct SizeSpec {
        uint64_t bytes;
        uint32_t permyriad; /* parts per 10000; used when bytes == 0 and permyriad > 0 */
} SizeSpec;

static inline uint64_t size_spec_resolve(SizeSpec s, uint64_t base) {
        if (s.bytes > 0 || s.permyriad == 0)
                return s.bytes;
        return (uint64_t) ((unsigned __int128) base * s.permyriad / 10000);
}

typedef enum HostPressureSource {
        HOST_PRESSURE_SYSTEM, /* <proc>/pressure/memory and MemAvailable from <proc>/meminfo */
        HOST_PRESSURE_SLICE,  /* the parent slice's memory.pressure, and memory.max/high - memory.current */
} HostPressureSource;

/* Each key's default and range are in config.c's tables; autoballoon.conf(5) says what it means. */

typedef struct VMConfig {
        char *name;
        uint64_t weight;       /* Weight=, 1..10000 */
        SizeSpec min_memory;   /* MinMemory=, % of the VM's boot memory */
        SizeSpec max_memory;   /* MaxMemory=, % of the VM's boot memory */
        bool weight_set, min_set, max_set;
} VMConfig;

/* The last assignment of a key in the files read. */
typedef struct ConfigOrigin {
        const char *key;   /* "MinMemory", ... (static) */
        char *file;
        unsigned line;
        char *value;       /* as written; the default's text for a reset ("Key=") */
} ConfigOrigin;

typedef struct Config {
        /* [Daemon] */
        PolicyMode policy;               /* Policy= */
        char *parent_slice;              /* ParentSlice= */
        HostPressureSource host_pressure;/* HostPressure= */
        SizeSpec host_reserve;           /* HostReserve=, % of host memory */
        SizeSpec refill_margin;          /* RefillMargin=, % of host memory: give-back above HostReserve= + this */
        uint64_t refill_settle_usec;     /* RefillSettleSec=, no host pressure this long before a give-back */
        uint64_t refill_delay_usec;      /* RefillDelaySec=, no give-back this soon after a VM's inflation */
        uint64_t refill_rate;            /* RefillRate=, per VM, bytes per second of give-back; 0: none */
        uint64_t idle_reclaim_rate;      /* IdleReclaimRate=, per VM, bytes per second; 0: none */
        uint64_t hysteresis_usec;        /* HysteresisSec= */
        double tax_rate;                 /* TaxRate=, in [0, 1) */
        uint64_t reclaim_step;           /* ReclaimStep=, reclaim goal per host pressure event */
        uint64_t reclaim_settle_usec;    /* ReclaimSettleSec=, no new goal this soon after a reclaim */
        uint64_t max_step;               /* MaxStep=, per VM and decision */
        uint64_t max_rate;               /* MaxRate=, per VM, bytes per second */
        uint64_t deflate_step;           /* DeflateStep=, given back on guest pressure */
        uint64_t guest_pressure_interval_usec; /* GuestPressureIntervalSec=: messages acted on per VM */
        SizeSpec guest_reserve;          /* GuestReserve=, available memory an inflate leaves the guest;
                                          * % of the guest's current memory */
        SizeSpec guest_min_available;    /* GuestMinAvailable=, below it the guest is under pressure;
                                          * % as GuestReserve= */
        uint64_t guest_swapin_rate;      /* GuestSwapInRate=, bytes/s counted as pressure */
        uint64_t guest_major_fault_rate; /* GuestMajorFaultRate=, faults/s counted as pressure */
        uint64_t memory_high_overhead;   /* MemoryHighOverhead=, slice memory.high = balloon + this */
        uint64_t host_trigger_stall_usec;  /* HostTriggerStallSec= (in a window) */
        uint64_t slice_trigger_stall_usec; /* SliceTriggerStallSec= */
        uint64_t trigger_window_usec;      /* TriggerWindowSec= */
        uint64_t stats_interval_usec;      /* StatsIntervalSec=: polling while busy */
        uint64_t stats_idle_interval_usec; /* StatsIdleIntervalSec=: polling while calm */
        uint64_t idle_window_usec;         /* IdleWindowSec=: guest memory used within it is not idle */
        uint64_t stall_usec;               /* BalloonStallSec= */
        uint64_t stall_backoff_usec;       /* BalloonBackoffSec= */
        char *runtime_dir;                 /* RuntimeDir= */
        bool libvirt;                      /* Libvirt= */
        char *libvirt_uri;                 /* LibvirtURI= */
        char *libvirt_pid_dir;             /* LibvirtPidDir= */
        bool domain_metadata;              /* DomainMetadata=: read Weight= etc. from domain XML */
        uint64_t domain_max_weight;        /* DomainMaxWeight=: the most a domain may ask */
        SizeSpec domain_max_min_memory;    /* DomainMaxMinMemory=, % of the VM's boot memory */

        /* [VM <name>] sections, in order of first appearance; later files override earlier keys. */
        VMConfig *vms;
        size_t n_vms, n_vms_allocated;
        size_t *vm_slots;   /* hash index of vms by name (config.c) */
        size_t n_vm_slots;

        /* Where each key that was assigned in a file got its value, for messages: config_n_origins()
         * slots, an unset one has file == NULL. Use config_find_origin(). */
        ConfigOrigin *origins;
} Config;

size_t config_n_origins(size_t n_vms);

/* Fills in the defaults. */
int config_new(Config **ret);

/* The policy's parameters from the [Daemon] keys; host_reserve is left 0, to be resolved against the
 * host's memory at each decision. */
void config_policy_params(const Config *c, PolicyParams *ret);

/* Loads <config_dir>/autoballoon.conf (missing is fine) and then <config_dir>/autoballoon.conf.d/
 * *.conf in lexical order, each overriding earlier keys. Errors are logged as "file:line: Key=: what"
 * and returned as -EINVAL (unknown section or key, bad value, inconsistent values). "Key=" (empty)
 * restores the default. */
int config_load(const char *config_dir, Config **ret);

/* Parses one file into an existing config (used by config_load() and the tests). -ENOENT (not logged)
 * if the file does not exist; -EINVAL (logged with file and line) on any error in it. */
int config_parse_file(Config *c, const char *path);

/* Cross-key validation after all files are read (e.g. MinMemory <= MaxMemory,
 * GuestMinAvailable < GuestReserve, stalls <= TriggerWindowSec). Errors name the file and line of the
 * offending assignment, or 'what' for values no file set. */
int config_validate(const Config *c, const char *what);

Config *config_free(Config *c);
static inline void config_freep(Config **c) {
        config_free(*c);
}

/* Where 'key' ([VM <vm>] section, or [Daemon] for vm == NULL) was last assigned, or NULL if never. */
const ConfigOrigin *config_find_origin(const Config *c, const char *vm, const char *key);

/* The keys the parser knows, for the tests that hold the shipped file and the man page to them: the
 * i-th key of [Daemon] (vm false) or of a [VM] section, NULL past the last. */
const char *config_key_name(bool vm, size_t i);
/* The i-th key's bounds as the error message and autoballoon.conf(5)'s RANGES say them, or NULL for a
 * key whose values are listed where it is described. */
const char *config_key_range(bool vm, size_t i);
/* Whether 'a' and 'b' (two Config for a [Daemon] key, two VMConfig for a [VM] key) give the key the
 * same value. False for an unknown key. */
bool config_key_equal(bool vm, const char *key, const void *a, const void *b);

/* The VM's section, or NULL: callers then use vm_config_defaults(). */
const VMConfig *config_find_vm(const Config *c, const char *name);
void vm_config_defaults(VMConfig *ret);
/* Sets one [VM] key ("Weight", "MinMemory", "MaxMemory") from its text, as in a file, and marks it
 * set. -EINVAL with *ret_reason on an unknown key or a bad value, -ENOMEM. */
int vm_config_set(VMConfig *c, const char *key, const char *value, const char **ret_reason);
/* The same in [VM <vm>] of a loaded configuration, as if read at file:line (a drop-in the daemon just
 * wrote), adding the section if there is none. */
int config_set_vm_key(Config *c, const char *vm, const char *key, const char *value, const char *file,
                      unsigned line, const char **ret_reason);
