/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Configuration: <dir>/autoballoon.conf, then <dir>/autoballoon.conf.d/\*.conf in lexical (strcmp)
 * order; a later assignment overrides an earlier one, an empty one ("Key=") restores the default.
 * systemd-style syntax: "[Section]", "Key=Value", comments start with '#' or ';'. Sections: [Daemon],
 * and [VM <name>] with the name as in balloon-<name>.slice, or a libvirt domain's name as it is.
 *
 * The keys, their defaults and ranges are the tables daemon_keys and vm_keys below, and only there;
 * autoballoon.conf(5) says what they mean. test-config checks that the shipped autoballoon.conf and
 * the man page give the same defaults and list every key.
 *
 * Times take "us", "ms", "s", "min", "h" suffixes (seconds without one); sizes take K, M, G, T.
 */

#include <assert.h>
#include <dirent.h>
#include <limits.h>
#include <stddef.h>
#include <sys/stat.h>

#include "cgroup.h"
#include "config-paths.h"
#include "config.h"
#include "log.h"
#include "util.h"

static void closedirp(DIR **d) {
        if (*d)
                (void) closedir(*d);
}

static const char *strempty(const char *s) {
        return s ?: "";
}

typedef enum ConfigType {
        CONFIG_SIZE,          /* uint64_t bytes */
        CONFIG_SIZE_SPEC,     /* SizeSpec: bytes or percent */
        CONFIG_TIME,          /* uint64_t usec */
        CONFIG_UINT,          /* uint64_t */
        CONFIG_RATIO,         /* double in [0, 1) */
        CONFIG_SLICE,         /* char *, a relative path of ".slice" directories */
        CONFIG_PATH,          /* char *, absolute */
        CONFIG_HOST_PRESSURE, /* HostPressureSource */
        CONFIG_BOOL,          /* bool: yes/no, true/false, on/off, 1/0 */
        CONFIG_STRING,        /* char *, not empty */
        CONFIG_POLICY,        /* PolicyMode */
} ConfigType;

typedef struct ConfigKey {
        const char *name;
        ConfigType type;
        size_t offset;             /* of the field in Config or VMConfig */
        const char *default_value; /* parsed like a value from a file */
        uint64_t min, max;         /* for SIZE, TIME, UINT; SIZE_SPEC: min > 0 means "not zero";
                                    * PATH: max is the longest length */
        const char *range;         /* says min and max to the user, as autoballoon.conf(5)'s RANGES */
        size_t set_offset;         /* VM keys: the bool that says the key was set, else SIZE_MAX */
} ConfigKey;

/* A daemon built without the libvirt backend (meson -Dlibvirt=disabled) refuses Libvirt=yes. */
#if HAVE_LIBVIRT
#  define LIBVIRT_DEFAULT "yes"
#else
#  define LIBVIRT_DEFAULT "no"
#endif

#define DAEMON_KEY(n, t, field, def, lo, hi, r) \
        { n, t, offsetof(Config, field), def, lo, hi, r, SIZE_MAX }
#define VM_KEY(n, t, field, set_field, def, lo, hi, r) \
        { n, t, offsetof(VMConfig, field), def, lo, hi, r, offsetof(VMConfig, set_field) }

/* <RuntimeDir>/qmp/<vm>.sock must fit in sun_path (108 bytes) for VM names of up to VM_NAME_MAX. */
#define RUNTIME_DIR_MAX 64
static_assert(RUNTIME_DIR_MAX + STRLEN("/qmp/") + VM_NAME_MAX + STRLEN(".sock") < 108, "sun_path");

static const ConfigKey daemon_keys[] = {
        DAEMON_KEY("Policy",               CONFIG_POLICY,        policy,                   "autoballoon",      0, 0, NULL),
        DAEMON_KEY("ParentSlice",          CONFIG_SLICE,         parent_slice,             "balloon.slice",    0, 0, NULL),
        DAEMON_KEY("HostPressure",         CONFIG_HOST_PRESSURE, host_pressure,            "system",           0, 0, NULL),
        DAEMON_KEY("HostReserve",          CONFIG_SIZE_SPEC,     host_reserve,             "5%",               0, 0, NULL),
        DAEMON_KEY("RefillMargin",         CONFIG_SIZE_SPEC,     refill_margin,            "5%",               0, 0, NULL),
        DAEMON_KEY("RefillSettleSec",      CONFIG_TIME,          refill_settle_usec,       "30",               0, USEC_PER_HOUR, "must be at most 1h"),
        DAEMON_KEY("RefillDelaySec",       CONFIG_TIME,          refill_delay_usec,        "60",               0, USEC_PER_HOUR, "must be at most 1h"),
        DAEMON_KEY("RefillRate",           CONFIG_SIZE,          refill_rate,              "32M",              0, UINT64_MAX, NULL),
        DAEMON_KEY("IdleReclaimRate",      CONFIG_SIZE,          idle_reclaim_rate,        "0",                0, UINT64_MAX, NULL),
        DAEMON_KEY("HysteresisSec",        CONFIG_TIME,          hysteresis_usec,          "60",               0, USEC_PER_HOUR, "must be at most 1h"),
        DAEMON_KEY("TaxRate",              CONFIG_RATIO,         tax_rate,                 "0.75",             0, 0, NULL),
        DAEMON_KEY("ReclaimStep",          CONFIG_SIZE,          reclaim_step,             "128M",             1, UINT64_MAX, "must be greater than 0"),
        DAEMON_KEY("ReclaimSettleSec",     CONFIG_TIME,          reclaim_settle_usec,      "5",                0, USEC_PER_HOUR, "must be at most 1h"),
        DAEMON_KEY("MaxStep",              CONFIG_SIZE,          max_step,                 "256M",             1, UINT64_MAX, "must be greater than 0"),
        DAEMON_KEY("MaxRate",              CONFIG_SIZE,          max_rate,                 "128M",             1, UINT64_MAX, "must be greater than 0"),
        DAEMON_KEY("DeflateStep",          CONFIG_SIZE,          deflate_step,             "128M",             1, UINT64_MAX, "must be greater than 0"),
        DAEMON_KEY("GuestPressureIntervalSec", CONFIG_TIME,      guest_pressure_interval_usec, "1",            100 * USEC_PER_MSEC, USEC_PER_HOUR, "must be between 100ms and 1h"),
        DAEMON_KEY("GuestReserve",         CONFIG_SIZE_SPEC,     guest_reserve,            "64M",              0, 0, NULL),
        DAEMON_KEY("GuestMinAvailable",    CONFIG_SIZE_SPEC,     guest_min_available,      "32M",              0, 0, NULL),
        DAEMON_KEY("GuestSwapInRate",      CONFIG_SIZE,          guest_swapin_rate,        "1M",               0, UINT64_MAX, NULL),
        DAEMON_KEY("GuestMajorFaultRate",  CONFIG_UINT,          guest_major_fault_rate,   "100",              0, UINT64_MAX, NULL),
        DAEMON_KEY("MemoryHighOverhead",   CONFIG_SIZE,          memory_high_overhead,     "256M",             0, UINT64_MAX, NULL),
        DAEMON_KEY("HostTriggerStallSec",  CONFIG_TIME,          host_trigger_stall_usec,  "0.1",              1, UINT64_MAX, "must be greater than 0"),
        DAEMON_KEY("SliceTriggerStallSec", CONFIG_TIME,          slice_trigger_stall_usec, "0.1",              1, UINT64_MAX, "must be greater than 0"),
        DAEMON_KEY("TriggerWindowSec",     CONFIG_TIME,          trigger_window_usec,      "2",                500 * USEC_PER_MSEC, 10 * USEC_PER_SEC, "must be between 500ms and 10s"),
        DAEMON_KEY("StatsIntervalSec",     CONFIG_TIME,          stats_interval_usec,      "1",                100 * USEC_PER_MSEC, USEC_PER_HOUR, "must be between 100ms and 1h"),
        DAEMON_KEY("StatsIdleIntervalSec", CONFIG_TIME,          stats_idle_interval_usec, "10",               USEC_PER_SEC, USEC_PER_HOUR, "must be between 1s and 1h"),
        DAEMON_KEY("IdleWindowSec",        CONFIG_TIME,          idle_window_usec,         "60",               0, USEC_PER_HOUR, "must be at most 1h"),
        DAEMON_KEY("BalloonStallSec",      CONFIG_TIME,          stall_usec,               "10",               USEC_PER_SEC, USEC_PER_HOUR, "must be between 1s and 1h"),
        DAEMON_KEY("BalloonBackoffSec",    CONFIG_TIME,          stall_backoff_usec,       "30",               USEC_PER_SEC, USEC_PER_HOUR, "must be between 1s and 1h"),
        DAEMON_KEY("RuntimeDir",           CONFIG_PATH,          runtime_dir,              "/run/autoballoon", 0, RUNTIME_DIR_MAX, "must be an absolute path of at most 64 characters"),
        DAEMON_KEY("Libvirt",              CONFIG_BOOL,          libvirt,                  LIBVIRT_DEFAULT,    0, 0, NULL),
        DAEMON_KEY("LibvirtURI",           CONFIG_STRING,        libvirt_uri,              "qemu:///system",   0, 0, NULL),
        DAEMON_KEY("DomainMetadata",       CONFIG_BOOL,          domain_metadata,          "yes",              0, 0, NULL),
        DAEMON_KEY("DomainMaxWeight",      CONFIG_UINT,          domain_max_weight,        "10000",            1, 10000, "must be between 1 and 10000"),
        DAEMON_KEY("DomainMaxMinMemory",   CONFIG_SIZE_SPEC,     domain_max_min_memory,    "100%",             0, 0, NULL),
        DAEMON_KEY("LibvirtPidDir",        CONFIG_PATH,          libvirt_pid_dir,          "/run/libvirt/qemu", 0, PATH_MAX - 1, "must be an absolute path"),
};

static const ConfigKey vm_keys[] = {
        VM_KEY("Weight",    CONFIG_UINT,      weight,     weight_set, "100",  1, 10000, "must be between 1 and 10000"),
        VM_KEY("MinMemory", CONFIG_SIZE_SPEC, min_memory, min_set,    "25%",  0, 0, NULL),
        VM_KEY("MaxMemory", CONFIG_SIZE_SPEC, max_memory, max_set,    "100%", 1, 0, "must be greater than 0"),
};

static const ConfigKey *config_key_find(const ConfigKey *keys, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (streq(keys[i].name, name))
                        return keys + i;
        return NULL;
}

#define DAEMON_KEY_FIND(name) config_key_find(daemon_keys, ELEMENTSOF(daemon_keys), name)
#define VM_KEY_FIND(name) config_key_find(vm_keys, ELEMENTSOF(vm_keys), name)

const char *config_key_name(bool vm, size_t i) {
        if (vm)
                return i < ELEMENTSOF(vm_keys) ? vm_keys[i].name : NULL;
        return i < ELEMENTSOF(daemon_keys) ? daemon_keys[i].name : NULL;
}

const char *config_key_range(bool vm, size_t i) {
        if (vm)
                return i < ELEMENTSOF(vm_keys) ? vm_keys[i].range : NULL;
        return i < ELEMENTSOF(daemon_keys) ? daemon_keys[i].range : NULL;
}

bool config_key_equal(bool vm, const char *key, const void *a, const void *b) {
        const ConfigKey *k = vm ? VM_KEY_FIND(key) : DAEMON_KEY_FIND(key);

        if (!k)
                return false;
        a = (const uint8_t *) a + k->offset;
        b = (const uint8_t *) b + k->offset;

        switch (k->type) {
        case CONFIG_SIZE:
        case CONFIG_TIME:
        case CONFIG_UINT:
                return *(const uint64_t *) a == *(const uint64_t *) b;
        case CONFIG_SIZE_SPEC:
                return ((const SizeSpec *) a)->bytes == ((const SizeSpec *) b)->bytes &&
                        ((const SizeSpec *) a)->permyriad == ((const SizeSpec *) b)->permyriad;
        case CONFIG_RATIO:
                return *(const double *) a == *(const double *) b;
        case CONFIG_SLICE:
        case CONFIG_PATH:
        case CONFIG_STRING:
                return streq_ptr(*(char * const *) a, *(char * const *) b);
        case CONFIG_HOST_PRESSURE:
                return *(const HostPressureSource *) a == *(const HostPressureSource *) b;
        case CONFIG_BOOL:
                return *(const bool *) a == *(const bool *) b;
        case CONFIG_POLICY:
                return *(const PolicyMode *) a == *(const PolicyMode *) b;
        }
        return false;
}

static bool slice_path_is_valid(const char *s) {
        const char *p = s;

        if (*s == '/' || strlen(s) > 1024)
                return false;
        for (;;) {
                size_t l = strcspn(p, "/");
                /* "x.slice": at least one character before the suffix, and unit-name characters only. */
                if (l <= strlen(".slice") || strncmp(p + l - strlen(".slice"), ".slice", strlen(".slice")) != 0 ||
                    strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-") < l || *p == '.')
                        return false;
                if (p[l] == 0)
                        return true;
                p += l + 1;
        }
}

/* Writes the value to base + k->offset only on success; on -EINVAL *ret_reason says why. */
static int config_key_parse(const ConfigKey *k, const char *value, void *base, const char **ret_reason) {
        void *field = (uint8_t *) base + k->offset;
        uint64_t u;
        int r;

        switch (k->type) {

        case CONFIG_SIZE:
                r = parse_size(value, false, &u, NULL);
                if (r < 0) {
                        *ret_reason = r == -ERANGE ? "size too large" : "not a size (e.g. 512M, 2G)";
                        return -EINVAL;
                }
                break;

        case CONFIG_SIZE_SPEC: {
                SizeSpec s;
                r = parse_size(value, true, &s.bytes, &s.permyriad);
                if (r < 0) {
                        *ret_reason = r == -ERANGE ? "too large (sizes are limited to 16E, percentages to 100%)"
                                                   : "not a size or percentage (e.g. 512M, 2G, 25%)";
                        return -EINVAL;
                }
                if (k->min > 0 && s.bytes == 0 && s.permyriad == 0) {
                        *ret_reason = k->range;
                        return -EINVAL;
                }
                *(SizeSpec *) field = s;
                return 0;
        }

        case CONFIG_TIME:
                r = parse_time_usec(value, &u);
                if (r < 0) {
                        *ret_reason = r == -ERANGE ? "time too large" : "not a time (e.g. 2, 0.5, 500ms, 1min)";
                        return -EINVAL;
                }
                break;

        case CONFIG_UINT:
                r = safe_atou64(value, &u);
                if (r < 0) {
                        *ret_reason = r == -ERANGE ? "number too large" : "not a non-negative integer";
                        return -EINVAL;
                }
                break;

        case CONFIG_RATIO: {
                /* Plain decimals only: strtod() would also take "nan", "inf", hex and signs. */
                size_t n = strspn(value, "0123456789");
                char *end;
                if (n == 0 || (value[n] != 0 && (value[n] != '.' || value[n + 1] == 0 ||
                                                 strspn(value + n + 1, "0123456789") != strlen(value + n + 1)))) {
                        *ret_reason = "not a decimal number";
                        return -EINVAL;
                }
                double d = strtod(value, &end);
                if (*end != 0 || d >= 1.0) {
                        *ret_reason = "must be at least 0 and below 1";
                        return -EINVAL;
                }
                *(double *) field = d;
                return 0;
        }

        case CONFIG_BOOL:
                if (IN_SET_STR(value, "yes", "true", "on", "1"))
                        *(bool *) field = true;
                else if (IN_SET_STR(value, "no", "false", "off", "0"))
                        *(bool *) field = false;
                else {
                        *ret_reason = "must be yes or no";
                        return -EINVAL;
                }
                return 0;

        case CONFIG_SLICE:
        case CONFIG_PATH:
        case CONFIG_STRING: {
                /* Strings are anything: "Key=" restores the default, so never empty. */
                bool ok = k->type == CONFIG_SLICE ? slice_path_is_valid(value) :
                          k->type != CONFIG_PATH || (value[0] == '/' && strlen(value) <= k->max);
                if (!ok) {
                        *ret_reason = k->type == CONFIG_SLICE
                                ? "not a slice path relative to the cgroup root (e.g. balloon.slice)"
                                : k->range;
                        return -EINVAL;
                }
                char *s = strdup(value);
                if (!s)
                        return -ENOMEM;
                free(*(char **) field);
                *(char **) field = s;
                return 0;
        }

        case CONFIG_HOST_PRESSURE:
                if (streq(value, "system"))
                        *(HostPressureSource *) field = HOST_PRESSURE_SYSTEM;
                else if (streq(value, "slice"))
                        *(HostPressureSource *) field = HOST_PRESSURE_SLICE;
                else {
                        *ret_reason = "must be \"system\" or \"slice\"";
                        return -EINVAL;
                }
                return 0;

        case CONFIG_POLICY:
                if (policy_mode_from_string(value, (PolicyMode *) field) < 0) {
                        *ret_reason = "must be \"autoballoon\", \"none\", \"rfc\" or \"proxmox\"";
                        return -EINVAL;
                }
                return 0;
        }

        /* SIZE, TIME and UINT end here, with their range. */
        if (u < k->min || u > k->max) {
                *ret_reason = k->range;
                return -ERANGE;
        }
        *(uint64_t *) field = u;
        return 0;
}

int vm_config_set(VMConfig *c, const char *key, const char *value, const char **ret_reason) {
        const ConfigKey *k = VM_KEY_FIND(key);
        int r;

        if (!k) {
                *ret_reason = "unknown key";
                return -EINVAL;
        }
        r = config_key_parse(k, value, c, ret_reason);
        if (r == -ERANGE)
                r = -EINVAL;
        if (r < 0)
                return r;
        *(bool *) ((uint8_t *) c + k->set_offset) = true;
        return 0;
}

/* The defaults are constants of this file and test-config checks that they parse. */
static void config_keys_defaults(const ConfigKey *keys, size_t n, void *base) {
        const char *unused;

        for (size_t i = 0; i < n; i++)
                (void) config_key_parse(keys + i, keys[i].default_value, base, &unused);
}

void vm_config_defaults(VMConfig *ret) {
        *ret = (VMConfig) {};
        config_keys_defaults(vm_keys, ELEMENTSOF(vm_keys), ret);
}

void config_policy_params(const Config *c, PolicyParams *ret) {
        *ret = (PolicyParams) {
                .mode = c->policy,
                .reclaim_step = c->reclaim_step,
                .reclaim_settle_usec = c->reclaim_settle_usec,
                .tax_rate = c->tax_rate,
                .hysteresis_usec = c->hysteresis_usec,
                .max_step = c->max_step,
                .max_rate = c->max_rate,
                .deflate_step = c->deflate_step,
                .guest_swapin_rate = c->guest_swapin_rate,
                .guest_major_fault_rate = c->guest_major_fault_rate,
                .memory_high_overhead = c->memory_high_overhead,
                .stall_usec = c->stall_usec,
                .stall_backoff_usec = c->stall_backoff_usec,
                .refill_settle_usec = c->refill_settle_usec,
                .refill_delay_usec = c->refill_delay_usec,
                .refill_rate = c->refill_rate,
                .idle_reclaim_rate = c->idle_reclaim_rate,
        };
}

int config_new(Config **ret) {
        _cleanup_(config_freep) Config *c = NULL;

        c = new0(Config, 1);
        if (!c)
                return -ENOMEM;

        config_keys_defaults(daemon_keys, ELEMENTSOF(daemon_keys), c);
        c->origins = new0(ConfigOrigin, config_n_origins(0));
        if (!c->parent_slice || !c->runtime_dir || !c->libvirt_uri || !c->libvirt_pid_dir || !c->origins)
                return -ENOMEM;

        *ret = TAKE_PTR(c);
        return 0;
}

static void config_origin_done(ConfigOrigin *o) {
        free(o->file);
        free(o->value);
        *o = (ConfigOrigin) {};
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;

        free(c->parent_slice);
        free(c->runtime_dir);
        free(c->libvirt_uri);
        free(c->libvirt_pid_dir);
        for (size_t i = 0; i < c->n_vms; i++)
                free(c->vms[i].name);
        free(c->vms);
        free(c->vm_slots);
        for (size_t i = 0; i < config_n_origins(c->n_vms); i++)
                config_origin_done(c->origins + i);
        free(c->origins);
        free(c);
        return NULL;
}

/* [VM] sections are found through an open-addressing hash table of their names, so that loading
 * 10,000 of them stays linear. Slots hold index + 1, 0 is empty. */
static size_t name_hash(const char *s) {
        uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */

        for (; *s; s++)
                h = (h ^ (uint8_t) *s) * UINT64_C(1099511628211);
        return (size_t) h;
}

static size_t config_vm_index(const Config *c, const char *name) {
        if (c->n_vm_slots == 0)
                return SIZE_MAX;
        for (size_t h = name_hash(name) & (c->n_vm_slots - 1);; h = (h + 1) & (c->n_vm_slots - 1)) {
                size_t v = c->vm_slots[h];
                if (v == 0)
                        return SIZE_MAX;
                if (streq(c->vms[v - 1].name, name))
                        return v - 1;
        }
}

static void config_vm_slot_insert(size_t *slots, size_t n_slots, const char *name, size_t index) {
        size_t h = name_hash(name) & (n_slots - 1);

        while (slots[h] != 0)
                h = (h + 1) & (n_slots - 1);
        slots[h] = index + 1;
}

/* Makes room for one more VM: the table at most half full. */
static int config_vm_slots_grow(Config *c) {
        size_t n = c->n_vm_slots ?: 16;

        while (n < 2 * (c->n_vms + 1))
                n *= 2;
        if (n == c->n_vm_slots)
                return 0;

        size_t *slots = new0(size_t, n);
        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_vms; i++)
                config_vm_slot_insert(slots, n, c->vms[i].name, i);
        free(c->vm_slots);
        c->vm_slots = slots;
        c->n_vm_slots = n;
        return 0;
}

const VMConfig *config_find_vm(const Config *c, const char *name) {
        size_t i = config_vm_index(c, name);
        return i == SIZE_MAX ? NULL : c->vms + i;
}

/* Origins are one slot per [Daemon] key, then one per key of each [VM] section in order. */
static ConfigOrigin *config_origin_slot(const Config *c, const char *vm, const char *key) {
        const ConfigKey *k;
        size_t i;

        if (vm) {
                i = config_vm_index(c, vm);
                k = VM_KEY_FIND(key);
                if (i == SIZE_MAX || !k)
                        return NULL;
                return c->origins + ELEMENTSOF(daemon_keys) + i * ELEMENTSOF(vm_keys) + (size_t) (k - vm_keys);
        }
        k = DAEMON_KEY_FIND(key);
        return k ? c->origins + (size_t) (k - daemon_keys) : NULL;
}

size_t config_n_origins(size_t n_vms) {
        return ELEMENTSOF(daemon_keys) + n_vms * ELEMENTSOF(vm_keys);
}

const ConfigOrigin *config_find_origin(const Config *c, const char *vm, const char *key) {
        const ConfigOrigin *o = config_origin_slot(c, vm, key);
        return o && o->file ? o : NULL;
}

static int config_set_origin(Config *c, const char *vm, const char *key, const char *file, unsigned line,
                             const char *value) {
        ConfigOrigin *slot = config_origin_slot(c, vm, key);
        ConfigOrigin o = { .key = key, .line = line };

        assert(slot);
        o.file = strdup(file);
        o.value = strdup(value);
        if (!o.file || !o.value) {
                config_origin_done(&o);
                return -ENOMEM;
        }
        config_origin_done(slot);
        *slot = o;
        return 0;
}

typedef enum ConfigSection {
        SECTION_NONE,
        SECTION_DAEMON,
        SECTION_VM,
} ConfigSection;

typedef struct ConfigParser {
        Config *config;
        const char *path;
        unsigned line;
        ConfigSection section;
        size_t vm;           /* index into config->vms in SECTION_VM */
        int error;           /* first error, already logged */
} ConfigParser;

static int config_add_vm(Config *c, const char *name, size_t *ret_index) {
        size_t i = config_vm_index(c, name);
        int r;

        if (i != SIZE_MAX) {
                *ret_index = i;
                return 0;
        }

        _cleanup_free_ char *n = strdup(name);
        if (!n)
                return -ENOMEM;
        r = config_vm_slots_grow(c);
        if (r < 0)
                return r;

        /* Grown by half each time, so adding sections stays linear overall. */
        if (c->n_vms == c->n_vms_allocated) {
                size_t m = MAX(c->n_vms_allocated * 3 / 2, (size_t) 16);
                VMConfig *l = reallocarray(c->vms, m, sizeof(VMConfig));
                if (!l)
                        return -ENOMEM;
                c->vms = l;
                ConfigOrigin *o = reallocarray(c->origins, config_n_origins(m), sizeof(ConfigOrigin));
                if (!o)
                        return -ENOMEM;
                c->origins = o;
                c->n_vms_allocated = m;
        }

        i = c->n_vms;
        vm_config_defaults(c->vms + i);
        c->vms[i].name = TAKE_PTR(n);
        for (size_t k = 0; k < ELEMENTSOF(vm_keys); k++)
                c->origins[config_n_origins(i) + k] = (ConfigOrigin) {};
        config_vm_slot_insert(c->vm_slots, c->n_vm_slots, c->vms[i].name, i);
        c->n_vms++;
        *ret_index = i;
        return 0;
}

int config_set_vm_key(Config *c, const char *vm, const char *key, const char *value, const char *file,
                      unsigned line, const char **ret_reason) {
        VMConfig copy;
        size_t i;
        int r;

        if (!domain_vm_name_is_valid(vm)) {
                *ret_reason = "invalid VM name";
                return -EINVAL;
        }
        r = config_add_vm(c, vm, &i);
        if (r < 0)
                return r;
        copy = c->vms[i];
        r = vm_config_set(&copy, key, value, ret_reason);
        if (r < 0)
                return r;
        r = config_set_origin(c, vm, VM_KEY_FIND(key)->name, file, line, value);
        if (r < 0)
                return r;
        c->vms[i] = copy;
        return 0;
}

/* Section headers are handled here, so that an empty "[VM x]" still declares the VM and a bad one is
 * reported even without keys. */
static int config_parse_section(ConfigParser *p, char *s) {
        size_t l = strlen(s);
        const char *name;

        if (l < 2 || s[l - 1] != ']') {
                log_error("%s:%u: %s: expected \"[Section]\"", p->path, p->line, s);
                return -EINVAL;
        }
        s[l - 1] = 0;
        s++;

        if (streq(s, "Daemon")) {
                p->section = SECTION_DAEMON;
                return 0;
        }

        name = startswith(s, "VM ");
        if (!name) {
                log_error("%s:%u: [%s]: unknown section (expected [Daemon] or [VM <name>])", p->path, p->line, s);
                return -EINVAL;
        }
        if (!domain_vm_name_is_valid(name)) {
                log_error("%s:%u: [%s]: invalid VM name (1 to 255 bytes, no '/' and no control character: the "
                          "name in balloon-<name>.slice, or a libvirt domain's name)", p->path, p->line, s);
                return -EINVAL;
        }

        int r = config_add_vm(p->config, name, &p->vm);
        if (r < 0)
                return log_oom();
        p->section = SECTION_VM;
        return 0;
}

/* One "Key=Value" line: key characters, optional blanks, '=', the value with blanks around it removed.
 * No inline comments and no continuation lines, as in systemd's unit files. */
static int config_parse_assignment(ConfigParser *p, char *s, char **ret_key, char **ret_value) {
        size_t k = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
        char *e = s + k + strspn(s + k, " \t");

        if (k == 0 || *e != '=') {
                log_error("%s:%u: %s: syntax error (expected \"[Section]\", \"Key=Value\" or a comment)",
                          p->path, p->line, s);
                return -EINVAL;
        }
        s[k] = 0;
        e++;
        *ret_key = s;
        *ret_value = e + strspn(e, " \t");
        return 0;
}

static void config_assign(ConfigParser *p, const char *name, const char *value) {
        const ConfigKey *k;
        const char *reason = NULL, *vm = NULL;
        void *base;
        int r;

        if (p->section == SECTION_NONE) {
                p->error = log_error_errno(EINVAL, "%s:%u: %s=%s: assignment outside of a section",
                                           p->path, p->line, name, value);
                return;
        }
        if (p->section == SECTION_VM) {
                k = VM_KEY_FIND(name);
                base = p->config->vms + p->vm;
                vm = p->config->vms[p->vm].name;
        } else {
                k = DAEMON_KEY_FIND(name);
                base = p->config;
        }

        if (!k) {
                if (vm)
                        p->error = log_error_errno(EINVAL, "%s:%u: %s=%s: unknown key in [VM %s]",
                                                   p->path, p->line, name, value, vm);
                else
                        p->error = log_error_errno(EINVAL, "%s:%u: %s=%s: unknown key in [Daemon]",
                                                   p->path, p->line, name, value);
                return;
        }

        /* "Key=" resets to the default, as in systemd unit files. */
        r = config_key_parse(k, *value ? value : k->default_value, base, &reason);
        if (r >= 0 && !HAVE_LIBVIRT && streq(k->name, "Libvirt") && p->config->libvirt) {
                reason = "this autoballoond is built without libvirt (meson -Dlibvirt=disabled)";
                r = -EOPNOTSUPP;
        }
        if (r == -ENOMEM) {
                p->error = log_oom();
                return;
        }
        if (r < 0) {
                p->error = log_error_errno(EINVAL, "%s:%u: %s=%s: %s", p->path, p->line, name, value, reason);
                return;
        }
        if (k->set_offset != SIZE_MAX)
                *(bool *) ((uint8_t *) base + k->set_offset) = *value != 0;

        r = config_set_origin(p->config, vm, k->name, p->path, p->line, *value ? value : k->default_value);
        if (r < 0) {
                p->error = log_oom();
                return;
        }
}

int config_parse_file(Config *c, const char *path) {
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *buf = NULL;
        size_t buf_size = 0;

        f = fopen(path, "re");
        if (!f) {
                if (errno == ENOENT)
                        return -ENOENT;
                return log_error_errno(errno, "Failed to open %s: %m", path);
        }

        ConfigParser p = {
                .config = c,
                .path = path,
        };

        /* Lines of any length: getline() grows the buffer, and the file is root's. */
        for (;;) {
                char *s, *key, *value;
                ssize_t n;

                errno = 0;
                n = getline(&buf, &buf_size, f);
                if (n < 0) {
                        if (errno != 0)
                                return log_error_errno(errno, "%s: read failed: %m", path);
                        break;
                }
                p.line++;
                if (strlen(buf) != (size_t) n)
                        return log_error_errno(EINVAL, "%s:%u: NUL byte in line", path, p.line);

                s = buf;
                if (p.line == 1)
                        s = (char *) (startswith(s, "\xEF\xBB\xBF") ?: s);
                s += strspn(s, " \t");
                while (n > 0 && strchr(" \t\r\n", buf[n - 1]))
                        buf[--n] = 0;

                if (*s == 0 || strchr("#;", *s))
                        continue;
                if (*s == '[')
                        p.error = config_parse_section(&p, s);
                else {
                        p.error = config_parse_assignment(&p, s, &key, &value);
                        if (p.error >= 0)
                                config_assign(&p, key, value);
                }
                if (p.error < 0)
                        return p.error == -ENOMEM ? -ENOMEM : -EINVAL;
        }
        return 0;
}

static int cmp_strp(const void *a, const void *b) {
        return strcmp(*(char * const *) a, *(char * const *) b);
}

/* The names of the regular files "*.conf" in dir, sorted with strcmp(); an empty list if dir is missing. */
static int list_dropins(const char *dir, char ***ret) {
        _cleanup_strv_free_ char **names = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        size_t n = 0;

        names = new0(char *, 1);
        if (!names)
                return -ENOMEM;

        d = opendir(dir);
        if (!d) {
                if (errno != ENOENT)
                        return log_error_errno(errno, "Failed to open %s: %m", dir);
                *ret = TAKE_PTR(names);
                return 0;
        }

        for (;;) {
                struct dirent *de;
                struct stat st;
                const char *e;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                return log_error_errno(errno, "Failed to read %s: %m", dir);
                        break;
                }

                /* Hidden files are editor and package manager leftovers, as systemd treats them. */
                e = strrchr(de->d_name, '.');
                if (de->d_name[0] == '.' || !e || !streq(e, ".conf"))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
                        continue;

                char **l = reallocarray(names, n + 2, sizeof(char *));
                if (!l)
                        return log_oom();
                names = l;
                names[n] = strdup(de->d_name);
                if (!names[n])
                        return log_oom();
                names[++n] = NULL;
        }

        qsort(names, n, sizeof(char *), cmp_strp);
        *ret = TAKE_PTR(names);
        return 0;
}

int config_load(const char *config_dir, Config **ret) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *main_file = NULL, *dropin_dir = NULL;
        _cleanup_strv_free_ char **dropins = NULL;
        int r;

        r = config_new(&c);
        if (r < 0)
                return log_oom();

        if (asprintf(&main_file, "%s/autoballoon.conf", config_dir) < 0 ||
            asprintf(&dropin_dir, "%s/autoballoon.conf.d", config_dir) < 0)
                return log_oom();

        r = config_parse_file(c, main_file);
        if (r < 0 && r != -ENOENT)
                return r;

        r = list_dropins(dropin_dir, &dropins);
        if (r < 0)
                return r;
        for (char **name = dropins; *name; name++) {
                _cleanup_free_ char *path = NULL;

                if (asprintf(&path, "%s/%s", dropin_dir, *name) < 0)
                        return log_oom();
                r = config_parse_file(c, path);
                if (r < 0 && r != -ENOENT) /* removed since we listed it */
                        return r;
        }

        r = config_validate(c, config_dir);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(c);
        return 0;
}

/* Logs "file:line: A=x: must be <relation> B=y (set at file:line)", blaming the key the user set (two
 * defaults never conflict) and naming where the other one comes from. */
static int config_conflict(const Config *c, const char *what, const char *vm, const ConfigKey *a,
                           const char *a_relation, const ConfigKey *b, const char *b_relation) {
        const ConfigOrigin *oa, *ob;
        char other[PATH_MAX + 32];

        oa = config_find_origin(c, vm, a->name);
        ob = config_find_origin(c, vm, b->name);
        if (!oa && ob) {
                const ConfigKey *k = a;
                const ConfigOrigin *o = oa;
                const char *rel = a_relation;

                a = b, oa = ob, a_relation = b_relation;
                b = k, ob = o, b_relation = rel;
        }

        if (ob)
                (void) snprintf(other, sizeof other, "set at %s:%u", ob->file, ob->line);
        else
                (void) snprintf(other, sizeof other, "default");

        if (oa)
                return log_error_errno(EINVAL, "%s:%u: %s=%s: must be %s %s=%s (%s)%s%s%s",
                                       oa->file, oa->line, a->name, oa->value, a_relation, b->name,
                                       ob ? ob->value : b->default_value, other,
                                       vm ? " in [VM " : "", strempty(vm), vm ? "]" : "");
        /* Values set by code rather than read from a file (tests). */
        return log_error_errno(EINVAL, "%s: %s: must be %s %s%s%s%s", what, a->name, a_relation, b->name,
                               vm ? " in [VM " : "", strempty(vm), vm ? "]" : "");
}

/* Compares two sizes when both are absolute or both percentages (or one of them is 0); false when they
 * can only be compared once resolved against their base. */
static bool size_spec_compare(SizeSpec a, SizeSpec b, int *ret) {
        bool pa = a.bytes == 0 && a.permyriad > 0, pb = b.bytes == 0 && b.permyriad > 0;
        uint64_t va = pa ? a.permyriad : a.bytes, vb = pb ? b.permyriad : b.bytes;

        if (pa != pb && va != 0 && vb != 0)
                return false;
        *ret = va < vb ? -1 : va > vb;
        return true;
}

int config_validate(const Config *c, const char *what) {
        const ConfigKey *window = DAEMON_KEY_FIND("TriggerWindowSec");
        int cmp;

        if (c->host_trigger_stall_usec > c->trigger_window_usec)
                return config_conflict(c, what, NULL, DAEMON_KEY_FIND("HostTriggerStallSec"), "at most",
                                       window, "at least");
        if (c->slice_trigger_stall_usec > c->trigger_window_usec)
                return config_conflict(c, what, NULL, DAEMON_KEY_FIND("SliceTriggerStallSec"), "at most",
                                       window, "at least");
        if (size_spec_compare(c->guest_min_available, c->guest_reserve, &cmp) && cmp >= 0)
                return config_conflict(c, what, NULL, DAEMON_KEY_FIND("GuestMinAvailable"), "below",
                                       DAEMON_KEY_FIND("GuestReserve"), "above");

        for (size_t i = 0; i < c->n_vms; i++) {
                const VMConfig *vm = c->vms + i;

                if (size_spec_compare(vm->min_memory, vm->max_memory, &cmp) && cmp > 0)
                        return config_conflict(c, what, vm->name, VM_KEY_FIND("MinMemory"), "at most",
                                               VM_KEY_FIND("MaxMemory"), "at least");
        }

        return 0;
}
