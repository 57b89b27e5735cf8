/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct PsiLine {
        double avg10, avg60, avg300; /* percent */
        uint64_t total_usec;
} PsiLine;

typedef struct PsiStats {
        PsiLine some;
        PsiLine full;
        bool has_full; /* the system-wide cpu file has no meaningful "full" line on older kernels */
} PsiStats;

typedef enum PsiKind {
        PSI_SOME,
        PSI_FULL,
} PsiKind;

/* Parses the text of a pressure file ("some avg10=.. avg60=.. avg300=.. total=..\nfull ...").
 * Returns -EBADMSG on anything malformed (missing "some" line, truncated fields, values out of range). */
int psi_parse(const char *text, PsiStats *ret);

/* Reads and parses the pressure file at 'path' relative to 'dir_fd' (AT_FDCWD allowed). */
int psi_read_at(int dir_fd, const char *path, PsiStats *ret);

/* Arms a trigger "<some|full> <stall_usec> <window_usec>" on the pressure file at 'path' relative to
 * 'dir_fd' and returns the fd to poll for EPOLLPRI. If the kernel refuses the window with EINVAL
 * (unprivileged writers need a multiple of 2 s), the window is rounded up to the next multiple of
 * 2 s and the write retried once; *ret_window_usec says which window is in force.
 * Errors: -ENOENT (no such file: no PSI or no cgroup2 mount), -EOPNOTSUPP (PSI disabled: boot with
 * psi=1), -EINVAL (refused even after rounding), -EACCES/-EPERM. */
int psi_trigger_open_at(int dir_fd, const char *path, PsiKind kind, uint64_t stall_usec,
                        uint64_t window_usec, uint64_t *ret_window_usec, int *ret_fd);

/* Rounds a trigger window up to the next multiple of 2 s (a multiple stays as it is; at least 2 s). */
uint64_t psi_round_window(uint64_t window_usec);
