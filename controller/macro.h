/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _pure_ __attribute__((pure))
#define _fallthrough_ __attribute__((__fallthrough__))
#define _warn_unused_result_ __attribute__((warn_unused_result))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define CLAMP(x, lo, hi) ((x) < (lo) ? (lo) : (x) > (hi) ? (hi) : (x))

#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_HOUR (UINT64_C(3600) * USEC_PER_SEC)

/* The length of a string literal, at compile time. */
#define STRLEN(s) (sizeof("" s "") - 1)
#define KIB UINT64_C(1024)
#define MIB (UINT64_C(1024) * 1024)
#define GIB (UINT64_C(1024) * 1024 * 1024)

/* "no limit" for memory sizes, as cgroup v2 spells it "max". */
#define SIZE_UNLIMITED UINT64_MAX

/* Takes ownership: returns the pointer and leaves NULL behind. */
#define TAKE_PTR(p)                                  \
        ({                                           \
                __typeof__(p) *_pp_ = &(p);          \
                __typeof__(p) _ptr_ = *_pp_;         \
                *_pp_ = NULL;                        \
                _ptr_;                               \
        })

#define TAKE_FD(fd)                                  \
        ({                                           \
                int *_fdp_ = &(fd);                  \
                int _fd_ = *_fdp_;                   \
                *_fdp_ = -EBADF;                     \
                _fd_;                                \
        })

#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)      \
        static inline void func##p(type *p) {        \
                if (*p)                              \
                        func(*p);                    \
        }

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -EBADF;
}

static inline void closep(int *fd) {
        (void) safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f) {
        if (*f)
                (void) fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

/* errno as a negative return value, never 0 even if errno was clobbered. */
static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}

static inline const char *strna(const char *s) {
        return s ?: "n/a";
}

static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return __builtin_strcmp(a, b) == 0;
}

#define new0(t, n) ((t *) calloc((n) ?: 1, sizeof(t)))

#define IN_SET(x, ...)                                                          \
        ({                                                                      \
                const __typeof__(x) _x_ = (x);                                  \
                const __typeof__(x) _set_[] = { __VA_ARGS__ };                  \
                bool _found_ = false;                                           \
                for (size_t _i_ = 0; _i_ < ELEMENTSOF(_set_); _i_++)            \
                        if (_set_[_i_] == _x_) {                                \
                                _found_ = true;                                 \
                                break;                                          \
                        }                                                       \
                _found_;                                                        \
        })

#define streq(a, b) (strcmp((a), (b)) == 0)

#define IN_SET_STR(x, ...)                                                      \
        ({                                                                      \
                const char *_x_ = (x);                                          \
                const char *const _set_[] = { __VA_ARGS__ };                    \
                bool _found_ = false;                                           \
                for (size_t _i_ = 0; _i_ < ELEMENTSOF(_set_); _i_++)            \
                        if (streq(_set_[_i_], _x_)) {                           \
                                _found_ = true;                                 \
                                break;                                          \
                        }                                                       \
                _found_;                                                        \
        })
/* The rest of s after prefix, or NULL if s does not start with it. */
static inline const char *startswith(const char *s, const char *prefix) {
        size_t l = strlen(prefix);
        return s && strncmp(s, prefix, l) == 0 ? s + l : NULL;
}
