/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Drives a real QEMU through qmp.c for the integration tests:
 *   qmp-tool SOCKET balloon SIZE             -> "actual <bytes> after <ms> ms"
 *   qmp-tool SOCKET query-balloon            -> "actual <bytes>"
 *   qmp-tool SOCKET stats QOMPATH INTERVAL_S -> "stat-name value" lines
 *   qmp-tool SOCKET events SECONDS           -> one event name per line */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "log.h"
#include "macro.h"
#include "guest-stats.h"
#include "qmp.h"
#include "util.h"

#define CONNECT_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define CALL_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define BALLOON_POLL_USEC (100 * USEC_PER_MSEC)
#define BALLOON_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define BALLOON_TOLERANCE MIB
#define STATS_POLL_USEC (500 * USEC_PER_MSEC)

typedef enum Command {
        COMMAND_BALLOON,
        COMMAND_QUERY_BALLOON,
        COMMAND_STATS,
        COMMAND_EVENTS,
} Command;

typedef struct Tool {
        sd_event *event;
        QmpClient *qmp;
        Command command;
        uint64_t target;                /* balloon: bytes */
        const char *qom_path;           /* stats */
        uint64_t interval;              /* stats: seconds */
        uint64_t duration_usec;         /* events */
        uint64_t start_usec;
        uint64_t deadline_usec;
        sd_event_source *timer;
} Tool;

static uint64_t now_usec(Tool *t) {
        uint64_t n = 0;

        (void) sd_event_now(t->event, CLOCK_MONOTONIC, &n);
        return n;
}

static void tool_exit(Tool *t, int code) {
        (void) sd_event_exit(t->event, code);
}

/* Logs the failure and stops the loop with a non-zero exit code. */
_printf_(3, 4)
static void tool_fail(Tool *t, int error, const char *format, ...) {
        char buf[512];
        va_list ap;

        errno = -error;
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof buf, format, ap);
        va_end(ap);
        log_error("%s", buf);
        tool_exit(t, EXIT_FAILURE);
}

static bool reply_failed(Tool *t, const char *what, int error, const char *desc) {
        if (error == 0)
                return false;
        if (error == -ECANCELED) /* freed on the way out */
                return true;
        if (desc)
                tool_fail(t, error, "%s failed: %s", what, desc);
        else
                tool_fail(t, error, "%s failed: %m", what);
        return true;
}

static void tool_call(Tool *t, const char *command, json_object *args, qmp_reply_t callback) {
        int r = qmp_client_call(t->qmp, command, args, CALL_TIMEOUT_USEC, callback, t);
        if (r < 0)
                tool_fail(t, r, "cannot send %s: %m", command);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* One timer at a time: the connection deadline, a poll delay, or the end of "events". */
static void tool_arm_timer(Tool *t, uint64_t usec) {
        int r;

        t->timer = sd_event_source_disable_unref(t->timer);
        r = sd_event_add_time_relative(t->event, &t->timer, CLOCK_MONOTONIC, usec, USEC_PER_MSEC, on_timer, t);
        if (r < 0)
                tool_fail(t, r, "cannot arm a timer: %m");
}

static json_object *qom_args(Tool *t, const char *property) {
        json_object *args = json_object_new_object();

        if (!args)
                return NULL;
        if (json_object_object_add(args, "path", json_object_new_string(t->qom_path)) < 0 ||
            json_object_object_add(args, "property", json_object_new_string(property)) < 0) {
                json_object_put(args);
                return NULL;
        }
        return args;
}

/* balloon: set the target, then watch query-balloon until it is reached. */

static void balloon_poll(Tool *t);

static void on_balloon_poll(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        Tool *t = userdata;
        uint64_t actual, ms = (now_usec(t) - t->start_usec) / USEC_PER_MSEC;
        int r;

        if (reply_failed(t, "query-balloon", error, desc))
                return;
        r = qmp_parse_query_balloon(result, &actual);
        if (r < 0) {
                tool_fail(t, r, "malformed query-balloon reply: %s", json_object_to_json_string(result));
                return;
        }

        if ((actual > t->target ? actual - t->target : t->target - actual) <= BALLOON_TOLERANCE) {
                printf("actual %" PRIu64 " after %" PRIu64 " ms\n", actual, ms);
                tool_exit(t, EXIT_SUCCESS);
                return;
        }
        if (now_usec(t) >= t->deadline_usec) {
                tool_fail(t, -ETIMEDOUT, "balloon did not reach %" PRIu64 " bytes: actual %" PRIu64 " after %" PRIu64 " ms",
                          t->target, actual, ms);
                return;
        }
        tool_arm_timer(t, BALLOON_POLL_USEC);
}

static void balloon_poll(Tool *t) {
        tool_call(t, "query-balloon", NULL, on_balloon_poll);
}

static void on_balloon(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        Tool *t = userdata;

        if (!reply_failed(t, "balloon", error, desc))
                balloon_poll(t);
}

static void balloon_start(Tool *t) {
        json_object *args = json_object_new_object();

        if (!args || json_object_object_add(args, "value", json_object_new_uint64(t->target)) < 0) {
                json_object_put(args);
                tool_fail(t, -ENOMEM, "out of memory");
                return;
        }
        t->start_usec = now_usec(t);
        t->deadline_usec = t->start_usec + BALLOON_TIMEOUT_USEC;
        tool_call(t, "balloon", args, on_balloon);
}

/* query-balloon */

static void on_query_balloon(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        Tool *t = userdata;
        uint64_t actual;
        int r;

        if (reply_failed(t, "query-balloon", error, desc))
                return;
        r = qmp_parse_query_balloon(result, &actual);
        if (r < 0) {
                tool_fail(t, r, "malformed query-balloon reply: %s", json_object_to_json_string(result));
                return;
        }
        printf("actual %" PRIu64 "\n", actual);
        tool_exit(t, EXIT_SUCCESS);
}

/* stats: enable polling in QEMU, then read guest-stats until the guest has reported once. */

static void stats_poll(Tool *t);

static void on_stats(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        Tool *t = userdata;
        GuestStats s;
        int r;

        if (reply_failed(t, "qom-get guest-stats", error, desc))
                return;
        r = guest_stats_parse(result, &s);
        if (r < 0) {
                tool_fail(t, r, "malformed guest-stats: %s", json_object_to_json_string(result));
                return;
        }

        if (s.last_update == 0) {
                if (now_usec(t) >= t->deadline_usec)
                        tool_fail(t, -ETIMEDOUT, "the guest did not report stats within %" PRIu64 " s "
                                  "(no virtio-balloon driver, or stats queue disabled?)",
                                  (t->deadline_usec - t->start_usec) / USEC_PER_SEC);
                else
                        tool_arm_timer(t, STATS_POLL_USEC);
                return;
        }

        for (GuestStat i = 0; i < _GUEST_STAT_MAX; i++)
                if (guest_stat_valid(&s, i))
                        printf("%s %" PRIu64 "\n", guest_stat_to_name(i), s.value[i]);
        tool_exit(t, EXIT_SUCCESS);
}

static void stats_poll(Tool *t) {
        json_object *args = qom_args(t, "guest-stats");

        if (!args) {
                tool_fail(t, -ENOMEM, "out of memory");
                return;
        }
        tool_call(t, "qom-get", args, on_stats);
}

static void on_stats_interval(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        Tool *t = userdata;

        if (!reply_failed(t, "qom-set guest-stats-polling-interval", error, desc))
                stats_poll(t);
}

static void stats_start(Tool *t) {
        json_object *args = qom_args(t, "guest-stats-polling-interval");

        if (!args || json_object_object_add(args, "value", json_object_new_uint64(t->interval)) < 0) {
                json_object_put(args);
                tool_fail(t, -ENOMEM, "out of memory");
                return;
        }
        t->start_usec = now_usec(t);
        t->deadline_usec = t->start_usec + (2 * t->interval + 5) * USEC_PER_SEC;
        tool_call(t, "qom-set", args, on_stats_interval);
}

/* events */

static void on_event(QmpClient *c, const char *event, json_object *data, void *userdata) {
        Tool *t = userdata;

        if (t->command != COMMAND_EVENTS)
                return;
        printf("%s\n", event);
        fflush(stdout);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Tool *t = userdata;

        t->timer = sd_event_source_disable_unref(t->timer);

        if (qmp_client_get_state(t->qmp) != QMP_READY) {
                tool_fail(t, -ETIMEDOUT, "no QMP connection to %s within %" PRIu64 " s",
                          qmp_client_get_path(t->qmp), CONNECT_TIMEOUT_USEC / USEC_PER_SEC);
                return 0;
        }

        switch (t->command) {
        case COMMAND_BALLOON:
                balloon_poll(t);
                break;
        case COMMAND_STATS:
                stats_poll(t);
                break;
        case COMMAND_EVENTS:
                tool_exit(t, EXIT_SUCCESS);
                break;
        case COMMAND_QUERY_BALLOON:
                break;
        }
        return 0;
}

static void on_state(QmpClient *c, QmpState state, int error, void *userdata) {
        Tool *t = userdata;

        if (state == QMP_DISCONNECTED) {
                tool_fail(t, error, "lost the QMP connection to %s: %m", qmp_client_get_path(c));
                return;
        }
        if (state != QMP_READY)
                return;

        t->timer = sd_event_source_disable_unref(t->timer);
        switch (t->command) {
        case COMMAND_BALLOON:
                balloon_start(t);
                break;
        case COMMAND_QUERY_BALLOON:
                tool_call(t, "query-balloon", NULL, on_query_balloon);
                break;
        case COMMAND_STATS:
                stats_start(t);
                break;
        case COMMAND_EVENTS:
                tool_arm_timer(t, t->duration_usec);
                break;
        }
}

static int usage(void) {
        (void) fprintf(stderr,
                "Usage: %s SOCKET COMMAND...\n"
                "  balloon SIZE              set the balloon target, wait until actual is within 1 MiB\n"
                "  query-balloon             print the current balloon size\n"
                "  stats QOMPATH INTERVAL_S  enable guest stats polling, print the first report\n"
                "  events SECONDS            print the names of the events seen for that long\n",
                program_invocation_short_name);
        return -EINVAL;
}

static int parse_args(Tool *t, int argc, char *argv[]) {
        const char *cmd;
        int r;

        if (argc < 3)
                return usage();
        cmd = argv[2];

        if (streq(cmd, "balloon") && argc == 4) {
                t->command = COMMAND_BALLOON;
                r = parse_size(argv[3], false, &t->target, NULL);
                if (r < 0)
                        return log_error_errno(r, "Invalid size '%s': %m", argv[3]);
        } else if (streq(cmd, "query-balloon") && argc == 3)
                t->command = COMMAND_QUERY_BALLOON;
        else if (streq(cmd, "stats") && argc == 5) {
                t->command = COMMAND_STATS;
                t->qom_path = argv[3];
                r = safe_atou64(argv[4], &t->interval);
                if (r < 0 || t->interval == 0 || t->interval > 3600)
                        return log_error_errno(r < 0 ? r : -ERANGE,
                                               "Invalid polling interval '%s': seconds from 1 to 3600", argv[4]);
        } else if (streq(cmd, "events") && argc == 4) {
                t->command = COMMAND_EVENTS;
                r = parse_time_usec(argv[3], &t->duration_usec);
                if (r < 0)
                        return log_error_errno(r, "Invalid duration '%s': %m", argv[3]);
        } else
                return usage();
        return 0;
}

int main(int argc, char *argv[]) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(qmp_client_freep) QmpClient *qmp = NULL;
        Tool t = {};
        int r;

        log_setup(LOG_TARGET_STDERR, getenv("QMP_TOOL_DEBUG") ? LOG_DEBUG : LOG_INFO);

        r = parse_args(&t, argc, argv);
        if (r < 0)
                return EXIT_FAILURE;

        r = sd_event_new(&e);
        if (r < 0) {
                log_error_errno(r, "Cannot create the event loop: %m");
                return EXIT_FAILURE;
        }
        t.event = e;

        r = qmp_client_new(e, argv[1], &qmp);
        if (r < 0) {
                log_error_errno(r, "Cannot create a QMP client for %s: %m", argv[1]);
                return EXIT_FAILURE;
        }
        t.qmp = qmp;
        qmp_client_set_handlers(qmp, on_event, on_state, &t);

        tool_arm_timer(&t, CONNECT_TIMEOUT_USEC);
        r = qmp_client_start(qmp);
        if (r < 0) {
                log_error_errno(r, "Cannot connect to %s: %m", argv[1]);
                return EXIT_FAILURE;
        }

        r = sd_event_loop(e);
        t.timer = sd_event_source_disable_unref(t.timer);
        if (r < 0) {
                log_error_errno(r, "Event loop failed: %m");
                return EXIT_FAILURE;
        }
        return r;
}
