/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>
#include <syslog.h>

#include "macro.h"

typedef enum LogTarget {
        LOG_TARGET_AUTO,    /* the journal when JOURNAL_STREAM says stderr goes there, stderr otherwise */
        LOG_TARGET_JOURNAL,
        LOG_TARGET_STDERR,
} LogTarget;

void log_setup(LogTarget target, int max_level);
int log_get_max_level(void);

/* Logs at 'level' and returns -abs(error) so callers can "return log_error_errno(r, ...)".
 * When error is non-zero, %m in the format expands to strerror(error). */
int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) _printf_(6, 7);

#define log_full_errno(level, error, ...) \
        log_internal((level), (error), __FILE__, __LINE__, __func__, __VA_ARGS__)

#define log_debug(...)   log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...)    log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...)  log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...)   log_full_errno(LOG_ERR, 0, __VA_ARGS__)

#define log_debug_errno(e, ...)   log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...)    log_full_errno(LOG_INFO, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, (e), __VA_ARGS__)

#define log_oom() log_error_errno(ENOMEM, "Out of memory.")

/* One controller decision, with the structured fields operators filter on:
 * AUTOBALLOON_VM=, AUTOBALLOON_ACTION=, AUTOBALLOON_BYTES=, AUTOBALLOON_TARGET=, AUTOBALLOON_REASON=,
 * and a MESSAGE_ID= per action (log.c).
 * 'bytes' is how much the action moves, 'target' the balloon size it aims at. */
void log_decision(const char *vm, const char *action, uint64_t bytes, uint64_t target, const char *reason);
