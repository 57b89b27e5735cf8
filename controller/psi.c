/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>

#include "psi.h"
#include "util.h"

#define PSI_WINDOW_GRANULARITY_USEC (2 * USEC_PER_SEC)

/* Reads "<digits>" up to the next ' ', '\n' or NUL; *p is left on that separator. */
static int psi_take_field(const char **p, char *buf, size_t size) {
        size_t l = strcspn(*p, " \n");

        if (l == 0 || l >= size)
                return -EBADMSG;
        memcpy(buf, *p, l);
        buf[l] = 0;
        *p += l;
        return 0;
}

/* An average as the kernel prints it: "<digits>.<digits>", 0..100. */
static int psi_parse_avg(const char **p, const char *key, double *ret) {
        char buf[16], *end;
        size_t n;
        int r;

        *p = startswith(*p, key);
        if (!*p)
                return -EBADMSG;
        r = psi_take_field(p, buf, sizeof buf);
        if (r < 0)
                return r;

        /* strtod() alone would take signs, spaces, "nan", "inf" and hex floats. */
        n = strspn(buf, "0123456789");
        if (n == 0 || buf[n] != '.' || buf[n + 1] == 0 || strspn(buf + n + 1, "0123456789") != strlen(buf + n + 1))
                return -EBADMSG;

        errno = 0;
        double v = strtod(buf, &end);
        if (errno != 0 || *end != 0 || v > 100.0)
                return -EBADMSG;

        *ret = v;
        return 0;
}

/* One line "<kind> avg10=X avg60=Y avg300=Z total=N", with *p past its '\n' (or on the final NUL). */
static int psi_parse_line(const char **p, const char *kind, PsiLine *ret) {
        char buf[32];
        PsiLine l;
        int r;

        *p = startswith(*p, kind);
        if (!*p)
                return -EBADMSG;

        r = psi_parse_avg(p, " avg10=", &l.avg10);
        if (r < 0)
                return r;
        r = psi_parse_avg(p, " avg60=", &l.avg60);
        if (r < 0)
                return r;
        r = psi_parse_avg(p, " avg300=", &l.avg300);
        if (r < 0)
                return r;

        *p = startswith(*p, " total=");
        if (!*p)
                return -EBADMSG;
        r = psi_take_field(p, buf, sizeof buf);
        if (r < 0)
                return r;
        if (safe_atou64(buf, &l.total_usec) < 0)
                return -EBADMSG;

        if (**p == '\n')
                (*p)++;
        else if (**p != 0)
                return -EBADMSG;

        *ret = l;
        return 0;
}

int psi_parse(const char *text, PsiStats *ret) {
        PsiStats s = {};
        const char *p = text;
        int r;

        r = psi_parse_line(&p, "some", &s.some);
        if (r < 0)
                return r;

        if (*p != 0) {
                r = psi_parse_line(&p, "full", &s.full);
                if (r < 0)
                        return r;
                s.has_full = true;
        }

        if (*p != 0)
                return -EBADMSG;

        *ret = s;
        return 0;
}

int psi_read_at(int dir_fd, const char *path, PsiStats *ret) {
        _cleanup_free_ char *text = NULL;
        int r;

        r = read_full_file_at(dir_fd, path, 4096, &text, NULL);
        if (r < 0)
                return r;

        return psi_parse(text, ret);
}

uint64_t psi_round_window(uint64_t window_usec) {
        if (window_usec <= PSI_WINDOW_GRANULARITY_USEC)
                return PSI_WINDOW_GRANULARITY_USEC;
        if (window_usec > UINT64_MAX - PSI_WINDOW_GRANULARITY_USEC)
                return UINT64_MAX - UINT64_MAX % PSI_WINDOW_GRANULARITY_USEC;
        return (window_usec + PSI_WINDOW_GRANULARITY_USEC - 1) / PSI_WINDOW_GRANULARITY_USEC *
                PSI_WINDOW_GRANULARITY_USEC;
}

static int psi_trigger_write(int fd, PsiKind kind, uint64_t stall_usec, uint64_t window_usec) {
        char buf[64];
        ssize_t n;
        int l;

        l = snprintf(buf, sizeof buf, "%s %" PRIu64 " %" PRIu64,
                     kind == PSI_FULL ? "full" : "some", stall_usec, window_usec);
        assert(l > 0 && (size_t) l < sizeof buf);

        /* The trailing NUL is written too, as in the kernel's example (Documentation/accounting/psi.rst). */
        n = write(fd, buf, l + 1);
        if (n < 0)
                return -errno;
        if (n != l + 1)
                return -EIO;
        return 0;
}

int psi_trigger_open_at(int dir_fd, const char *path, PsiKind kind, uint64_t stall_usec,
                        uint64_t window_usec, uint64_t *ret_window_usec, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        int r;

        fd = openat(dir_fd, path, O_RDWR|O_NONBLOCK|O_CLOEXEC|O_NOCTTY);
        if (fd < 0)
                return -errno;

        r = psi_trigger_write(fd, kind, stall_usec, window_usec);
        if (r == -EINVAL) {
                /* Writers without CAP_SYS_RESOURCE may only use windows that are multiples of 2 s. A
                 * failed write leaves no trigger behind, so the same fd can take the retry. */
                uint64_t w = psi_round_window(window_usec);
                if (w == window_usec)
                        return r;
                window_usec = w;
                r = psi_trigger_write(fd, kind, stall_usec, window_usec);
        }
        if (r < 0)
                return r;

        if (ret_window_usec)
                *ret_window_usec = window_usec;
        *ret_fd = TAKE_FD(fd);
        return 0;
}
