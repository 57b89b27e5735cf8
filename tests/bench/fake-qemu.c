/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* fake-qemu: a stand-in for QEMU in the scale benchmarks; it is not QEMU and runs no guest. One
 * process serves one QMP socket, <dir>/<name>.sock, per simulated VM, in one epoll loop, and answers
 * the commands autoballoond sends with what QEMU 7.2 (or 10.0) answers: the greeting, qmp_capabilities,
 * query-memory-size-summary, qom-list, qom-set/qom-get of the balloon's guest stats, query-balloon,
 * balloon, and BALLOON_CHANGE events throttled to one a second as QEMU's monitor does.
 * tests/integration/test_fake_qemu.py checks the replies' shapes against a real QEMU's.
 *
 * The simulated guest: its balloon moves towards the target at a set rate, never below what the guest
 * uses (a guest cannot give up memory it uses: the balloon stalls there), and its stats (the guest's
 * used and cached memory, swap and fault counters) follow a script. Not QEMU in what is left out: one
 * balloon device, no other commands, and a message that is not JSON closes the connection. Not
 * installed. See tests/bench/README.md. */

#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "qmp.h"
#include "util.h"

#define PAGE_SIZE UINT64_C(4096)
/* How often moving balloons advance; a real guest's driver reports its balloon every 1 MiB. */
#define TICK_USEC (10 * USEC_PER_MSEC)
/* QEMU's monitor sends at most one BALLOON_CHANGE a second, the newest one held back meanwhile. */
#define EVENT_THROTTLE_USEC USEC_PER_SEC
#define BALLOON_QOM_PATH "/machine/peripheral/balloon0"

/* What a VM line or a step of the script sets: sizes in bytes, rate in bytes per second, counters as
 * the guest reports them (swap in bytes, faults in numbers). */
typedef struct Guest {
        uint64_t boot, actual, rate, used, cache, reserved;
        uint64_t swap_in, swap_out, major_faults, minor_faults;
} Guest;

static const struct {
        const char *name;
        size_t offset;
        bool size;
        bool at_start; /* only on a "vm" line: the VM's shape, not its life */
} guest_keys[] = {
        { "boot",         offsetof(Guest, boot),         true,  true  },
        { "actual",       offsetof(Guest, actual),       true,  true  },
        { "rate",         offsetof(Guest, rate),         true,  false },
        { "used",         offsetof(Guest, used),         true,  false },
        { "cache",        offsetof(Guest, cache),        true,  false },
        { "reserved",     offsetof(Guest, reserved),     true,  false },
        { "swap-in",      offsetof(Guest, swap_in),      false, false },
        { "swap-out",     offsetof(Guest, swap_out),     false, false },
        { "major-faults", offsetof(Guest, major_faults), false, false },
        { "minor-faults", offsetof(Guest, minor_faults), false, false },
};

typedef struct Step {
        uint64_t at_usec;
        char *pattern;
        size_t n;
        struct {
                size_t key;
                uint64_t value;
        } set[ELEMENTSOF(guest_keys)];
} Step;

typedef enum SourceKind { SOURCE_LISTEN, SOURCE_CONN } SourceKind;

typedef struct VM VM;
typedef struct Source {
        SourceKind kind;
        VM *vm;
} Source;

struct VM {
        char *name;
        Guest g;
        uint64_t target;

        /* Balloon motion and the event throttle. */
        bool active;            /* moving, or an event held back: the tick timer runs */
        uint64_t moved_usec;    /* last time the balloon advanced */
        uint64_t event_window_end_usec;
        bool event_pending;

        /* Guest stats: the guest answers every interval seconds from sched_start_usec on. */
        uint64_t interval_sec;
        uint64_t sched_start_usec;
        uint64_t last_sample_usec; /* the newest sample of a schedule that ended, 0 for none */

        /* One QMP client at a time, as QEMU serves a monitor socket. */
        int listen_fd, conn_fd;
        Source listen_src, conn_src;
        bool negotiated;
        bool watching_out;      /* EPOLLOUT requested: replies wait in out */
        QmpParser *parser;
        char *out;
        size_t out_size, out_allocated;

        /* For the report. */
        uint64_t balloons, stats_reads, prev_read_usec, prev_sample_usec, max_gap_usec, max_age_usec;
};

typedef struct BalloonLog {
        uint64_t usec, value;
        size_t vm;
} BalloonLog;

static struct {
        const char *version;    /* "7.2" or "10.0" */
        int epoll_fd;
        int timer_fd;
        uint64_t start_usec;
        VM *vms;
        size_t n_vms;
        size_t n_active;
        Step *steps;
        size_t n_steps, next_step;
        BalloonLog *log;
        size_t n_log, log_allocated;
} sim = { .version = "7.2", .epoll_fd = -EBADF, .timer_fd = -EBADF };

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        (void) clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- Output ---- */

static void conn_close(VM *vm);

static int conn_update_events(VM *vm) {
        struct epoll_event ev = {
                .events = EPOLLIN | (vm->out_size > 0 ? EPOLLOUT : 0),
                .data.ptr = &vm->conn_src,
        };

        if (vm->watching_out == (vm->out_size > 0))
                return 0;
        if (epoll_ctl(sim.epoll_fd, EPOLL_CTL_MOD, vm->conn_fd, &ev) < 0)
                return -errno;
        vm->watching_out = vm->out_size > 0;
        return 0;
}

static int conn_flush(VM *vm) {
        int r = send_pending(vm->conn_fd, vm->out, &vm->out_size);
        if (r < 0)
                return r;
        return conn_update_events(vm);
}

/* Sends one message as QEMU frames it, "\r\n" after each; consumes m. */
static void conn_send(VM *vm, json_object *m) {
        _cleanup_json_ json_object *msg = m;
        const char *s;
        size_t l;

        if (vm->conn_fd < 0)
                return;
        s = msg ? json_object_to_json_string_ext(msg, JSON_C_TO_STRING_SPACED) : NULL;
        if (!s) {
                log_oom();
                conn_close(vm);
                return;
        }
        l = strlen(s);
        if (vm->out_size + l + 2 > vm->out_allocated) {
                size_t n = MAX(vm->out_allocated * 2, vm->out_size + l + 2);
                char *p = realloc(vm->out, n);
                if (!p) {
                        log_oom();
                        conn_close(vm);
                        return;
                }
                vm->out = p;
                vm->out_allocated = n;
        }
        memcpy(vm->out + vm->out_size, s, l);
        memcpy(vm->out + vm->out_size + l, "\r\n", 2);
        vm->out_size += l + 2;
        if (conn_flush(vm) < 0)
                conn_close(vm);
}

/* json_object_object_add() that takes NULL for a failed allocation; the caller checks the whole
 * message once (conn_send() takes NULL as out of memory). */
static json_object *add(json_object *o, const char *key, json_object *v) {
        if (!o || !v || json_object_object_add(o, key, v) < 0) {
                json_object_put(o);
                json_object_put(v);
                return NULL;
        }
        return o;
}

/* Key order as QEMU's: "return" before "id", "id" before "error". */
static void reply_return(VM *vm, json_object *id, json_object *ret) {
        json_object *m = add(json_object_new_object(), "return", ret);
        if (id)
                m = add(m, "id", json_object_get(id));
        conn_send(vm, m);
}

static void reply_error(VM *vm, json_object *id, const char *class, const char *format, ...) _printf_(4, 5);
static void reply_error(VM *vm, json_object *id, const char *class, const char *format, ...) {
        _cleanup_free_ char *desc = NULL;
        json_object *m = json_object_new_object(), *e;
        va_list ap;

        va_start(ap, format);
        if (vasprintf(&desc, format, ap) < 0)
                desc = NULL;
        va_end(ap);
        if (id)
                m = add(m, "id", json_object_get(id));
        e = add(add(json_object_new_object(), "class", json_object_new_string(class)), "desc",
                desc ? json_object_new_string(desc) : NULL);
        conn_send(vm, add(m, "error", e));
}

/* ---- The balloon ---- */

static void vm_emit_balloon_change(VM *vm, uint64_t now) {
        uint64_t wall = now_usec(CLOCK_REALTIME);
        json_object *ts = add(add(json_object_new_object(), "seconds", json_object_new_int64(wall / USEC_PER_SEC)),
                              "microseconds", json_object_new_int64(wall % USEC_PER_SEC));
        json_object *m = add(add(add(json_object_new_object(), "timestamp", ts), "event",
                                 json_object_new_string("BALLOON_CHANGE")),
                             "data", add(json_object_new_object(), "actual", json_object_new_uint64(vm->g.actual)));

        vm->event_window_end_usec = now + EVENT_THROTTLE_USEC;
        vm->event_pending = false;
        /* Events go to a monitor in command mode only; without one they are lost, as in QEMU. */
        if (vm->negotiated)
                conn_send(vm, m);
        else
                json_object_put(m);
}

static void vm_balloon_changed(VM *vm, uint64_t now) {
        if (now >= vm->event_window_end_usec)
                vm_emit_balloon_change(vm, now);
        else
                vm->event_pending = true;
}

/* The lowest the balloon can take the guest: what it uses and keeps to itself. */
static uint64_t vm_floor(const VM *vm) {
        return MIN(vm->g.used + vm->g.reserved, vm->g.boot);
}

static bool vm_moving(const VM *vm) {
        if (vm->g.actual > vm->target)
                return vm->g.actual > vm_floor(vm);
        return vm->g.actual < vm->target;
}

static void vm_update_active(VM *vm, uint64_t now) {
        bool active = vm_moving(vm) || vm->event_pending;

        if (active == vm->active)
                return;
        if (active) {
                vm->moved_usec = now;
                sim.n_active++;
        } else
                sim.n_active--;
        vm->active = active;
}

static void vm_advance(VM *vm, uint64_t now) {
        if (vm_moving(vm)) {
                uint64_t step = vm->g.rate * (now - vm->moved_usec) / USEC_PER_SEC, next;

                if (vm->g.actual > vm->target) {
                        uint64_t lowest = MAX(vm->target, vm_floor(vm));
                        next = vm->g.actual - MIN(step, vm->g.actual - lowest);
                } else
                        next = vm->g.actual + MIN(step, vm->target - vm->g.actual);
                /* Whole pages; a step under a page accumulates until the next tick. */
                if (next != vm->target && next != vm_floor(vm))
                        next = vm->g.actual > next ? vm->g.actual - (vm->g.actual - next) / PAGE_SIZE * PAGE_SIZE
                                                   : vm->g.actual + (next - vm->g.actual) / PAGE_SIZE * PAGE_SIZE;
                if (next != vm->g.actual) {
                        vm->g.actual = next;
                        vm->moved_usec = now;
                        vm_balloon_changed(vm, now);
                }
        }
        if (vm->event_pending && now >= vm->event_window_end_usec)
                vm_emit_balloon_change(vm, now);
        vm_update_active(vm, now);
}

/* ---- Guest stats ---- */

/* When the guest last answered the stats request, 0 if never. */
static uint64_t vm_stats_sample(const VM *vm, uint64_t now) {
        if (vm->interval_sec == 0 || now < vm->sched_start_usec)
                return vm->last_sample_usec;
        uint64_t period = vm->interval_sec * USEC_PER_SEC;
        return vm->sched_start_usec + (now - vm->sched_start_usec) / period * period;
}

/* As QEMU's timer: set from 0, the first request goes out at once; changed, after the new interval;
 * 0 stops it, the last stats staying. */
static void vm_set_interval(VM *vm, uint64_t interval, uint64_t now) {
        vm->last_sample_usec = vm_stats_sample(vm, now);
        vm->sched_start_usec = vm->interval_sec == 0 ? now : now + interval * USEC_PER_SEC;
        vm->interval_sec = interval;
}

static json_object *vm_guest_stats(VM *vm, uint64_t now) {
        static const char *const names_72[] = {
                "stat-swap-in", "stat-swap-out", "stat-major-faults", "stat-minor-faults",
                "stat-free-memory", "stat-total-memory", "stat-available-memory", "stat-disk-caches",
                "stat-htlb-pgalloc", "stat-htlb-pgfail",
        };
        /* QEMU 9.2 added the counters of Linux 6.12; Linux 6.1 guests leave them unset. */
        static const char *const names_92[] = {
                "stat-oom-kills", "stat-alloc-stalls", "stat-async-scans", "stat-direct-scans",
                "stat-async-reclaims", "stat-direct-reclaims",
        };
        uint64_t sample = vm_stats_sample(vm, now);
        const Guest *g = &vm->g;
        /* The balloon's pages leave MemTotal; the cache gives way to what the guest uses. */
        uint64_t total = g->actual > g->reserved ? g->actual - g->reserved : 0;
        uint64_t used = MIN(g->used, total), cache = MIN(g->cache, total - used);
        uint64_t values[ELEMENTSOF(names_72)] = {
                g->swap_in, g->swap_out, g->major_faults, g->minor_faults,
                total - used - cache, total, total - used, cache, 0, 0,
        };
        json_object *stats = json_object_new_object();

        for (size_t i = 0; i < ELEMENTSOF(names_72); i++)
                stats = add(stats, names_72[i], json_object_new_uint64(sample > 0 ? values[i] : UINT64_MAX));
        if (streq(sim.version, "10.0"))
                for (size_t i = 0; i < ELEMENTSOF(names_92); i++)
                        stats = add(stats, names_92[i], json_object_new_uint64(UINT64_MAX));

        /* last-update is the host's wall clock, in seconds, when the guest's answer came. */
        uint64_t last_update = sample > 0 ? (now_usec(CLOCK_REALTIME) - (now - sample)) / USEC_PER_SEC : 0;

        if (sample > 0) {
                if (vm->prev_read_usec > 0 && vm->prev_sample_usec > 0) {
                        vm->max_gap_usec = MAX(vm->max_gap_usec, now - vm->prev_read_usec);
                        vm->max_age_usec = MAX(vm->max_age_usec, now - vm->prev_sample_usec);
                }
                vm->prev_read_usec = now;
                vm->prev_sample_usec = sample;
        }
        vm->stats_reads++;
        return add(add(json_object_new_object(), "stats", stats), "last-update", json_object_new_int64(last_update));
}

/* ---- Commands ---- */

static json_object *qom_list_entry(const char *name, const char *type) {
        return add(add(json_object_new_object(), "name", json_object_new_string(name)),
                   "type", json_object_new_string(type));
}

static bool arg_string(json_object *args, const char *key, const char **ret) {
        json_object *v;

        if (!json_object_object_get_ex(args, key, &v) || !json_object_is_type(v, json_type_string))
                return false;
        *ret = json_object_get_string(v);
        return true;
}

static void cmd_qom(VM *vm, const char *command, json_object *args, json_object *id, uint64_t now) {
        const char *path, *property;
        json_object *v;

        if (!arg_string(args, "path", &path)) {
                reply_error(vm, id, "GenericError", "Parameter 'path' is missing");
                return;
        }

        if (streq(command, "qom-list")) {
                json_object *list = json_object_new_array();

                if (!IN_SET_STR(path, "/machine/peripheral", "/machine/peripheral-anon")) {
                        json_object_put(list);
                        reply_error(vm, id, "DeviceNotFound", "Device '%s' not found", path);
                        return;
                }
                if (list && json_object_array_add(list, qom_list_entry("type", "string")) < 0)
                        list = NULL;
                if (list && streq(path, "/machine/peripheral") &&
                    json_object_array_add(list, qom_list_entry("balloon0", "child<virtio-balloon-pci>")) < 0)
                        list = NULL;
                reply_return(vm, id, list);
                return;
        }

        if (!streq(path, BALLOON_QOM_PATH)) {
                reply_error(vm, id, "DeviceNotFound", "Device '%s' not found", path);
                return;
        }
        if (!arg_string(args, "property", &property)) {
                reply_error(vm, id, "GenericError", "Parameter 'property' is missing");
                return;
        }

        if (streq(command, "qom-get")) {
                if (streq(property, "guest-stats"))
                        reply_return(vm, id, vm_guest_stats(vm, now));
                else if (streq(property, "guest-stats-polling-interval"))
                        reply_return(vm, id, json_object_new_int64((int64_t) vm->interval_sec));
                else
                        reply_error(vm, id, "GenericError", "Property 'virtio-balloon-pci.%s' not found", property);
                return;
        }

        if (!streq(property, "guest-stats-polling-interval")) {
                reply_error(vm, id, "GenericError", "Property 'virtio-balloon-pci.%s' not found", property);
                return;
        }
        if (!json_object_object_get_ex(args, "value", &v) || !json_object_is_type(v, json_type_int)) {
                reply_error(vm, id, "GenericError", "Invalid parameter type for '%s', expected: integer", property);
                return;
        }
        int64_t value = json_object_get_int64(v);
        if (value < 0) {
                reply_error(vm, id, "GenericError", "timer value must be greater than zero");
                return;
        }
        if ((uint64_t) value > UINT32_MAX) {
                reply_error(vm, id, "GenericError", "timer value is too big");
                return;
        }
        if ((uint64_t) value != vm->interval_sec)
                vm_set_interval(vm, (uint64_t) value, now);
        reply_return(vm, id, json_object_new_object());
}

static void cmd_balloon(VM *vm, json_object *args, json_object *id, uint64_t now) {
        json_object *v;

        if (!json_object_object_get_ex(args, "value", &v)) {
                reply_error(vm, id, "GenericError", "Parameter 'value' is missing");
                return;
        }
        if (!json_object_is_type(v, json_type_int)) {
                reply_error(vm, id, "GenericError", "Invalid parameter type for 'value', expected: integer");
                return;
        }
        int64_t value = json_object_get_int64(v);
        if (value <= 0) {
                reply_error(vm, id, "GenericError", "Parameter 'target' expects a size");
                return;
        }

        /* QEMU asks the guest for whole pages, and for no more than its RAM. */
        uint64_t target = MIN((uint64_t) value, vm->g.boot);
        vm->target = vm->g.boot - (vm->g.boot - target) / PAGE_SIZE * PAGE_SIZE;
        vm_update_active(vm, now);

        vm->balloons++;
        if (sim.n_log >= sim.log_allocated) {
                size_t n = MAX(sim.log_allocated * 2, (size_t) 1024);
                BalloonLog *l = reallocarray(sim.log, n, sizeof *l);
                if (l) {
                        sim.log = l;
                        sim.log_allocated = n;
                }
        }
        if (sim.n_log < sim.log_allocated)
                sim.log[sim.n_log++] = (BalloonLog) { .usec = now, .value = (uint64_t) value, .vm = vm - sim.vms };
        reply_return(vm, id, json_object_new_object());
}

static void handle_message(VM *vm, json_object *m) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        json_object *id = NULL, *args = NULL, *v;
        const char *command;

        (void) json_object_object_get_ex(m, "id", &id);
        if (!arg_string(m, "execute", &command)) {
                reply_error(vm, id, "GenericError", "QMP input lacks member 'execute'");
                return;
        }
        if (json_object_object_get_ex(m, "arguments", &v)) {
                if (!json_object_is_type(v, json_type_object)) {
                        reply_error(vm, id, "GenericError", "QMP input member 'arguments' must be an object");
                        return;
                }
                args = v;
        }

        if (!vm->negotiated) {
                if (!streq(command, "qmp_capabilities")) {
                        reply_error(vm, id, "CommandNotFound",
                                    "Expecting capabilities negotiation with 'qmp_capabilities'");
                        return;
                }
                vm->negotiated = true;
                reply_return(vm, id, json_object_new_object());
                return;
        }

        if (streq(command, "qmp_capabilities"))
                reply_error(vm, id, "CommandNotFound", "Capabilities negotiation is already complete, command ignored");
        else if (streq(command, "query-memory-size-summary"))
                reply_return(vm, id, add(add(json_object_new_object(), "base-memory", json_object_new_uint64(vm->g.boot)),
                                         "plugged-memory", json_object_new_uint64(0)));
        else if (streq(command, "query-balloon"))
                reply_return(vm, id, add(json_object_new_object(), "actual", json_object_new_uint64(vm->g.actual)));
        else if (streq(command, "balloon"))
                cmd_balloon(vm, args, id, now);
        else if (IN_SET_STR(command, "qom-list", "qom-get", "qom-set"))
                cmd_qom(vm, command, args, id, now);
        else
                reply_error(vm, id, "CommandNotFound", "The command %s has not been found", command);
}

/* ---- Connections ---- */

static int epoll_add(int fd, uint32_t events, void *ptr) {
        struct epoll_event ev = { .events = events, .data.ptr = ptr };
        return epoll_ctl(sim.epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void conn_close(VM *vm) {
        if (vm->conn_fd < 0)
                return;
        (void) epoll_ctl(sim.epoll_fd, EPOLL_CTL_DEL, vm->conn_fd, NULL);
        vm->conn_fd = safe_close(vm->conn_fd);
        vm->parser = qmp_parser_free(vm->parser);
        vm->out_size = 0;
        vm->negotiated = vm->watching_out = false;
        /* The next client may connect now. */
        if (epoll_add(vm->listen_fd, EPOLLIN, &vm->listen_src) < 0)
                log_error_errno(errno, "%s: cannot watch the listening socket again: %m", vm->name);
}

static void conn_accept(VM *vm) {
        int fd = accept4(vm->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), r;

        if (fd < 0)
                return;
        /* QEMU serves one client per monitor: the next waits in the backlog, without a greeting. */
        (void) epoll_ctl(sim.epoll_fd, EPOLL_CTL_DEL, vm->listen_fd, NULL);
        vm->conn_fd = fd;
        r = qmp_parser_new(QMP_MAX_MESSAGE, &vm->parser);
        if (r >= 0)
                r = epoll_add(fd, EPOLLIN, &vm->conn_src);
        if (r < 0) {
                log_error_errno(r, "%s: cannot serve a client: %m", vm->name);
                conn_close(vm);
                return;
        }

        int major = streq(sim.version, "10.0") ? 10 : 7, minor = major == 10 ? 0 : 2;
        json_object *version = add(add(add(json_object_new_object(), "micro", json_object_new_int(0)),
                                       "minor", json_object_new_int(minor)),
                                   "major", json_object_new_int(major));
        json_object *caps = json_object_new_array();
        if (caps && json_object_array_add(caps, json_object_new_string("oob")) < 0)
                caps = NULL;
        json_object *qmp = add(add(json_object_new_object(), "version",
                                   add(add(json_object_new_object(), "qemu", version),
                                       "package", json_object_new_string("fake-qemu"))),
                               "capabilities", caps);
        conn_send(vm, add(json_object_new_object(), "QMP", qmp));
}

static void conn_read(VM *vm) {
        char buf[16 * 1024];
        ssize_t n = recv(vm->conn_fd, buf, sizeof buf, MSG_DONTWAIT);

        if (n < 0 && IN_SET(errno, EAGAIN, EINTR))
                return;
        if (n <= 0 || qmp_parser_feed(vm->parser, buf, n) < 0) {
                conn_close(vm);
                return;
        }
        while (vm->parser) {
                _cleanup_json_ json_object *m = NULL;

                if (qmp_parser_next(vm->parser, &m) <= 0)
                        break;
                handle_message(vm, m);
        }
}

static int vm_listen(VM *vm, const char *dir) {
        union {
                struct sockaddr sa;
                struct sockaddr_un un;
        } sa = { .un.sun_family = AF_UNIX };
        int r;

        if ((size_t) snprintf(sa.un.sun_path, sizeof sa.un.sun_path, "%s/%s.sock", dir, vm->name) >=
            sizeof sa.un.sun_path)
                return log_error_errno(-ENAMETOOLONG, "%s/%s.sock: path too long for a socket", dir, vm->name);
        (void) unlink(sa.un.sun_path);

        vm->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (vm->listen_fd < 0)
                return log_error_errno(errno, "socket(): %m");
        if (bind(vm->listen_fd, &sa.sa, sizeof sa.un) < 0 || listen(vm->listen_fd, 1) < 0)
                return log_error_errno(errno, "%s: cannot listen: %m", sa.un.sun_path);
        r = epoll_add(vm->listen_fd, EPOLLIN, &vm->listen_src);
        if (r < 0)
                return log_error_errno(r, "epoll_ctl(): %m");
        return 0;
}

/* ---- The script ---- */

static VM *vm_find(const char *name) {
        for (size_t i = 0; i < sim.n_vms; i++)
                if (streq(sim.vms[i].name, name))
                        return &sim.vms[i];
        return NULL;
}

static int vm_add(const char *name, const Guest *g) {
        VM *vms;

        if (vm_find(name))
                return -EEXIST;
        vms = reallocarray(sim.vms, sim.n_vms + 1, sizeof *vms);
        if (!vms)
                return -ENOMEM;
        sim.vms = vms;
        sim.vms[sim.n_vms] = (VM) { .g = *g, .listen_fd = -EBADF, .conn_fd = -EBADF };
        sim.vms[sim.n_vms].name = strdup(name);
        if (!sim.vms[sim.n_vms].name)
                return -ENOMEM;
        sim.n_vms++;
        return 0;
}

/* "key=value": the key's index in guest_keys and the value. */
static int parse_assignment(const char *s, bool at_start, size_t *ret_key, uint64_t *ret_value) {
        const char *eq = strchr(s, '=');

        if (!eq)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(guest_keys); i++) {
                uint64_t v;
                int r;

                if (strlen(guest_keys[i].name) != (size_t) (eq - s) || strncmp(guest_keys[i].name, s, eq - s) != 0)
                        continue;
                if (guest_keys[i].at_start && !at_start)
                        return -EINVAL;
                r = guest_keys[i].size ? parse_size(eq + 1, false, &v, NULL) : safe_atou64(eq + 1, &v);
                if (r < 0)
                        return r;
                *ret_key = i;
                *ret_value = v;
                return 0;
        }
        return -EINVAL;
}

static void guest_set(Guest *g, size_t key, uint64_t value) {
        *(uint64_t *) ((char *) g + guest_keys[key].offset) = value;
}

static int parse_script_line(char *line, const Guest *defaults) {
        char *save = NULL, *word = strtok_r(line, " \t\n", &save), *w;
        size_t key;
        uint64_t value;
        int r;

        if (!word || word[0] == '#')
                return 0;

        if (streq(word, "vm")) {
                Guest g = *defaults;
                const char *name = strtok_r(NULL, " \t\n", &save);
                bool actual_set = false;

                if (!name)
                        return -EINVAL;
                while ((w = strtok_r(NULL, " \t\n", &save))) {
                        r = parse_assignment(w, true, &key, &value);
                        if (r < 0)
                                return r;
                        guest_set(&g, key, value);
                        actual_set = actual_set || streq(guest_keys[key].name, "actual");
                }
                if (!actual_set)
                        g.actual = g.boot;
                return vm_add(name, &g);
        }

        if (streq(word, "at")) {
                const char *at = strtok_r(NULL, " \t\n", &save), *pattern = strtok_r(NULL, " \t\n", &save);
                Step s = {};
                Step *steps;

                if (!at || !pattern)
                        return -EINVAL;
                r = parse_time_usec(at, &s.at_usec);
                if (r < 0)
                        return r;
                while ((w = strtok_r(NULL, " \t\n", &save))) {
                        r = parse_assignment(w, false, &s.set[s.n].key, &s.set[s.n].value);
                        if (r < 0)
                                return r;
                        if (++s.n == ELEMENTSOF(s.set))
                                return -E2BIG;
                }
                s.pattern = strdup(pattern);
                steps = reallocarray(sim.steps, sim.n_steps + 1, sizeof *steps);
                if (!s.pattern || !steps) {
                        free(s.pattern);
                        return -ENOMEM;
                }
                sim.steps = steps;
                sim.steps[sim.n_steps++] = s;
                return 0;
        }
        return -EINVAL;
}

static int parse_script(const char *path, const Guest *defaults) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        _cleanup_free_ char *line = NULL;
        size_t allocated = 0;
        unsigned n = 0;
        int r;

        if (!f)
                return log_error_errno(errno, "Cannot open %s: %m", path);
        while (getline(&line, &allocated, f) >= 0) {
                n++;
                r = parse_script_line(line, defaults);
                if (r < 0)
                        return log_error_errno(r, "%s:%u: invalid line (%m)", path, n);
        }
        for (size_t i = 1; i < sim.n_steps; i++)
                if (sim.steps[i].at_usec < sim.steps[i - 1].at_usec)
                        return log_error_errno(EINVAL, "%s: \"at\" lines must come in time order", path);
        return 0;
}

static void run_steps(uint64_t now) {
        for (; sim.next_step < sim.n_steps && sim.start_usec + sim.steps[sim.next_step].at_usec <= now; sim.next_step++) {
                const Step *s = &sim.steps[sim.next_step];

                for (size_t i = 0; i < sim.n_vms; i++) {
                        VM *vm = &sim.vms[i];

                        if (fnmatch(s->pattern, vm->name, 0) != 0)
                                continue;
                        if (vm->active)
                                vm_advance(vm, now); /* the old rate up to now */
                        for (size_t k = 0; k < s->n; k++)
                                guest_set(&vm->g, s->set[k].key, s->set[k].value);
                        vm_update_active(vm, now);
                }
        }
}

/* ---- Main loop ---- */

static int arm_timer(uint64_t now) {
        uint64_t next = UINT64_MAX;
        struct itimerspec its = {};

        if (sim.n_active > 0)
                next = now + TICK_USEC;
        if (sim.next_step < sim.n_steps)
                next = MIN(next, sim.start_usec + sim.steps[sim.next_step].at_usec);
        if (next != UINT64_MAX) {
                next = MAX(next, now + 1);
                its.it_value = (struct timespec) { .tv_sec = next / USEC_PER_SEC, .tv_nsec = next % USEC_PER_SEC * 1000 };
        }
        return timerfd_settime(sim.timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0 ? -errno : 0;
}

/* Every balloon back to its full size at once, as if someone deflated them from another monitor. */
static void deflate_all(uint64_t now) {
        for (size_t i = 0; i < sim.n_vms; i++) {
                VM *vm = &sim.vms[i];

                vm->target = vm->g.boot;
                if (vm->g.actual != vm->g.boot) {
                        vm->g.actual = vm->g.boot;
                        vm_balloon_changed(vm, now);
                }
                vm_update_active(vm, now);
        }
}

static void write_report(FILE *f) {
        for (size_t i = 0; i < sim.n_vms; i++) {
                const VM *vm = &sim.vms[i];
                fprintf(f, "vm\t%s\tballoons=%" PRIu64 "\tstats_reads=%" PRIu64 "\tinterval_sec=%" PRIu64
                        "\tmax_gap_usec=%" PRIu64 "\tmax_age_usec=%" PRIu64 "\tactual=%" PRIu64 "\n",
                        vm->name, vm->balloons, vm->stats_reads, vm->interval_sec, vm->max_gap_usec,
                        vm->max_age_usec, vm->g.actual);
        }
        for (size_t i = 0; i < sim.n_log; i++)
                fprintf(f, "balloon\t%" PRIu64 "\t%s\t%" PRIu64 "\n", sim.log[i].usec, sim.vms[sim.log[i].vm].name,
                        sim.log[i].value);
        fflush(f);
}

static void help(void) {
        printf("fake-qemu --dir=DIR [OPTIONS...]\n\n"
               "A stand-in for QEMU, not QEMU: serves DIR/NAME.sock, a QMP monitor of a simulated VM with\n"
               "a virtio-balloon device, for each VM. Prints \"ready N\" once every socket listens.\n"
               "SIGUSR1 deflates every balloon at once; SIGTERM or SIGINT writes the report and exits.\n\n"
               "  -h --help            Show this help\n"
               "     --dir=DIR         Where the sockets go (autoballoond's <RuntimeDir>/qmp)\n"
               "     --vms=N           VMs vm1..vmN with the defaults below, besides the script's\n"
               "     --script=FILE     VMs and their life (see below)\n"
               "     --qemu=VERSION    7.2 (default) or 10.0: the greeting and the stats QEMU sends\n"
               "     --boot=SIZE       Boot memory (default 1G)\n"
               "     --rate=SIZE       Balloon speed per second (default 64M)\n"
               "     --used=SIZE       Memory the guest uses (default 256M)\n"
               "     --cache=SIZE      Its page cache (default 128M)\n"
               "     --reserved=SIZE   What its kernel keeps (not in MemTotal) (default 64M)\n"
               "     --report=FILE     Where the report goes at exit (default stdout): a line per VM\n"
               "                       (balloon commands, stats reads, the polling interval, the longest\n"
               "                       gap between two stats reads, the oldest stats a reader held),\n"
               "                       then one per balloon command: CLOCK_MONOTONIC us, VM, value\n\n"
               "Script lines (# comments):\n"
               "  vm NAME [boot=SIZE] [actual=SIZE] [rate=SIZE] [used=SIZE] [cache=SIZE] [reserved=SIZE]\n"
               "  at TIME PATTERN KEY=VALUE...   from TIME (seconds, or 1min, 500ms) after the start, on\n"
               "                                 the VMs whose name matches the glob PATTERN: rate, used,\n"
               "                                 cache, reserved, and the counters swap-in, swap-out\n"
               "                                 (bytes), major-faults, minor-faults\n");
}

static int run(int argc, char *argv[]) {
        enum { ARG_DIR = 0x100, ARG_VMS, ARG_SCRIPT, ARG_QEMU, ARG_BOOT, ARG_RATE, ARG_USED, ARG_CACHE,
               ARG_RESERVED, ARG_REPORT };
        static const struct option options[] = {
                { "help",     no_argument,       NULL, 'h'          },
                { "dir",      required_argument, NULL, ARG_DIR      },
                { "vms",      required_argument, NULL, ARG_VMS      },
                { "script",   required_argument, NULL, ARG_SCRIPT   },
                { "qemu",     required_argument, NULL, ARG_QEMU     },
                { "boot",     required_argument, NULL, ARG_BOOT     },
                { "rate",     required_argument, NULL, ARG_RATE     },
                { "used",     required_argument, NULL, ARG_USED     },
                { "cache",    required_argument, NULL, ARG_CACHE    },
                { "reserved", required_argument, NULL, ARG_RESERVED },
                { "report",   required_argument, NULL, ARG_REPORT   },
                {}
        };
        Guest defaults = { .boot = GIB, .rate = 64 * MIB, .used = 256 * MIB, .cache = 128 * MIB, .reserved = 64 * MIB };
        const char *dir = NULL, *script = NULL, *report = NULL;
        _cleanup_close_ int signal_fd = -EBADF;
        uint64_t n_vms = 0, *size;
        sigset_t mask;
        int c, r;

        log_setup(LOG_TARGET_STDERR, LOG_INFO);
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                size = NULL;
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_DIR:      dir = optarg; break;
                case ARG_SCRIPT:   script = optarg; break;
                case ARG_REPORT:   report = optarg; break;
                case ARG_BOOT:     size = &defaults.boot; break;
                case ARG_RATE:     size = &defaults.rate; break;
                case ARG_USED:     size = &defaults.used; break;
                case ARG_CACHE:    size = &defaults.cache; break;
                case ARG_RESERVED: size = &defaults.reserved; break;
                case ARG_VMS:
                        if (safe_atou64(optarg, &n_vms) < 0 || n_vms > 100000)
                                return log_error_errno(EINVAL, "Invalid --vms=%s", optarg);
                        break;
                case ARG_QEMU:
                        if (!IN_SET_STR(optarg, "7.2", "10.0"))
                                return log_error_errno(EINVAL, "--qemu= takes 7.2 or 10.0");
                        sim.version = optarg;
                        break;
                default:
                        return -EINVAL;
                }
                if (size && parse_size(optarg, false, size, NULL) < 0)
                        return log_error_errno(EINVAL, "Invalid size %s", optarg);
        }
        if (!dir || optind < argc)
                return log_error_errno(EINVAL, "Usage: fake-qemu --dir=DIR [OPTIONS...] (see --help)");
        defaults.actual = defaults.boot;

        if (script) {
                r = parse_script(script, &defaults);
                if (r < 0)
                        return r;
        }
        for (uint64_t i = 1; i <= n_vms; i++) {
                char name[32];

                (void) snprintf(name, sizeof name, "vm%" PRIu64, i);
                r = vm_add(name, &defaults);
                if (r < 0)
                        return log_error_errno(r, "%s: cannot add the VM: %m", name);
        }
        if (sim.n_vms == 0)
                return log_error_errno(EINVAL, "No VMs: give --vms=N or a script with vm lines");

        sim.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        sim.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGUSR1);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 || sim.epoll_fd < 0 || sim.timer_fd < 0 ||
            (signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
                return log_error_errno(errno, "Cannot set up the event loop: %m");
        /* NULL data: the timer; &signal_fd: the signals; otherwise a VM's Source. */
        if (epoll_add(sim.timer_fd, EPOLLIN, NULL) < 0 || epoll_add(signal_fd, EPOLLIN, &signal_fd) < 0)
                return log_error_errno(errno, "epoll_ctl(): %m");

        for (size_t i = 0; i < sim.n_vms; i++) {
                VM *vm = &sim.vms[i];

                vm->target = vm->g.actual = MIN(vm->g.actual, vm->g.boot);
                vm->listen_src = (Source) { SOURCE_LISTEN, vm };
                vm->conn_src = (Source) { SOURCE_CONN, vm };
                r = vm_listen(vm, dir);
                if (r < 0)
                        return r;
        }
        sim.start_usec = now_usec(CLOCK_MONOTONIC);
        printf("ready %zu\n", sim.n_vms);
        fflush(stdout);

        for (bool done = false; !done;) {
                struct epoll_event events[64];
                uint64_t now = now_usec(CLOCK_MONOTONIC);

                run_steps(now);
                r = arm_timer(now);
                if (r < 0)
                        return log_error_errno(r, "Cannot arm the timer: %m");

                int n = epoll_wait(sim.epoll_fd, events, ELEMENTSOF(events), -1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_error_errno(errno, "epoll_wait(): %m");
                }
                now = now_usec(CLOCK_MONOTONIC);
                for (int i = 0; i < n; i++) {
                        Source *s = events[i].data.ptr;

                        if (!s) {
                                uint64_t expirations;
                                (void) read(sim.timer_fd, &expirations, sizeof expirations);
                                if (sim.n_active > 0)
                                        for (size_t k = 0; k < sim.n_vms; k++)
                                                if (sim.vms[k].active)
                                                        vm_advance(&sim.vms[k], now);
                        } else if ((void *) s == &signal_fd) {
                                struct signalfd_siginfo si;
                                while (read(signal_fd, &si, sizeof si) == sizeof si) {
                                        if (si.ssi_signo == SIGUSR1)
                                                deflate_all(now);
                                        else
                                                done = true;
                                }
                        } else if (s->kind == SOURCE_LISTEN)
                                conn_accept(s->vm);
                        else if (s->vm->conn_fd >= 0) {
                                if (events[i].events & EPOLLOUT && conn_flush(s->vm) < 0)
                                        conn_close(s->vm);
                                else if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                                        conn_read(s->vm);
                        }
                }
        }

        if (report) {
                _cleanup_fclose_ FILE *f = fopen(report, "we");
                if (!f)
                        return log_error_errno(errno, "Cannot write %s: %m", report);
                write_report(f);
        } else
                write_report(stdout);

        for (size_t i = 0; i < sim.n_vms; i++) {
                VM *vm = &sim.vms[i];
                char path[sizeof(((struct sockaddr_un *) NULL)->sun_path)];

                conn_close(vm);
                (void) snprintf(path, sizeof path, "%s/%s.sock", dir, vm->name);
                (void) unlink(path);
                safe_close(vm->listen_fd);
                free(vm->out);
                free(vm->name);
        }
        for (size_t i = 0; i < sim.n_steps; i++)
                free(sim.steps[i].pattern);
        free(sim.steps);
        free(sim.vms);
        free(sim.log);
        safe_close(sim.timer_fd);
        safe_close(sim.epoll_fd);
        return 0;
}

int main(int argc, char *argv[]) {
        return run(argc, argv) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
