/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "log.h"

static LogTarget log_target = LOG_TARGET_STDERR;
static int log_max_level = LOG_INFO;

static bool stderr_is_journal(void) {
        /* systemd sets JOURNAL_STREAM=dev:ino for services whose stderr is connected to the journal. */
        const char *e = getenv("JOURNAL_STREAM");
        return e && *e;
}

void log_setup(LogTarget target, int max_level) {
        if (target == LOG_TARGET_AUTO)
                target = stderr_is_journal() ? LOG_TARGET_JOURNAL : LOG_TARGET_STDERR;
        log_target = target;
        log_max_level = max_level;
}

int log_get_max_level(void) {
        return log_max_level;
}

static void stderr_prefix(int level) {
        static const char *const names[] = {
                [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit", [LOG_ERR] = "error",
                [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
        };
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        (void) localtime_r(&ts.tv_sec, &tm);
        fprintf(stderr, "%02d:%02d:%02d.%03ld %s: ", tm.tm_hour, tm.tm_min, tm.tm_sec,
                ts.tv_nsec / 1000000, names[level & LOG_PRIMASK]);
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *format, ...) {
        int saved_errno = errno;

        if (error < 0)
                error = -error;

        if ((level & LOG_PRIMASK) > log_max_level)
                return -error;

        char buf[2048];
        va_list ap;
        /* Make %m print the error we were given, not whatever errno holds. */
        errno = error;
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof buf, format, ap);
        va_end(ap);

        if (log_target == LOG_TARGET_JOURNAL) {
                char line_str[16];
                (void) snprintf(line_str, sizeof line_str, "%d", line);
                if (error > 0)
                        (void) sd_journal_send("MESSAGE=%s", buf, "PRIORITY=%i", level & LOG_PRIMASK,
                                               "ERRNO=%i", error, "CODE_FILE=%s", file, "CODE_LINE=%s",
                                               line_str, "CODE_FUNC=%s", func, NULL);
                else
                        (void) sd_journal_send("MESSAGE=%s", buf, "PRIORITY=%i", level & LOG_PRIMASK,
                                               "CODE_FILE=%s", file, "CODE_LINE=%s", line_str,
                                               "CODE_FUNC=%s", func, NULL);
        } else {
                stderr_prefix(level);
                fputs(buf, stderr);
                fputc('\n', stderr);
        }

        errno = saved_errno;
        return -error;
}

/* Fixed ids, one per kind of decision, so "journalctl MESSAGE_ID=..." selects them across VMs. */
static const char *decision_message_id(const char *action) {
        static const struct {
                const char *action, *id;
        } ids[] = {
                { "inflate",  "7b076f06385c4ef7a1eadde5c8170cb9" },
                { "deflate",  "eddfcd35924f4f7cba3196143a9956d4" },
                { "cancel",   "955d18ad1b334e9aaceeb2a1d460581e" },
                { "hold",     "cb4d711869344e628b722336a3e1be59" },
                { "stall",    "e3c90f31a8a046288a24c718f0e40447" },
                { "set-high", "1949649e9d194210af7b340cd2265076" },
        };

        for (size_t i = 0; i < ELEMENTSOF(ids); i++)
                if (streq(action, ids[i].action))
                        return ids[i].id;
        return "8161a39c3c274b1e9a8354d57204e085"; /* a decision of a kind added without an id */
}

void log_decision(const char *vm, const char *action, uint64_t bytes, uint64_t target, const char *reason) {
        if (LOG_INFO > log_max_level)
                return;

        if (log_target == LOG_TARGET_JOURNAL) {
                (void) sd_journal_send("MESSAGE=%s: %s %" PRIu64 " MiB: %s", vm, action, bytes / MIB, reason,
                                       "MESSAGE_ID=%s", decision_message_id(action),
                                       "PRIORITY=%i", LOG_INFO,
                                       "AUTOBALLOON_VM=%s", vm,
                                       "AUTOBALLOON_ACTION=%s", action,
                                       "AUTOBALLOON_BYTES=%" PRIu64, bytes,
                                       "AUTOBALLOON_TARGET=%" PRIu64, target,
                                       "AUTOBALLOON_REASON=%s", reason, NULL);
                return;
        }

        /* Same fields on stderr, in a form that is easy to grep and to parse in tests. */
        stderr_prefix(LOG_INFO);
        fprintf(stderr, "decision vm=%s action=%s bytes=%" PRIu64 " target=%" PRIu64 " (%" PRIu64 " MiB) reason=\"%s\"\n",
                vm, action, bytes, target, bytes / MIB, reason);
}
