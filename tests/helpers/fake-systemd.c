/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* A FAKE systemd for the integration tests (the test machines have no systemd as PID 1): takes the
 * name org.freedesktop.systemd1 on the system bus ($DBUS_SYSTEM_BUS_ADDRESS, a private dbus-daemon in
 * the tests) and implements the two Manager methods autoballoond calls, for the units named on the
 * command line only. Every call is printed on stdout, one line each, for the test to assert on:
 *
 *   GetUnit balloon-web.slice found|missing
 *   SetUnitProperties balloon-web.slice runtime=1 MemoryHigh=469762048
 *   SetUnitProperties balloon-db.slice missing
 *
 * It records and answers; it does not touch any cgroup file. Prints "ready" once it owns the name. */

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "macro.h"

static char **known_units;

static bool unit_known(const char *name) {
        for (char **u = known_units; *u; u++)
                if (streq(*u, name))
                        return true;
        return false;
}

static int no_such_unit(sd_bus_error *error, const char *name) {
        return sd_bus_error_setf(error, "org.freedesktop.systemd1.NoSuchUnit", "Unit %s not loaded.", name);
}

static int method_get_unit(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_free_ char *path = NULL;
        const char *name;
        int r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        printf("GetUnit %s %s\n", name, unit_known(name) ? "found" : "missing");
        if (!unit_known(name))
                return no_such_unit(error, name);

        r = sd_bus_path_encode("/org/freedesktop/systemd1/unit", name, &path);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, "o", path);
}

static int method_set_unit_properties(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *name, *property, *type;
        int runtime, r;

        r = sd_bus_message_read(m, "sb", &name, &runtime);
        if (r < 0)
                return r;
        if (!unit_known(name)) {
                printf("SetUnitProperties %s missing\n", name);
                return no_such_unit(error, name);
        }
        printf("SetUnitProperties %s runtime=%i", name, runtime);

        r = sd_bus_message_enter_container(m, 'a', "(sv)");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'r', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &property);
                if (r < 0)
                        return r;
                r = sd_bus_message_peek_type(m, NULL, &type);
                if (r < 0)
                        return r;
                if (streq(type, "t")) {
                        uint64_t v;
                        r = sd_bus_message_read(m, "v", "t", &v);
                        if (r < 0)
                                return r;
                        printf(" %s=%" PRIu64, property, v);
                } else {
                        printf(" %s=<%s>", property, type);
                        r = sd_bus_message_skip(m, "v");
                        if (r < 0)
                                return r;
                }
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        printf("\n");
        return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("GetUnit", "s", "o", method_get_unit, 0),
        SD_BUS_METHOD("SetUnitProperties", "sba(sv)", NULL, method_set_unit_properties, 0),
        SD_BUS_VTABLE_END
};

int main(int argc, char *argv[]) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        sigset_t mask;
        int r;

        known_units = argv + 1;
        setvbuf(stdout, NULL, _IOLBF, 0);

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return 1;

        r = sd_event_default(&event);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT, NULL, NULL);
        if (r >= 0)
                r = sd_bus_open_system(&bus);
        if (r >= 0)
                r = sd_bus_add_object_vtable(bus, NULL, "/org/freedesktop/systemd1",
                                             "org.freedesktop.systemd1.Manager", manager_vtable, NULL);
        if (r >= 0)
                r = sd_bus_request_name(bus, "org.freedesktop.systemd1", 0);
        if (r >= 0)
                r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0) {
                fprintf(stderr, "fake systemd: %s\n", strerror(-r));
                return 1;
        }

        printf("ready\n");
        return sd_event_loop(event) < 0 ? 1 : 0;
}
