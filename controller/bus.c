/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <fcntl.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "bus.h"
#include "config-paths.h"
#include "log.h"
#include "manager.h"
#include "util.h"

struct Bus {
        Manager *manager;
        sd_bus *bus;          /* NULL without a bus */
};

static const char *const bus_type_table[_BUS_TYPE_MAX] = {
        [BUS_SYSTEM] = "system",
        [BUS_SESSION] = "session",
        [BUS_NONE] = "none",
};

int bus_type_from_string(const char *s, BusType *ret) {
        for (BusType t = 0; t < _BUS_TYPE_MAX; t++)
                if (bus_type_table[t] && streq(s, bus_type_table[t])) {
                        *ret = t;
                        return 0;
                }
        return -EINVAL;
}

/* The monotonic time of a history entry as wall-clock time, for people and scripts. */
static uint64_t to_realtime(Manager *m, uint64_t mono) {
        uint64_t now_mono = 0, now_real = 0;

        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now_mono);
        (void) sd_event_now(m->event, CLOCK_REALTIME, &now_real);
        return now_real - MIN(now_real, now_mono > mono ? now_mono - mono : 0);
}

static uint64_t time_left(uint64_t until, uint64_t now) {
        return until > now ? until - now : 0;
}

/* ---- D-Bus: privilege */

/* State changes are for uid 0. The uid is the one the bus daemon took from the socket when the caller
 * connected, never one read from /proc afterwards (sd-bus "augments" from there, which a caller could
 * race by exiting and having its pid reused). */
static int check_root(sd_bus_message *msg, const char *what, sd_bus_error *error) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        uint64_t trusted;
        uid_t uid;
        int r;

        r = sd_bus_query_sender_creds(msg, SD_BUS_CREDS_EUID|SD_BUS_CREDS_UID, &creds);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot tell who asks to %s: %m", what);

        trusted = sd_bus_creds_get_mask(creds) & ~sd_bus_creds_get_augmented_mask(creds);
        if (trusted & SD_BUS_CREDS_EUID)
                r = sd_bus_creds_get_euid(creds, &uid);
        else if (trusted & SD_BUS_CREDS_UID)
                r = sd_bus_creds_get_uid(creds, &uid);
        else
                r = -ENODATA;
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Cannot tell who asks to %s, refusing.", what);
        if (uid != 0) {
                log_notice("Refused to %s for uid %u: only root may.", what, uid);
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Only root may %s (called by uid %u).", what, uid);
        }
        return 0;
}

/* ---- D-Bus: methods */

static int method_list_vms(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        uint64_t now = 0;
        int r;

        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(sstttttttdtss)");
        if (r < 0)
                return r;

        for (size_t i = 0; i < m->vms.n; i++) {
                VM *vm = m->vms.items[i];
                const VMHistoryEntry *last = vm_last_decision(vm);
                double pressure;
                PolicyVM p;

                vm_snapshot(vm, now, &p);
                if (vm_read_slice_pressure(vm, &pressure) < 0)
                        pressure = -1;

                r = sd_bus_message_append(reply, "(sstttttttdtss)", vm->name, vm_state_to_string(vm->state),
                                          vm->config.weight, vm->boot_memory, p.min, p.max, vm->actual,
                                          vm->target, vm->memory_high_known ? vm->memory_high : UINT64_C(0),
                                          pressure, last ? to_realtime(m, last->usec) : UINT64_C(0),
                                          last ? policy_action_to_string(last->action) : "",
                                          last ? last->reason : "");
                if (r < 0)
                        return r;
        }

        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int append_entry(sd_bus_message *reply, const char *key, const char *type, ...) {
        va_list ap;
        int r;

        r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "s", key);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'v', type);
        if (r < 0)
                return r;
        va_start(ap, type);
        r = sd_bus_message_appendv(reply, type, ap);
        va_end(ap);
        if (r < 0)
                return r;
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

/* The numbers behind the VM's decisions: what the policy sees of it now (vm_snapshot()). Values the
 * daemon does not know (no stats, not adopted, no memory.high) are left out. */
static int append_snapshot(sd_bus_message *reply, Manager *m, VM *vm, uint64_t now) {
        bool ready = vm->state == VM_READY;
        double pressure;
        PolicyVM p;
        int r;

        vm_snapshot(vm, now, &p);

        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;

#define ENTRY(key, type, value)                                         \
        do {                                                            \
                r = append_entry(reply, key, type, value);              \
                if (r < 0)                                              \
                        return r;                                       \
        } while (false)

        ENTRY("state", "s", vm_state_to_string(vm->state));
        ENTRY("weight", "t", p.weight);
        ENTRY("runtime_weight", "b", (int) (vm->runtime_weight > 0));
        if (vm->boot_memory > 0)
                ENTRY("boot_memory_bytes", "t", vm->boot_memory);
        if (ready) {
                ENTRY("min_bytes", "t", p.min);
                ENTRY("max_bytes", "t", p.max);
                ENTRY("actual_bytes", "t", p.actual);
                ENTRY("target_bytes", "t", p.target);
        }
        if (p.memory_high_known)
                ENTRY("memory_high_bytes", "t", p.memory_high);
        if (ready)
                ENTRY("memory_current_bytes", "t", p.memory_current);
        if (vm_read_slice_pressure(vm, &pressure) >= 0)
                ENTRY("slice_pressure_some_avg10", "d", pressure);
        ENTRY("has_stats", "b", (int) p.has_stats);
        if (p.has_stats) {
                ENTRY("guest_available_bytes", "t", p.guest_available);
                ENTRY("guest_free_bytes", "t", p.guest_free);
                ENTRY("guest_free_recent_bytes", "t", p.guest_free_recent);
                ENTRY("guest_growth_bytes", "t", p.guest_growth);
                ENTRY("swap_in_bytes_per_sec", "t", p.swap_in_rate);
                ENTRY("major_faults_per_sec", "t", p.major_fault_rate);
                ENTRY("alloc_stalls", "t", p.alloc_stalls);
                ENTRY("direct_reclaims", "t", p.direct_reclaims);
                ENTRY("oom_kills", "t", p.oom_kills);
        }
        if (ready) {
                ENTRY("guest_reserve_bytes", "t", p.guest_reserve);
                ENTRY("guest_min_available_bytes", "t", p.guest_min_available);
        }
        ENTRY("hysteresis_left_usec", "t", time_left(p.carry.hysteresis_until_usec, now));
        ENTRY("backoff_left_usec", "t", time_left(p.carry.backoff_until_usec, now));
        ENTRY("stall_count", "u", p.carry.stall_count);
        if (p.last_progress_usec > 0)
                ENTRY("since_progress_usec", "t", now - MIN(now, p.last_progress_usec));
        if (p.carry.last_inflate_usec > 0)
                ENTRY("since_inflate_usec", "t", now - MIN(now, p.carry.last_inflate_usec));
        if (p.carry.last_refill_usec > 0)
                ENTRY("since_give_back_usec", "t", now - MIN(now, p.carry.last_refill_usec));

        /* What the policy would decide now, and why: in the default mode, the give-back entitlement
         * and why the VM is or is not given memory back. */
        PolicyDecision d;
        if (ready && manager_explain_vm(m, vm, &d) >= 0) {
                if (d.entitlement > 0)
                        ENTRY("entitlement_bytes", "t", d.entitlement);
                ENTRY("decision_now", "s", d.reason[0] ? d.reason : policy_action_to_string(d.action));
        }
#undef ENTRY

        return sd_bus_message_close_container(reply);
}

static int method_explain(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        const char *name;
        uint64_t now = 0;
        VM *vm;
        int r;

        r = sd_bus_message_read(msg, "s", &name);
        if (r < 0)
                return r;
        vm = manager_find_vm(m, name);
        if (!vm)
                return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_VM,
                                         "No VM named '%s' (autoballoonctl status lists them).", name);

        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = append_snapshot(reply, m, vm, now);
        if (r < 0)
                return r;

        r = sd_bus_message_open_container(reply, 'a', "(tsttts)");
        if (r < 0)
                return r;
        for (unsigned i = 0; i < vm_history_count(vm); i++) {
                const VMHistoryEntry *e = vm_history_entry(vm, i);

                r = sd_bus_message_append(reply, "(tsttts)", to_realtime(m, e->usec),
                                          policy_action_to_string(e->action), e->actual, e->target,
                                          e->memory_high, e->reason);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* Puts the previous content back (or removes the file) after a refused change. */
static void restore_file(const char *path, const char *old) {
        int r = old ? write_file_atomic(path, old, true) : (unlink(path) < 0 ? -errno : 0);

        if (r < 0)
                log_error_errno(r, "Cannot restore %s: %m", path);
}

/* <config dir>/autoballoon.conf.d/50-weight-<vm>.conf, then checks that the configuration loads with
 * it and gives the VM that weight (a later drop-in may set it again); else the old file is put back. */
static int persist_weight(Manager *m, const char *vm, uint64_t weight, sd_bus_error *error) {
        _cleanup_free_ char *dir = NULL, *path = NULL, *old = NULL, *text = NULL;
        _cleanup_(config_freep) Config *c = NULL;
        const VMConfig *vc;
        int r;

        if (asprintf(&dir, "%s/autoballoon.conf.d", m->options.config_dir) < 0 ||
            asprintf(&path, "%s/50-weight-%s.conf", dir, vm) < 0 ||
            asprintf(&text, "# Written by \"autoballoonctl set-weight\"; remove it to drop this setting.\n"
                     "[VM %s]\nWeight=%" PRIu64 "\n", vm, weight) < 0)
                return -ENOMEM;

        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return sd_bus_error_set_errnof(error, errno, "Cannot create %s: %m", dir);
        r = read_full_file_at(AT_FDCWD, path, 64 * 1024, &old, NULL);
        if (r < 0 && r != -ENOENT)
                return sd_bus_error_set_errnof(error, r, "Cannot read %s: %m", path);
        r = write_file_atomic(path, text, true);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot write %s: %m", path);

        r = config_load(m->options.config_dir, &c);
        if (r < 0) {
                restore_file(path, old);
                return sd_bus_error_setf(error, BUS_ERROR_BAD_CONFIG,
                                         "The configuration in %s does not load (the daemon's log names the file "
                                         "and line); nothing was changed.", m->options.config_dir);
        }
        vc = config_find_vm(c, vm);
        if (!vc || vc->weight != weight) {
                const ConfigOrigin *o = config_find_origin(c, vm, "Weight");

                restore_file(path, old);
                return sd_bus_error_setf(error, BUS_ERROR_BAD_CONFIG,
                                         "Weight= of %s is set again in %s:%u, which is read after %s; nothing "
                                         "was changed.", vm, o ? o->file : "?", o ? o->line : 0, path);
        }

        /* The daemon's own configuration says so too, or the VM's next re-read of its configuration
         * (a libvirt domain's XML changing) would put the old weight back. */
        char value[32];
        const char *reason = NULL;
        (void) snprintf(value, sizeof value, "%" PRIu64, weight);
        r = config_set_vm_key(m->config, vm, "Weight", value, path, 3, &reason);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot record the weight of %s: %s", vm,
                                               reason ?: strerror(-r));

        log_info("%s: weight %" PRIu64 " written to %s", vm, weight, path);
        return 0;
}

static int method_set_weight(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name;
        uint64_t weight;
        int runtime, r;
        VM *vm;

        r = sd_bus_message_read(msg, "stb", &name, &weight, &runtime);
        if (r < 0)
                return r;
        r = check_root(msg, "set a weight", error);
        if (r < 0)
                return r;

        vm = manager_find_vm(m, name);
        if (!vm)
                return sd_bus_error_setf(error, BUS_ERROR_NO_SUCH_VM,
                                         "No VM named '%s' (autoballoonctl status lists them).", name);
        if (weight < 1 || weight > 10000)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "A weight is between 1 and 10000, not %" PRIu64 ".", weight);

        if (!runtime) {
                r = persist_weight(m, vm->name, weight, error);
                if (r < 0)
                        return r;
        }

        /* A runtime weight outlives reloads (vm_reload()); a persistent one replaces it. */
        vm->runtime_weight = runtime ? weight : 0;
        vm->config.weight = weight;
        log_notice("%s: weight set to %" PRIu64 "%s.", vm->name, weight,
                   runtime ? " until the daemon restarts" : "");
        return sd_bus_reply_method_return(msg, NULL);
}

static int set_paused(sd_bus_message *msg, Manager *m, bool paused, sd_bus_error *error) {
        int r;

        r = check_root(msg, paused ? "pause the controller" : "resume the controller", error);
        if (r < 0)
                return r;

        if (m->paused != paused) {
                m->paused = paused;
                if (paused)
                        log_notice("Paused: decisions are logged, no balloon command is sent and no cgroup "
                                   "attribute is written until resumed.");
                else
                        log_notice("Resumed.");
                m->state_dirty = true;
                manager_save_state(m);
                r = sd_bus_emit_properties_changed(sd_bus_message_get_bus(msg), BUS_PATH, BUS_INTERFACE,
                                                   "Paused", NULL);
                if (r < 0)
                        log_debug_errno(r, "Cannot signal the change of Paused: %m");
        }
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_pause(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return set_paused(msg, userdata, true, error);
}

static int method_resume(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return set_paused(msg, userdata, false, error);
}

/* ---- D-Bus: properties */

static int property_get(sd_bus *bus, const char *path, const char *interface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        if (streq(property, "Paused"))
                return sd_bus_message_append(reply, "b", (int) m->paused);
        if (streq(property, "DryRun"))
                return sd_bus_message_append(reply, "b", (int) m->options.dry_run);
        if (streq(property, "HostTotal"))
                return sd_bus_message_append(reply, "t", m->host_total);
        if (streq(property, "HostAvailable"))
                return sd_bus_message_append(reply, "t", m->host_available);
        if (streq(property, "HostPressure"))
                return sd_bus_message_append(reply, "d", manager_host_pressure(m));
        if (streq(property, "Policy"))
                return sd_bus_message_append(reply, "s", policy_mode_to_string(m->config->policy));
        if (streq(property, "MetricsFile"))
                return sd_bus_message_append(reply, "s", m->metrics_path);
        if (streq(property, "Version"))
                return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
        return -ENOENT; /* not reached: the vtable lists the properties */
}

/* The method calls check privileges themselves (check_root()), so they are all "unprivileged" to
 * sd-bus, whose own check would also let through a non-root caller with CAP_SYS_ADMIN. */
static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Paused", "b", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("DryRun", "b", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("HostTotal", "t", property_get, 0, 0),
        SD_BUS_PROPERTY("HostAvailable", "t", property_get, 0, 0),
        SD_BUS_PROPERTY("HostPressure", "d", property_get, 0, 0),
        SD_BUS_PROPERTY("Policy", "s", property_get, 0, 0),
        SD_BUS_PROPERTY("MetricsFile", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Version", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("ListVMs", SD_BUS_NO_ARGS, SD_BUS_RESULT(BUS_LIST_VMS_SIGNATURE, vms),
                                method_list_vms, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Explain", SD_BUS_ARGS("s", vm),
                                SD_BUS_RESULT("a{sv}", snapshot, "a(tsttts)", decisions),
                                method_explain, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetWeight", SD_BUS_ARGS("s", vm, "t", weight, "b", runtime), SD_BUS_NO_RESULT,
                                method_set_weight, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Pause", NULL, NULL, method_pause, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Resume", NULL, NULL, method_resume, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

static int on_disconnected(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        log_warning("Lost the connection to the bus: the D-Bus API is gone until the daemon restarts.");
        return 0;
}

static int bus_connect(Bus *b, BusType type) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        const char *what = type == BUS_SESSION ? "session" : "system";
        Manager *m = b->manager;
        int r;

        r = type == BUS_SESSION ? sd_bus_open_user(&bus) : sd_bus_open_system(&bus);
        if (r < 0)
                return log_full_errno(type == BUS_DEFAULT ? LOG_DEBUG : LOG_ERR, r,
                                      "No %s bus (%m): no D-Bus API, autoballoonctl cannot reach the daemon.", what);

        r = sd_bus_add_object_vtable(bus, NULL, BUS_PATH, BUS_INTERFACE, manager_vtable, m);
        if (r < 0)
                return log_error_errno(r, "Cannot publish %s: %m", BUS_PATH);
        r = sd_bus_match_signal(bus, NULL, "org.freedesktop.DBus.Local", "/org/freedesktop/DBus/Local",
                                "org.freedesktop.DBus.Local", "Disconnected", on_disconnected, b);
        if (r < 0)
                return log_error_errno(r, "Cannot watch the bus connection: %m");

        /* Once, at start: waiting for the bus daemon here delays nothing that runs yet. */
        r = sd_bus_request_name(bus, BUS_NAME, 0);
        if (r == -EEXIST)
                return log_error_errno(r, "Another process owns %s on the %s bus: is another autoballoond running? "
                                       "Two would fight over the same balloons.", BUS_NAME, what);
        if (r < 0)
                return log_full_errno(type == BUS_DEFAULT ? LOG_WARNING : LOG_ERR, r,
                                      "Cannot own %s on the %s bus (%m): is its policy file "
                                      "(dbus-1/system.d/org.autoballoon1.conf) installed? No D-Bus API.",
                                      BUS_NAME, what);

        r = sd_bus_attach_event(bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Cannot attach the bus to the event loop: %m");

        log_debug("Serving %s on the %s bus.", BUS_NAME, what);
        b->bus = TAKE_PTR(bus);
        return 0;
}

int bus_open(Manager *m, BusType type, Bus **ret) {
        _cleanup_(bus_freep) Bus *b = NULL;
        int r;

        b = new0(Bus, 1);
        if (!b)
                return log_oom();
        b->manager = m;

        if (type != BUS_NONE) {
                r = bus_connect(b, type);
                /* Without a system bus the daemon runs as before; a second daemon must not. */
                if (r < 0 && (type != BUS_DEFAULT || r == -EEXIST))
                        return r;
        }

        *ret = TAKE_PTR(b);
        return 0;
}

Bus *bus_free(Bus *b) {
        if (!b)
                return NULL;
        /* Flushed: a reply still queued goes out. */
        sd_bus_flush_close_unref(b->bus);
        free(b);
        return NULL;
}
