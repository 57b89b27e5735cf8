/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

/* memory.high of VM slices through systemd's D-Bus API. A slice systemd manages gets MemoryHigh= with
 * SetUnitProperties(runtime=true), so systemd stays the owner of its cgroup attributes: a direct write
 * would be undone at its next daemon-reload and "systemctl show" would report a stale value. Slices
 * systemd does not manage (made by hand, or no systemd at all) are written through cgroupfs by the
 * caller. Every call is asynchronous: the event loop never waits for systemd. */

/* Connects to the system bus ($DBUS_SYSTEM_BUS_ADDRESS or the default socket) and attaches the
 * connection to 'event'. -errno when there is no bus. */
int systemd_bus_open(sd_event *event, sd_bus **ret);

typedef struct SystemdUnit SystemdUnit;

/* A unit ("balloon-web.slice") whose MemoryHigh= the daemon may set; 'owner' prefixes its log lines
 * (the VM's name). Asks systemd at once (GetUnit) whether it has the unit loaded. 'bus' may be NULL
 * (no system bus): the unit is then never managed, as when the question cannot be sent (logged).
 * Fails with -ENOMEM only. */
int systemd_unit_new(sd_bus *bus, const char *name, const char *owner, SystemdUnit **ret);
SystemdUnit *systemd_unit_free(SystemdUnit *u);
static inline void systemd_unit_freep(SystemdUnit **u) {
        systemd_unit_free(*u);
}

/* True once systemd answered that it has the unit; false before the answer, when it has not, and
 * for u == NULL. */
bool systemd_unit_is_managed(const SystemdUnit *u);

/* The caller wrote memory.high through cgroupfs while the unit was not managed (systemd's answer
 * pending, or the slice not loaded yet): if systemd later says it has the unit, MemoryHigh= is set
 * to the last such value at once, so that its view is not stale and its next daemon-reload does not
 * undo the write. No-op for u == NULL or a managed unit. */
void systemd_unit_wrote_directly(SystemdUnit *u, uint64_t value);

/* Asks systemd again about a unit it said it did not have (a slice's cgroup can show up before
 * systemd has loaded the slice for good: "systemctl set-property" on a slice that is not started
 * yet). No-op when managed, without a bus, or while a question is in flight. */
int systemd_unit_refresh(SystemdUnit *u);

/* Sends SetUnitProperties(name, runtime=true, [("MemoryHigh", t value)]) (SIZE_UNLIMITED is systemd's
 * "infinity" as well). A refusal is logged when the reply arrives. -EOPNOTSUPP if the unit is not
 * managed, other -errno if the message cannot be sent (bus gone). */
int systemd_unit_set_memory_high(SystemdUnit *u, uint64_t value);
