/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* autoballoonctl: the D-Bus API of autoballoond (bus.h) for people (tables) and scripts (--json). */

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <time.h>
#include <systemd/sd-bus.h>

#include "bus.h"
#include "config-paths.h"
#include "json-util.h"
#include "util.h"

static bool arg_json = false;
static bool arg_runtime = false;
static BusType arg_bus = BUS_SYSTEM;

static const char *bus_name(void) {
        return arg_bus == BUS_SESSION ? "session" : "system";
}

/* "what: message (error name)", with a hint for the errors people meet: no daemon, no privilege.
 * Returns the exit status. */
static int bus_failed(const char *what, const sd_bus_error *e, int r) {
        if (sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
                fprintf(stderr, "autoballoonctl: %s: autoballoond is not running (nobody owns %s on the %s bus).\n",
                        what, BUS_NAME, bus_name());
        else if (sd_bus_error_is_set(e))
                fprintf(stderr, "autoballoonctl: %s: %s (%s)%s\n", what, e->message ?: "failed", e->name,
                        sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED) ? "\nRun it as root." : "");
        else
                fprintf(stderr, "autoballoonctl: %s: %s\n", what, strerror(-r));
        return 1;
}

static int open_bus(sd_bus **ret) {
        int r = arg_bus == BUS_SESSION ? sd_bus_open_user(ret) : sd_bus_open_system(ret);

        if (r < 0)
                fprintf(stderr, "autoballoonctl: cannot connect to the %s bus: %s\n", bus_name(), strerror(-r));
        return r;
}

static int call(sd_bus *bus, const char *what, const char *method, sd_bus_message **reply, const char *types, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        va_list ap;
        int r;

        r = sd_bus_message_new_method_call(bus, &msg, BUS_NAME, BUS_PATH, BUS_INTERFACE, method);
        if (r >= 0 && types) {
                va_start(ap, types);
                r = sd_bus_message_appendv(msg, types, ap);
                va_end(ap);
        }
        if (r >= 0)
                r = sd_bus_call(bus, msg, 0, &error, reply);
        if (r < 0) {
                (void) bus_failed(what, &error, r);
                sd_bus_error_free(&error);
        }
        return r;
}

static int oom(void) {
        fprintf(stderr, "autoballoonctl: out of memory\n");
        return 1;
}

static int parse_failed(int r) {
        fprintf(stderr, "autoballoonctl: unexpected reply from autoballoond: %s\n", strerror(-r));
        return 1;
}

/* ---- values */

static json_object *json_u64(uint64_t v) {
        return json_object_new_uint64(v);
}

/* PSI averages have two decimals; a negative one is "not readable". */
static json_object *json_pressure(double v) {
        char buf[32];

        if (v < 0)
                return NULL;
        (void) snprintf(buf, sizeof buf, "%.2f", v);
        return json_object_new_double_s(v, buf);
}

static void print_json(json_object *o) {
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
}

static char *format_age(char *buf, size_t n, uint64_t realtime_usec) {
        struct timespec ts;
        uint64_t now, s;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        now = (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
        s = (now > realtime_usec ? now - realtime_usec : 0) / USEC_PER_SEC;
        if (s < 120)
                (void) snprintf(buf, n, "%" PRIu64 "s ago", s);
        else if (s < 2 * 3600)
                (void) snprintf(buf, n, "%" PRIu64 "min ago", s / 60);
        else
                (void) snprintf(buf, n, "%" PRIu64 "h ago", s / 3600);
        return buf;
}

static char *format_clock(char *buf, size_t n, uint64_t realtime_usec) {
        time_t t = (time_t) (realtime_usec / USEC_PER_SEC);
        struct tm tm;

        if (!localtime_r(&t, &tm) || strftime(buf, n, "%H:%M:%S", &tm) == 0)
                (void) snprintf(buf, n, "?");
        return buf;
}

/* ---- a table: cells added row by row, columns as wide as their widest cell */

typedef struct Table {
        size_t n_columns;
        char **cells;
        size_t n_cells;
} Table;

static void table_done(Table *t) {
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
}

static int table_add(Table *t, const char *s) {
        char **c = reallocarray(t->cells, t->n_cells + 1, sizeof *c);

        if (!c)
                return -ENOMEM;
        t->cells = c;
        c[t->n_cells] = strdup(s);
        if (!c[t->n_cells])
                return -ENOMEM;
        t->n_cells++;
        return 0;
}

static void table_print(const Table *t) {
        _cleanup_free_ size_t *width = new0(size_t, t->n_columns);

        if (!width)
                return;
        for (size_t i = 0; i < t->n_cells; i++)
                width[i % t->n_columns] = MAX(width[i % t->n_columns], strlen(t->cells[i]));
        for (size_t i = 0; i < t->n_cells; i++) {
                bool last = i % t->n_columns == t->n_columns - 1;

                if (last)
                        printf("%s\n", t->cells[i]);
                else
                        printf("%-*s  ", (int) width[i % t->n_columns], t->cells[i]);
        }
}

/* ---- reading a{sv} into a JSON object (key order kept) */

static int read_variant(sd_bus_message *m, json_object **ret) {
        const char *contents;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(m, 'v', contents);
        if (r < 0)
                return r;

        switch (contents[0]) {
        case 'b': {
                int b;
                r = sd_bus_message_read_basic(m, 'b', &b);
                *ret = json_object_new_boolean(b);
                break;
        }
        case 'u': {
                uint32_t u;
                r = sd_bus_message_read_basic(m, 'u', &u);
                *ret = json_u64(u);
                break;
        }
        case 't': {
                uint64_t t;
                r = sd_bus_message_read_basic(m, 't', &t);
                *ret = json_u64(t);
                break;
        }
        case 'd': {
                double d;
                r = sd_bus_message_read_basic(m, 'd', &d);
                *ret = json_pressure(d);
                break;
        }
        case 's': {
                const char *s;
                r = sd_bus_message_read_basic(m, 's', &s);
                *ret = r >= 0 ? json_object_new_string(s) : NULL;
                break;
        }
        default:
                /* A newer daemon's type: left out. */
                r = sd_bus_message_skip(m, contents);
                *ret = NULL;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static int read_dict(sd_bus_message *m, json_object *o) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                json_object *v = NULL;
                const char *key;

                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                r = read_variant(m, &v);
                if (r < 0)
                        return r;
                json_object_object_add(o, key, v);
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

/* ---- status */

/* Returns 0 or the exit status. */
static int get_properties(sd_bus *bus, json_object *props) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(bus, BUS_NAME, BUS_PATH, "org.freedesktop.DBus.Properties", "GetAll", &error, &reply,
                               "s", BUS_INTERFACE);
        if (r < 0) {
                r = bus_failed("status", &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        r = read_dict(reply, props);
        if (r < 0)
                return parse_failed(r);
        return 0;
}

static const char *get_string(json_object *o, const char *key) {
        return json_object_get_string(json_object_object_get(o, key)) ?: "?";
}

static uint64_t prop_u64(json_object *props, const char *key) {
        json_object *v;

        return json_object_object_get_ex(props, key, &v) ? json_object_get_uint64(v) : 0;
}

static bool prop_bool(json_object *props, const char *key) {
        json_object *v;

        return json_object_object_get_ex(props, key, &v) && json_object_get_boolean(v);
}

static int verb_status(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_json_ json_object *props = json_object_new_object(), *vms = json_object_new_array();
        Table table = { .n_columns = 11 };
        char a[FORMAT_BYTES_MAX], b[FORMAT_BYTES_MAX];
        json_object *pressure;
        int r;

        if (!props || !vms)
                return oom();
        r = get_properties(bus, props);
        if (r != 0)
                return r;
        if (call(bus, "status", "ListVMs", &reply, NULL) < 0)
                return 1;

        r = sd_bus_message_enter_container(reply, 'a', "(sstttttttdtss)");
        if (r < 0)
                return parse_failed(r);
        for (;;) {
                const char *name, *state, *action, *reason;
                uint64_t weight, boot, min, max, actual, target, high, when;
                json_object *vm, *last = NULL;
                bool ready;
                double psi;

                r = sd_bus_message_read(reply, "(sstttttttdtss)", &name, &state, &weight, &boot, &min, &max,
                                        &actual, &target, &high, &psi, &when, &action, &reason);
                if (r < 0)
                        return parse_failed(r);
                if (r == 0)
                        break;

                vm = json_object_new_object();
                if (!vm || json_object_array_add(vms, vm) < 0)
                        return oom();
                json_object_object_add(vm, "name", json_object_new_string(name));
                json_object_object_add(vm, "state", json_object_new_string(state));
                json_object_object_add(vm, "weight", json_u64(weight));
                /* Sizes are known once the VM was adopted. */
                ready = streq(state, "ready");
                json_object_object_add(vm, "boot_memory_bytes", ready ? json_u64(boot) : NULL);
                json_object_object_add(vm, "min_bytes", ready ? json_u64(min) : NULL);
                json_object_object_add(vm, "max_bytes", ready ? json_u64(max) : NULL);
                json_object_object_add(vm, "actual_bytes", ready ? json_u64(actual) : NULL);
                json_object_object_add(vm, "target_bytes", ready ? json_u64(target) : NULL);
                json_object_object_add(vm, "memory_high_bytes", high > 0 ? json_u64(high) : NULL);
                json_object_object_add(vm, "slice_pressure_some_avg10", json_pressure(psi));
                if (when > 0) {
                        last = json_object_new_object();
                        if (!last)
                                return oom();
                        json_object_object_add(last, "time_usec", json_u64(when));
                        json_object_object_add(last, "action", json_object_new_string(action));
                        json_object_object_add(last, "reason", json_object_new_string(reason));
                }
                json_object_object_add(vm, "last_decision", last);
        }
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return parse_failed(r);

        if (arg_json) {
                _cleanup_json_ json_object *out = json_object_new_object();

                if (!out)
                        return oom();
                json_object_object_add(out, "version", json_object_get(json_object_object_get(props, "Version")));
                json_object_object_add(out, "policy", json_object_get(json_object_object_get(props, "Policy")));
                json_object_object_add(out, "paused", json_object_get(json_object_object_get(props, "Paused")));
                json_object_object_add(out, "dry_run", json_object_get(json_object_object_get(props, "DryRun")));
                json_object_object_add(out, "host_total_bytes", json_object_get(json_object_object_get(props, "HostTotal")));
                json_object_object_add(out, "host_available_bytes",
                                       json_object_get(json_object_object_get(props, "HostAvailable")));
                json_object_object_add(out, "host_pressure_some_avg10",
                                       json_object_get(json_object_object_get(props, "HostPressure")));
                json_object_object_add(out, "metrics_file", json_object_get(json_object_object_get(props, "MetricsFile")));
                json_object_object_add(out, "vms", json_object_get(vms));
                print_json(out);
                return 0;
        }

        pressure = json_object_object_get(props, "HostPressure");
        printf("autoballoond %s: policy %s, %s, host available %s of %s, host pressure %s%s\n",
               get_string(props, "Version"), get_string(props, "Policy"),
               prop_bool(props, "DryRun") ? "dry run (nothing is changed)" :
               prop_bool(props, "Paused") ? "paused (nothing is changed)" : "running",
               format_bytes(a, sizeof a, prop_u64(props, "HostAvailable")),
               format_bytes(b, sizeof b, prop_u64(props, "HostTotal")),
               pressure ? json_object_get_string(pressure) : "?", pressure ? "% (some avg10)" : "");

        size_t n = json_object_array_length(vms);
        if (n == 0) {
                printf("No VMs.\n");
                return 0;
        }

        static const char *const header[] = { "VM", "STATE", "WEIGHT", "ACTUAL", "TARGET", "BOOT", "MIN", "MAX",
                                              "MEMORY.HIGH", "PRESSURE", "LAST DECISION" };
        static const char *const sizes[] = { "actual_bytes", "target_bytes", "boot_memory_bytes", "min_bytes",
                                             "max_bytes", "memory_high_bytes" };
        for (size_t i = 0; i < ELEMENTSOF(header); i++)
                if (table_add(&table, header[i]) < 0)
                        goto oom;
        for (size_t i = 0; i < n; i++) {
                json_object *vm = json_object_array_get_idx(vms, i), *v, *last;
                char cell[64];

                if (table_add(&table, get_string(vm, "name")) < 0 ||
                    table_add(&table, get_string(vm, "state")) < 0 ||
                    table_add(&table, get_string(vm, "weight")) < 0)
                        goto oom;
                for (size_t k = 0; k < ELEMENTSOF(sizes); k++) {
                        v = json_object_object_get(vm, sizes[k]);
                        if (table_add(&table, v ? format_bytes(cell, sizeof cell, json_object_get_uint64(v)) : "-") < 0)
                                goto oom;
                }
                v = json_object_object_get(vm, "slice_pressure_some_avg10");
                (void) snprintf(cell, sizeof cell, "%s%s", v ? json_object_get_string(v) : "-", v ? "%" : "");
                if (table_add(&table, cell) < 0)
                        goto oom;
                last = json_object_object_get(vm, "last_decision");
                if (last)
                        (void) snprintf(cell, sizeof cell, "%s, %s", get_string(last, "action"),
                                        format_age(a, sizeof a, json_object_get_uint64(json_object_object_get(last, "time_usec"))));
                if (table_add(&table, last ? cell : "-") < 0)
                        goto oom;
        }
        table_print(&table);
        table_done(&table);

        /* The reasons are long: one line each under the table. */
        for (size_t i = 0, shown = 0; i < n; i++) {
                json_object *vm = json_object_array_get_idx(vms, i), *last = json_object_object_get(vm, "last_decision");

                if (last)
                        printf("%s%s: %s: %s\n", shown++ == 0 ? "\n" : "", get_string(vm, "name"),
                               get_string(last, "action"), get_string(last, "reason"));
        }
        return 0;
oom:
        table_done(&table);
        return oom();
}

/* ---- explain */

/* A snapshot value for people: the unit is in the key (bus.h). */
static void print_snapshot_entry(const char *key, json_object *v) {
        static const struct {
                const char *suffix, *unit;
        } units[] = {
                { "_bytes_per_sec", "B/s" },
                { "_per_sec", "/s" },
                { "_bytes", "B" },
                { "_usec", "s" },
                { "_avg10", "%" },
        };
        const char *unit = NULL;
        char label[64], value[64];
        size_t l = strlen(key);

        for (size_t i = 0; i < ELEMENTSOF(units) && !unit; i++) {
                size_t k = strlen(units[i].suffix);
                if (l > k && streq(key + l - k, units[i].suffix)) {
                        unit = units[i].unit;
                        if (!streq(units[i].suffix, "_avg10"))
                                l -= k;
                }
        }
        (void) snprintf(label, sizeof label, "%.*s", (int) l, key);
        for (char *p = label; *p; p++)
                if (*p == '_')
                        *p = ' ';

        if (json_object_is_type(v, json_type_string)) {
                /* A reason ("decision now") is longer than any number. */
                printf("  %-28s %s\n", label, json_object_get_string(v));
                return;
        }
        if (json_object_is_type(v, json_type_boolean))
                (void) snprintf(value, sizeof value, "%s", json_object_get_boolean(v) ? "yes" : "no");
        else if (unit && streq(unit, "B"))
                format_bytes(value, sizeof value, json_object_get_uint64(v));
        else if (unit && streq(unit, "B/s")) {
                format_bytes(value, sizeof value - 2, json_object_get_uint64(v));
                strcat(value, "/s");
        } else if (unit && streq(unit, "s"))
                (void) snprintf(value, sizeof value, "%.1fs", (double) json_object_get_uint64(v) / USEC_PER_SEC);
        else
                (void) snprintf(value, sizeof value, "%s%s", json_object_get_string(v), unit ?: "");
        printf("  %-28s %s\n", label, value);
}

static int verb_explain(sd_bus *bus, char **args) {
        const char *name = args[0];
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_json_ json_object *snapshot = json_object_new_object(),
                *decisions = json_object_new_array();
        Table table = { .n_columns = 6 };
        char a[FORMAT_BYTES_MAX];
        int r;

        if (!snapshot || !decisions)
                return oom();

        if (call(bus, "explain", "Explain", &reply, "s", name) < 0)
                return 1;
        r = read_dict(reply, snapshot);
        if (r < 0)
                return parse_failed(r);

        r = sd_bus_message_enter_container(reply, 'a', "(tsttts)");
        if (r < 0)
                return parse_failed(r);
        for (;;) {
                const char *action, *reason;
                uint64_t when, actual, target, high;
                json_object *d;

                r = sd_bus_message_read(reply, "(tsttts)", &when, &action, &actual, &target, &high, &reason);
                if (r < 0)
                        return parse_failed(r);
                if (r == 0)
                        break;
                d = json_object_new_object();
                if (!d || json_object_array_add(decisions, d) < 0)
                        return oom();
                json_object_object_add(d, "time_usec", json_u64(when));
                json_object_object_add(d, "action", json_object_new_string(action));
                json_object_object_add(d, "actual_bytes", json_u64(actual));
                json_object_object_add(d, "target_bytes", json_u64(target));
                json_object_object_add(d, "memory_high_bytes", json_u64(high));
                json_object_object_add(d, "reason", json_object_new_string(reason));
        }

        if (arg_json) {
                _cleanup_json_ json_object *out = json_object_new_object();

                if (!out)
                        return oom();
                json_object_object_add(out, "vm", json_object_new_string(name));
                json_object_object_add(out, "snapshot", json_object_get(snapshot));
                json_object_object_add(out, "decisions", json_object_get(decisions));
                print_json(out);
                return 0;
        }

        printf("%s:\n", name);
        json_object_object_foreach(snapshot, key, v)
                if (v)
                        print_snapshot_entry(key, v);

        size_t n = json_object_array_length(decisions);
        if (n == 0) {
                printf("\nNo decision logged yet.\n");
                return 0;
        }
        printf("\nLast decisions, oldest first:\n");
        static const char *const header[] = { "TIME", "ACTION", "ACTUAL", "TARGET", "MEMORY.HIGH", "REASON" };
        for (size_t i = 0; i < ELEMENTSOF(header); i++)
                if (table_add(&table, header[i]) < 0)
                        goto oom;
        for (size_t i = 0; i < n; i++) {
                json_object *d = json_object_array_get_idx(decisions, i);
                uint64_t high = json_object_get_uint64(json_object_object_get(d, "memory_high_bytes"));
                char cell[64];

                if (table_add(&table, format_clock(cell, sizeof cell, json_object_get_uint64(json_object_object_get(d, "time_usec")))) < 0 ||
                    table_add(&table, json_object_get_string(json_object_object_get(d, "action"))) < 0 ||
                    table_add(&table, format_bytes(a, sizeof a, json_object_get_uint64(json_object_object_get(d, "actual_bytes")))) < 0 ||
                    table_add(&table, format_bytes(a, sizeof a, json_object_get_uint64(json_object_object_get(d, "target_bytes")))) < 0 ||
                    table_add(&table, high > 0 ? format_bytes(a, sizeof a, high) : "-") < 0 ||
                    table_add(&table, json_object_get_string(json_object_object_get(d, "reason"))) < 0)
                        goto oom;
        }
        table_print(&table);
        table_done(&table);
        return 0;
oom:
        table_done(&table);
        return oom();
}

/* ---- the rest */

static int verb_metrics(sd_bus *bus, char **args) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_get_property_string(bus, BUS_NAME, BUS_PATH, BUS_INTERFACE, "MetricsFile", &error, &path);
        if (r < 0) {
                r = bus_failed("metrics", &error, r);
                sd_bus_error_free(&error);
                return r;
        }
        r = read_full_file_at(AT_FDCWD, path, 16 * 1024 * 1024, &text, NULL);
        if (r < 0) {
                fprintf(stderr, "autoballoonctl: cannot read %s: %s%s\n", path, strerror(-r),
                        r == -ENOENT ? " (it is written at the daemon's first tick)" : "");
                return 1;
        }
        fputs(text, stdout);
        return 0;
}

static int verb_set_weight(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *vm = args[0], *weight = args[1];
        uint64_t w;

        if (safe_atou64(weight, &w) < 0) {
                fprintf(stderr, "autoballoonctl: invalid weight '%s': a number from 1 to 10000\n", weight);
                return 2;
        }
        return call(bus, "set-weight", "SetWeight", &reply, "stb", vm, w, (int) arg_runtime) < 0 ? 1 : 0;
}

static int simple(sd_bus *bus, const char *what, const char *method) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;

        return call(bus, what, method, &reply, NULL) < 0 ? 1 : 0;
}

static int verb_pause(sd_bus *bus, char **args) {
        return simple(bus, "pause", "Pause");
}

static int verb_resume(sd_bus *bus, char **args) {
        return simple(bus, "resume", "Resume");
}

/* The commands: the arguments after the verb, and what runs them. */
typedef struct Verb {
        const char *name;
        unsigned min_args, max_args;
        int (*fn)(sd_bus *bus, char **args);
} Verb;

static const Verb verbs[] = {
        { "status",     0, 0, verb_status },
        { "set-weight", 2, 2, verb_set_weight },
        { "pause",      0, 0, verb_pause },
        { "resume",     0, 0, verb_resume },
        { "explain",    1, 1, verb_explain },
        { "metrics",    0, 0, verb_metrics },
};

static void help(void) {
        printf("autoballoonctl [OPTIONS...] COMMAND ...\n\n"
               "Control and inspect autoballoond.\n\n"
               "Commands:\n"
               "  status                 The VMs: sizes, memory.high, pressure, last decision\n"
               "  set-weight VM WEIGHT   Set a VM's weight (1..10000), persistently unless --runtime\n"
               "  pause                  Stop changing anything; decisions are still logged\n"
               "  resume                 Start changing again\n"
               "  explain VM             The numbers behind a VM's decisions, and its last decisions\n"
               "  metrics                Print the OpenMetrics file\n\n"
               "Options:\n"
               "  -h --help              Show this help\n"
               "     --version           Show the version\n"
               "     --json              JSON output (status, explain)\n"
               "     --runtime           set-weight: until the daemon restarts only\n"
               "     --bus=BUS           system (default) or session\n"
               "\nSee autoballoonctl(1).\n");
}

int main(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_JSON, ARG_RUNTIME, ARG_BUS };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "json", no_argument, NULL, ARG_JSON },
                { "runtime", no_argument, NULL, ARG_RUNTIME },
                { "bus", required_argument, NULL, ARG_BUS },
                {}
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        const Verb *verb = NULL;
        unsigned n_args;
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("autoballoonctl %s\n", PACKAGE_VERSION);
                        return 0;
                case ARG_JSON:
                        arg_json = true;
                        break;
                case ARG_RUNTIME:
                        arg_runtime = true;
                        break;
                case ARG_BUS:
                        if (streq(optarg, "system"))
                                arg_bus = BUS_SYSTEM;
                        else if (streq(optarg, "session"))
                                arg_bus = BUS_SESSION;
                        else {
                                fprintf(stderr, "autoballoonctl: unknown bus '%s' (system or session)\n", optarg);
                                return 2;
                        }
                        break;
                default:
                        return 2;
                }

        if (optind >= argc) {
                fprintf(stderr, "autoballoonctl: which command? (autoballoonctl --help lists them)\n");
                return 2;
        }
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(argv[optind], verbs[i].name))
                        verb = &verbs[i];
        if (!verb) {
                fprintf(stderr, "autoballoonctl: unknown command '%s' (autoballoonctl --help lists them)\n",
                        argv[optind]);
                return 2;
        }
        optind++;
        n_args = (unsigned) (argc - optind);
        if (n_args < verb->min_args || n_args > verb->max_args) {
                if (verb->min_args == verb->max_args)
                        fprintf(stderr, "autoballoonctl: %s takes %u argument%s, not %u\n", verb->name,
                                verb->min_args, verb->min_args == 1 ? "" : "s", n_args);
                else
                        fprintf(stderr, "autoballoonctl: %s takes %u to %u arguments, not %u\n", verb->name,
                                verb->min_args, verb->max_args, n_args);
                return 2;
        }
        if (arg_runtime && verb->fn != verb_set_weight) {
                fprintf(stderr, "autoballoonctl: --runtime is for set-weight only\n");
                return 2;
        }

        if (open_bus(&bus) < 0)
                return 1;

        return verb->fn(bus, argv + optind);
}
