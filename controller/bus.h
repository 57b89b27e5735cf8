/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

/* What the daemon shows and takes from operators over D-Bus (org.autoballoon1 on the system bus, used
 * by autoballoonctl). The OpenMetrics file written each tick (metrics.h) shows the same per-VM view.
 *
 * Object /org/autoballoon1, interface org.autoballoon1.Manager:
 *
 *   ListVMs() -> a(sstttttttdtss)
 *       per VM: name, state ("connecting", "probing", "ready", "unsupported"), weight, boot memory,
 *       min, max (MinMemory=/MaxMemory= resolved, bytes), actual, target (balloon, bytes),
 *       memory.high (bytes; 0: the slice has no memory.high the daemon manages; 2^64-1: "max"),
 *       slice memory pressure "some" avg10 (percent; -1: not readable), and the last logged
 *       decision: its time (CLOCK_REALTIME, usec; 0: none yet), action and reason ("" if none).
 *   Explain(s vm) -> a{sv} snapshot, a(tsttts) decisions
 *       The numbers the policy sees for the VM now (keys carry their unit: *_bytes, *_usec,
 *       *_per_sec; a value the daemon does not know is left out; decision_now: what the policy would
 *       decide now and why, entitlement_bytes: its give-back entitlement), and its last logged decisions,
 *       oldest first: time (CLOCK_REALTIME, usec), action, actual, target, memory.high, reason.
 *   SetWeight(s vm, t weight, b runtime)
 *       runtime: the running daemon only, kept across reloads, lost at a restart. Otherwise
 *       persisted in <config dir>/autoballoon.conf.d/50-weight-<vm>.conf and applied.
 *   Pause(), Resume()
 *       Paused, the daemon keeps watching and logging its decisions but sends no balloon command
 *       and writes no cgroup attribute (as --dry-run). Not persisted.
 *   Properties: Paused b, DryRun b, HostTotal t, HostAvailable t (bytes), HostPressure d (some
 *       avg10, percent; -1: not readable), Policy s (Policy=: "autoballoon", "none", "rfc",
 *       "proxmox"), MetricsFile s, Version s.
 *
 * ListVMs, Explain and the properties are open to everyone; SetWeight, Pause and Resume need uid 0
 * (org.freedesktop.DBus.Error.AccessDenied otherwise). An unknown VM is
 * org.autoballoon1.Error.NoSuchVM, a weight outside 1..10000 org.freedesktop.DBus.Error.InvalidArgs;
 * a refused call changes nothing. */

#define BUS_NAME "org.autoballoon1"
#define BUS_PATH "/org/autoballoon1"
#define BUS_INTERFACE "org.autoballoon1.Manager"
#define BUS_ERROR_NO_SUCH_VM "org.autoballoon1.Error.NoSuchVM"
#define BUS_ERROR_BAD_CONFIG "org.autoballoon1.Error.BadConfig"
#define BUS_LIST_VMS_SIGNATURE "a(sstttttttdtss)"
#define BUS_EXPLAIN_SIGNATURE "a{sv}a(tsttts)"

typedef enum BusType {
        BUS_DEFAULT,  /* the system bus if there is one; without one the daemon runs without the API */
        BUS_SYSTEM,   /* the system bus, or fail */
        BUS_SESSION,  /* the user's bus, or fail */
        BUS_NONE,
        _BUS_TYPE_MAX,
} BusType;

/* "system", "session", "none"; -EINVAL otherwise. */
int bus_type_from_string(const char *s, BusType *ret);

typedef struct Manager Manager;
typedef struct Bus Bus;

/* Connects to the bus 'type' names, publishes the object and takes the name org.autoballoon1.
 * *ret is set even when there is no bus (BUS_NONE, or BUS_DEFAULT without a system bus). Fails when an
 * explicitly requested bus is not there or when another process owns the name. */
int bus_open(Manager *m, BusType type, Bus **ret);
Bus *bus_free(Bus *b);
static inline void bus_freep(Bus **b) {
        bus_free(*b);
}

