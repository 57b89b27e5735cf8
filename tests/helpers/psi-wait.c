/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Integration test helper: arms a PSI trigger with psi.c and reports its events.
 *
 *   psi-wait FILE STALL_MS WINDOW_MS TIMEOUT_S [COUNT]
 *
 * Prints "fired <n> after <ms> ms window=<effective window ms>" for each event. Exit status: 0 after
 * COUNT events (default 1); 1 ("timeout") if fewer than COUNT arrived within TIMEOUT_S in total;
 * 2 if the trigger cannot be armed or the arguments are wrong; 3 if the trigger goes away (its cgroup
 * was removed). */

#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <time.h>

#include "psi.h"
#include "util.h"

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static int parse_arg(const char *name, const char *s, uint64_t *ret) {
        if (safe_atou64(s, ret) < 0) {
                fprintf(stderr, "psi-wait: %s must be a non-negative integer, got \"%s\"\n", name, s);
                return -EINVAL;
        }
        return 0;
}

int main(int argc, char *argv[]) {
        _cleanup_close_ int fd = -EBADF;
        uint64_t stall_ms, window_ms, timeout_s, count = 1, window_usec, start, deadline;
        const char *path;
        int r;

        if (argc < 5 || argc > 6) {
                fprintf(stderr, "Usage: %s FILE STALL_MS WINDOW_MS TIMEOUT_S [COUNT]\n", argv[0]);
                return 2;
        }
        path = argv[1];
        if (parse_arg("STALL_MS", argv[2], &stall_ms) < 0 ||
            parse_arg("WINDOW_MS", argv[3], &window_ms) < 0 ||
            parse_arg("TIMEOUT_S", argv[4], &timeout_s) < 0 ||
            (argc == 6 && parse_arg("COUNT", argv[5], &count) < 0))
                return 2;
        if (count == 0 || stall_ms > UINT64_MAX / USEC_PER_MSEC || window_ms > UINT64_MAX / USEC_PER_MSEC ||
            timeout_s > UINT32_MAX) {
                fprintf(stderr, "psi-wait: COUNT must be at least 1; times out of range\n");
                return 2;
        }

        r = psi_trigger_open_at(AT_FDCWD, path, PSI_SOME, stall_ms * USEC_PER_MSEC, window_ms * USEC_PER_MSEC,
                                &window_usec, &fd);
        if (r == -EINVAL) {
                fprintf(stderr, "psi-wait: %s: trigger \"some %" PRIu64 " %" PRIu64 "\" refused (EINVAL), "
                        "also with the window rounded up to a multiple of 2 s: the window must be 500ms..10s "
                        "and a multiple of 2 s without CAP_SYS_RESOURCE, the stall > 0 and <= the window.\n",
                        path, stall_ms * USEC_PER_MSEC, window_ms * USEC_PER_MSEC);
                return 2;
        }
        if (IN_SET(r, -EOPNOTSUPP, -ENOENT)) {
                fprintf(stderr, "psi-wait: %s: %s: PSI is not available; the kernel needs CONFIG_PSI and, "
                        "if built with PSI off by default, psi=1 on its command line (or the file is not a "
                        "pressure file of a mounted cgroup2).\n", path, strerror(-r));
                return 2;
        }
        if (r < 0) {
                fprintf(stderr, "psi-wait: %s: cannot arm trigger: %s\n", path, strerror(-r));
                return 2;
        }

        setvbuf(stdout, NULL, _IOLBF, 0);
        fprintf(stderr, "psi-wait: armed \"some %" PRIu64 " %" PRIu64 "\" on %s\n",
                stall_ms * USEC_PER_MSEC, window_usec, path);

        start = now_usec();
        deadline = start + timeout_s * USEC_PER_SEC;
        for (uint64_t n = 1; n <= count;) {
                struct pollfd p = { .fd = fd, .events = POLLPRI };
                uint64_t t = now_usec();

                if (t >= deadline) {
                        printf("timeout after %" PRIu64 " of %" PRIu64 " events\n", n - 1, count);
                        return 1;
                }

                r = poll(&p, 1, (int) MIN((deadline - t + USEC_PER_MSEC - 1) / USEC_PER_MSEC, (uint64_t) INT32_MAX));
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "psi-wait: poll: %m\n");
                        return 2;
                }
                if (r == 0)
                        continue;
                if (p.revents & (POLLERR|POLLNVAL)) {
                        fprintf(stderr, "psi-wait: %s: trigger gone (cgroup removed?)\n", path);
                        return 3;
                }
                if (p.revents & POLLPRI) {
                        printf("fired %" PRIu64 " after %" PRIu64 " ms window=%" PRIu64 "\n",
                               n, (now_usec() - start) / USEC_PER_MSEC, window_usec / USEC_PER_MSEC);
                        n++;
                }
        }

        return 0;
}
