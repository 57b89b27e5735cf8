/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "log.h"
#include "systemd.h"
#include "util.h"

#define SYSTEMD_SERVICE "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"

struct SystemdUnit {
        sd_bus *bus;
        char *name;
        char *owner;
        bool managed;
        bool answered;        /* GetUnit was answered at least once */
        bool unsynced;        /* memory.high was written through cgroupfs before systemd said it has
                               * the unit: 'unsynced_value' is set through systemd once it does */
        uint64_t unsynced_value;
        sd_bus_slot *get_slot;
        /* The last SetUnitProperties in flight; a newer one supersedes it (its reply is not waited for). */
        sd_bus_slot *set_slot;
        uint64_t set_value;
};

int systemd_bus_open(sd_event *event, sd_bus **ret) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        int r;

        r = sd_bus_open_system(&bus);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

static int on_get_unit(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        SystemdUnit *u = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        bool first = !u->answered;

        u->get_slot = sd_bus_slot_unref(u->get_slot);
        u->answered = true;
        if (e) {
                if (first)
                        log_info("%s: systemd does not manage %s (%s): memory.high is written through cgroupfs",
                                 u->owner, u->name, e->message ?: e->name);
                return 0;
        }
        u->managed = true;
        log_info("%s: %s is a systemd unit: MemoryHigh= is set through systemd", u->owner, u->name);
        if (u->unsynced) {
                int r = systemd_unit_set_memory_high(u, u->unsynced_value);
                if (r < 0)
                        log_warning_errno(r, "%s: cannot set MemoryHigh= of %s to what memory.high was written (%m)",
                                          u->owner, u->name);
                u->unsynced = false;
        }
        return 0;
}

static int ask_get_unit(SystemdUnit *u) {
        int r;

        r = sd_bus_call_method_async(u->bus, &u->get_slot, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                     "GetUnit", on_get_unit, u, "s", u->name);
        if (r < 0 && r != -ENOMEM)
                log_warning_errno(r, "%s: cannot ask systemd about %s (%m): memory.high is written through cgroupfs",
                                  u->owner, u->name);
        return r < 0 ? r : 0;
}

int systemd_unit_new(sd_bus *bus, const char *name, const char *owner, SystemdUnit **ret) {
        _cleanup_(systemd_unit_freep) SystemdUnit *u = NULL;
        int r;

        u = new0(SystemdUnit, 1);
        if (!u)
                return -ENOMEM;
        u->name = strdup(name);
        u->owner = strdup(owner);
        if (!u->name || !u->owner)
                return -ENOMEM;

        if (bus) {
                u->bus = sd_bus_ref(bus);
                r = ask_get_unit(u);
                if (r == -ENOMEM)
                        return r;
        }

        *ret = TAKE_PTR(u);
        return 0;
}

SystemdUnit *systemd_unit_free(SystemdUnit *u) {
        if (!u)
                return NULL;
        /* Unreferencing a slot cancels its callback: no reply reaches a freed unit. */
        sd_bus_slot_unref(u->get_slot);
        sd_bus_slot_unref(u->set_slot);
        sd_bus_unref(u->bus);
        free(u->name);
        free(u->owner);
        free(u);
        return NULL;
}

bool systemd_unit_is_managed(const SystemdUnit *u) {
        return u && u->managed;
}

void systemd_unit_wrote_directly(SystemdUnit *u, uint64_t value) {
        if (!u || u->managed)
                return;
        u->unsynced = true;
        u->unsynced_value = value;
}

int systemd_unit_refresh(SystemdUnit *u) {
        if (!u->bus || u->managed || u->get_slot)
                return 0;
        return ask_get_unit(u);
}

static int on_set_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        SystemdUnit *u = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        char a[FORMAT_BYTES_MAX];

        u->set_slot = sd_bus_slot_unref(u->set_slot);
        format_bytes(a, sizeof a, u->set_value);
        if (e)
                log_warning("%s: systemd refused MemoryHigh=%s on %s: %s", u->owner, a, u->name,
                            e->message ?: e->name);
        else
                log_debug("%s: systemd set MemoryHigh=%s on %s", u->owner, a, u->name);
        return 0;
}

int systemd_unit_set_memory_high(SystemdUnit *u, uint64_t value) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        sd_bus_slot *slot = NULL;
        int r;

        if (!systemd_unit_is_managed(u))
                return -EOPNOTSUPP;

        r = sd_bus_message_new_method_call(u->bus, &m, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                           "SetUnitProperties");
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "sba(sv)", u->name, 1, 1, "MemoryHigh", "t", value);
        if (r < 0)
                return r;
        r = sd_bus_call_async(u->bus, &slot, m, on_set_reply, u, 0);
        if (r < 0)
                return r;

        sd_bus_slot_unref(u->set_slot);
        u->set_slot = slot;
        u->set_value = value;
        return 0;
}
