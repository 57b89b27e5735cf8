/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "util.h"

void strv_free(char **l) {
        if (!l)
                return;
        for (char **i = l; *i; i++)
                free(*i);
        free(l);
}

size_t strv_length(char * const *l) {
        size_t n = 0;

        if (!l)
                return 0;
        while (l[n])
                n++;
        return n;
}

int read_full_file_at(int dir_fd, const char *path, size_t max_size, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        /* One byte more than allowed, to tell "exactly max_size" from "too big". */
        size_t limit = MIN(max_size, SIZE_MAX - 2) + 1, size = 0, allocated = 0;

        fd = openat(dir_fd, path, O_RDONLY|O_CLOEXEC|O_NOCTTY);
        if (fd < 0)
                return -errno;

        /* Read until EOF rather than trusting st_size: /proc and cgroup files report 0 or 4096. */
        for (;;) {
                if (size >= allocated) {
                        size_t n = MIN(MAX(allocated * 2, (size_t) 4096), limit);
                        char *p = realloc(buf, n + 1); /* +1 for the NUL */
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                        allocated = n;
                }

                ssize_t k = read(fd, buf + size, allocated - size);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                size += k;
                if (size > max_size)
                        return -EFBIG;
        }

        if (!buf) {
                buf = malloc(1);
                if (!buf)
                        return -ENOMEM;
        }
        buf[size] = 0;

        *ret = TAKE_PTR(buf);
        if (ret_size)
                *ret_size = size;
        return 0;
}

int write_string_file_at(int dir_fd, const char *path, const char *s) {
        _cleanup_close_ int fd = -EBADF;
        size_t l = strlen(s);
        ssize_t n;

        /* O_TRUNC is a no-op on cgroupfs, but the tests' directory trees are plain files. */
        fd = openat(dir_fd, path, O_WRONLY|O_TRUNC|O_CLOEXEC|O_NOCTTY);
        if (fd < 0)
                return -errno;

        /* One write(): cgroup and PSI files act on each write() separately. */
        n = write(fd, s, l);
        if (n < 0)
                return -errno;
        if ((size_t) n != l)
                return -EIO;
        return 0;
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

int safe_atou64(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (!s || !is_digit(*s))
                return -EINVAL;

        for (; *s; s++) {
                if (!is_digit(*s))
                        return -EINVAL;
                unsigned d = *s - '0';
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }

        *ret = v;
        return 0;
}

int parse_key_values(char *text, int (*cb)(const char *key, uint64_t value, void *userdata), void *userdata) {
        char *saveptr = NULL;

        for (char *line = strtok_r(text, "\n", &saveptr); line; line = strtok_r(NULL, "\n", &saveptr)) {
                char *sp = strchr(line, ' ');
                uint64_t v;
                int r;

                if (!sp || sp == line)
                        return -EBADMSG;
                *sp = 0;
                if (safe_atou64(sp + 1, &v) < 0)
                        return -EBADMSG;
                r = cb(line, v, userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* "<digits>[.<digits>]" at the start of s: the integer part, and the fraction as a numerator over
 * 10^frac_digits. At most 18 fraction digits so that 10^frac_digits fits in 64 bits. */
typedef struct Decimal {
        uint64_t integer;
        uint64_t frac;
        unsigned frac_digits;
} Decimal;

static int parse_decimal(const char *s, Decimal *ret, const char **ret_end) {
        Decimal d = {};

        if (!is_digit(*s))
                return -EINVAL;
        for (; is_digit(*s); s++) {
                unsigned k = *s - '0';
                if (d.integer > (UINT64_MAX - k) / 10)
                        return -ERANGE;
                d.integer = d.integer * 10 + k;
        }

        if (*s == '.') {
                s++;
                if (!is_digit(*s))
                        return -EINVAL;
                for (; is_digit(*s); s++) {
                        if (d.frac_digits >= 18)
                                return -EINVAL;
                        d.frac = d.frac * 10 + (*s - '0');
                        d.frac_digits++;
                }
        }

        *ret = d;
        *ret_end = s;
        return 0;
}

static uint64_t pow10_u64(unsigned n) {
        uint64_t p = 1;
        while (n-- > 0)
                p *= 10;
        return p;
}

/* d * unit, with the fraction truncated to a whole number. */
static int decimal_scale(const Decimal *d, uint64_t unit, uint64_t *ret) {
        unsigned __int128 v = (unsigned __int128) d->integer * unit +
                (unsigned __int128) d->frac * unit / pow10_u64(d->frac_digits);

        if (v > UINT64_MAX)
                return -ERANGE;
        *ret = (uint64_t) v;
        return 0;
}

int parse_size(const char *s, bool allow_percent, uint64_t *ret_bytes, uint32_t *ret_permyriad) {
        static const struct {
                char suffix;
                uint64_t factor;
        } units[] = {
                { 'K', KIB },
                { 'M', MIB },
                { 'G', GIB },
                { 'T', GIB * 1024 },
        };
        const char *e;
        Decimal d;
        uint64_t unit = 1, bytes;
        int r;

        if (!s)
                return -EINVAL;

        r = parse_decimal(s, &d, &e);
        if (r < 0)
                return r;

        if (e[0] == '%') {
                if (!allow_percent || e[1] != 0 || d.frac_digits > 2)
                        return -EINVAL;
                uint64_t pm = d.frac * pow10_u64(2 - d.frac_digits);
                if (d.integer > 100 || d.integer * 100 + pm > 10000)
                        return -ERANGE;
                if (ret_bytes)
                        *ret_bytes = 0;
                if (ret_permyriad)
                        *ret_permyriad = (uint32_t) (d.integer * 100 + pm);
                return 0;
        }

        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (e[0] == units[i].suffix) {
                        unit = units[i].factor;
                        e++;
                        /* "K", "KB" and "KiB" all mean 1024 */
                        if (streq(e, "iB"))
                                e += 2;
                        break;
                }
        if (streq(e, "B"))
                e++;
        if (*e != 0)
                return -EINVAL;

        r = decimal_scale(&d, unit, &bytes);
        if (r < 0)
                return r;

        if (ret_bytes)
                *ret_bytes = bytes;
        if (ret_permyriad)
                *ret_permyriad = 0;
        return 0;
}

int parse_time_usec(const char *s, uint64_t *ret) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                { "",    USEC_PER_SEC },
                { "us",  1 },
                { "ms",  USEC_PER_MSEC },
                { "s",   USEC_PER_SEC },
                { "min", 60 * USEC_PER_SEC },
                { "h",   3600 * USEC_PER_SEC },
        };
        const char *e;
        Decimal d;
        int r;

        if (!s)
                return -EINVAL;

        r = parse_decimal(s, &d, &e);
        if (r < 0)
                return r;

        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (streq(e, units[i].suffix))
                        return decimal_scale(&d, units[i].usec, ret);

        return -EINVAL;
}

char *format_bytes(char *buf, size_t n, uint64_t bytes) {
        static const char suffixes[] = "BKMGTPE";
        char s[FORMAT_BYTES_MAX] = {}, *p = s;

        /* By hand, not snprintf(): the policy formats thousands of sizes per decision on a large host. */
        if (bytes == SIZE_UNLIMITED)
                p = stpcpy(s, "max");
        else {
                /* The largest unit of which there is at least 1, 1024^i: fewer than 1024 of them. */
                unsigned i = bytes < 1024 ? 0 : (63 - (unsigned) __builtin_clzll(bytes)) / 10;
                unsigned whole = (unsigned) (bytes >> (10 * i));
                /* One decimal, truncated, and only when it is not zero: "1.5G", "2G". The product
                 * fits: the unit is at most 2^60. */
                unsigned tenths = (unsigned) (((bytes & ((UINT64_C(1) << (10 * i)) - 1)) * 10) >> (10 * i));

                if (whole >= 1000)
                        *p++ = (char) ('0' + whole / 1000);
                if (whole >= 100)
                        *p++ = (char) ('0' + whole / 100 % 10);
                if (whole >= 10)
                        *p++ = (char) ('0' + whole / 10 % 10);
                *p++ = (char) ('0' + whole % 10);
                if (tenths > 0) {
                        *p++ = '.';
                        *p++ = (char) ('0' + tenths);
                }
                *p++ = suffixes[i];
        }

        /* Truncated as snprintf() would; whole, NUL included, in a copy of fixed size (no call). */
        if (n >= sizeof s)
                memcpy(buf, s, sizeof s);
        else if (n > 0) {
                size_t l = MIN((size_t) (p - s), n - 1);
                memcpy(buf, s, l);
                buf[l] = 0;
        }
        return buf;
}

int write_file_atomic(const char *path, const char *text, bool durable) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        size_t left = strlen(text);
        int r = 0;

        /* Neither "*.prom" nor "*.conf": the textfile collector and config_load() skip it. */
        if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;

        if (fchmod(fd, 0644) < 0)
                r = -errno;
        while (r >= 0 && left > 0) {
                ssize_t k = write(fd, text, left);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                text += k;
                left -= (size_t) k;
        }
        if (r >= 0 && durable && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && close(TAKE_FD(fd)) < 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                (void) unlink(tmp);
        return r;
}

int send_pending(int fd, char *buf, size_t *size) {
        while (*size > 0) {
                ssize_t n = send(fd, buf, *size, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        return -errno;
                }
                memmove(buf, buf + n, *size - (size_t) n);
                *size -= (size_t) n;
        }
        return 0;
}
