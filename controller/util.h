/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "macro.h"

void strv_free(char **l);
static inline void strv_freep(char ***l) {
        strv_free(*l);
}
#define _cleanup_strv_free_ _cleanup_(strv_freep)
size_t strv_length(char * const *l);

/* Reads a whole small file relative to dir_fd into a NUL-terminated buffer. Files larger than
 * max_size give -EFBIG. */
int read_full_file_at(int dir_fd, const char *path, size_t max_size, char **ret, size_t *ret_size);

/* Writes a string to an existing file (no O_CREAT), in one write(). */
int write_string_file_at(int dir_fd, const char *path, const char *s);

/* Replaces 'path' with 'text' atomically: a temporary file "<path>.XXXXXX" in the same directory,
 * mode 0644, renamed over it; removed on failure. 'durable' syncs it to disk first (the weight drop-ins
 * in /etc; the metrics file on /run is rewritten each tick and needs not). */
int write_file_atomic(const char *path, const char *text, bool durable);

/* Sends what the socket takes now of the 'size' bytes pending at 'buf', without blocking, and keeps
 * the rest at the front of 'buf'. 0 when all was sent or the socket is full; -errno on an error. */
int send_pending(int fd, char *buf, size_t *size);

/* Strict decimal parse of an unsigned 64-bit number: no sign, no spaces, no trailing junk, no overflow. */
int safe_atou64(const char *s, uint64_t *ret);

/* Calls cb for each "key value\n" line of text (memory.stat, cgroup.events, /proc/vmstat), which it
 * modifies; -EBADMSG on a line of another shape, or cb's error. */
int parse_key_values(char *text, int (*cb)(const char *key, uint64_t value, void *userdata), void *userdata);

/* Sizes: "512", "512K", "64M", "2G", "1T" (binary units, optional trailing "B" or "iB"; decimals like
 * "1.5G" allowed, truncated to whole bytes), or with 'allow_percent' "10%" / "2.5%" (at most two
 * decimals, at most 100%), returned in *ret_permyriad (parts per 10000) with *ret_bytes set to 0; for a
 * byte size *ret_permyriad is set to 0. Either pointer may be NULL.
 * -EINVAL on junk, -ERANGE on overflow. */
int parse_size(const char *s, bool allow_percent, uint64_t *ret_bytes, uint32_t *ret_permyriad);

/* Seconds with optional "us", "ms", "s", "min", "h" suffix, e.g. "60", "60s", "0.5", "500ms", "2min";
 * decimals are truncated to whole microseconds. -EINVAL on junk, -ERANGE on overflow. */
int parse_time_usec(const char *s, uint64_t *ret);

/* "1.5G", "256M", "512K", "17B" (one decimal, truncated); "max" for SIZE_UNLIMITED. Buffer of at least
 * FORMAT_BYTES_MAX. */
#define FORMAT_BYTES_MAX 16
char *format_bytes(char *buf, size_t n, uint64_t bytes);
