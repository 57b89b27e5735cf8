/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "util.h"

static void test_strv(void **state) {
        char **l = new0(char *, 3);

        assert_non_null(l);
        assert_int_equal(strv_length(NULL), 0);
        assert_int_equal(strv_length(l), 0);
        l[0] = strdup("a");
        l[1] = strdup("b");
        assert_int_equal(strv_length(l), 2);
        strv_free(l);
        strv_free(NULL);
}

static void test_safe_atou64(void **state) {
        uint64_t v = 7;

        assert_int_equal(safe_atou64("0", &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(safe_atou64("18446744073709551615", &v), 0);
        assert_true(v == UINT64_MAX);
        assert_int_equal(safe_atou64("0042", &v), 0);
        assert_int_equal(v, 42);

        v = 7;
        assert_int_equal(safe_atou64("18446744073709551616", &v), -ERANGE);
        assert_int_equal(safe_atou64("99999999999999999999999", &v), -ERANGE);
        assert_int_equal(safe_atou64("", &v), -EINVAL);
        assert_int_equal(safe_atou64("-1", &v), -EINVAL);
        assert_int_equal(safe_atou64("+1", &v), -EINVAL);
        assert_int_equal(safe_atou64(" 1", &v), -EINVAL);
        assert_int_equal(safe_atou64("1 ", &v), -EINVAL);
        assert_int_equal(safe_atou64("1\n", &v), -EINVAL);
        assert_int_equal(safe_atou64("0x10", &v), -EINVAL);
        assert_int_equal(safe_atou64("1.0", &v), -EINVAL);
        assert_int_equal(safe_atou64(NULL, &v), -EINVAL);
        assert_int_equal(v, 7); /* untouched on failure */
}

static void check_size(const char *s, uint64_t bytes) {
        uint64_t b = 1;
        uint32_t pm = 1;

        assert_int_equal(parse_size(s, false, &b, &pm), 0);
        assert_true(b == bytes);
        assert_int_equal(pm, 0);
}

static void check_percent(const char *s, uint32_t permyriad) {
        uint64_t b = 1;
        uint32_t pm = 1;

        assert_int_equal(parse_size(s, true, &b, &pm), 0);
        assert_int_equal(pm, permyriad);
        assert_true(b == 0);
}

static void test_parse_size(void **state) {
        uint64_t b = 5;
        uint32_t pm = 5;

        check_size("0", 0);
        check_size("512", 512);
        check_size("17B", 17);
        check_size("512K", 512 * KIB);
        check_size("512KB", 512 * KIB);
        check_size("512KiB", 512 * KIB);
        check_size("64M", 64 * MIB);
        check_size("2G", 2 * GIB);
        check_size("2GiB", 2 * GIB);
        check_size("1T", 1024 * GIB);
        check_size("1.5G", 3 * GIB / 2);
        check_size("0.5K", 512);
        check_size("1.25M", 1280 * KIB);
        check_size("1.3K", 1331); /* 1331.2, truncated */
        check_size("16777215T", UINT64_C(16777215) * 1024 * GIB);
        check_size("18446744073709551615", UINT64_MAX);

        check_percent("10%", 1000);
        check_percent("2.5%", 250);
        check_percent("2.55%", 255);
        check_percent("0%", 0);
        check_percent("100%", 10000);
        check_percent("100.00%", 10000);

        assert_int_equal(parse_size("16777216T", false, &b, &pm), -ERANGE);
        assert_int_equal(parse_size("18446744073709551616", false, &b, &pm), -ERANGE);
        assert_int_equal(parse_size("100.01%", true, &b, &pm), -ERANGE);
        assert_int_equal(parse_size("101%", true, &b, &pm), -ERANGE);
        assert_int_equal(parse_size("99999999999999999999%", true, &b, &pm), -ERANGE);

        static const char *const bad[] = {
                "", "K", "-1", "+1", " 1", "1 ", "1\n", "1k", "1KK", "1iB", "1KiBB", "1BB", "1P",
                "1.", ".5", "1..5", "1.5.5", "1,5G", "0x10", "1e3", "nan", "inf", "max",
                "1.0000000000000000001G",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                b = 5;
                pm = 5;
                assert_int_equal(parse_size(bad[i], true, &b, &pm), -EINVAL);
                assert_true(b == 5 && pm == 5);
        }

        /* Percentages only where allowed, with at most two decimals. */
        assert_int_equal(parse_size("10%", false, &b, &pm), -EINVAL);
        assert_int_equal(parse_size("2.555%", true, &b, &pm), -EINVAL);
        assert_int_equal(parse_size("10%%", true, &b, &pm), -EINVAL);
        assert_int_equal(parse_size("10G%", true, &b, &pm), -EINVAL);
        assert_int_equal(parse_size("%", true, &b, &pm), -EINVAL);
        assert_int_equal(parse_size(NULL, true, &b, &pm), -EINVAL);

        /* NULL outputs are allowed. */
        assert_int_equal(parse_size("1G", false, NULL, NULL), 0);
}

static void test_parse_time_usec(void **state) {
        uint64_t t = 3;

        assert_int_equal(parse_time_usec("60", &t), 0);
        assert_true(t == 60 * USEC_PER_SEC);
        assert_int_equal(parse_time_usec("60s", &t), 0);
        assert_true(t == 60 * USEC_PER_SEC);
        assert_int_equal(parse_time_usec("0.1", &t), 0);
        assert_true(t == 100 * USEC_PER_MSEC);
        assert_int_equal(parse_time_usec("500ms", &t), 0);
        assert_true(t == 500 * USEC_PER_MSEC);
        assert_int_equal(parse_time_usec("2min", &t), 0);
        assert_true(t == 120 * USEC_PER_SEC);
        assert_int_equal(parse_time_usec("1.5min", &t), 0);
        assert_true(t == 90 * USEC_PER_SEC);
        assert_int_equal(parse_time_usec("1h", &t), 0);
        assert_true(t == 3600 * USEC_PER_SEC);
        assert_int_equal(parse_time_usec("250us", &t), 0);
        assert_true(t == 250);
        assert_int_equal(parse_time_usec("0", &t), 0);
        assert_true(t == 0);
        assert_int_equal(parse_time_usec("1.0000005", &t), 0);
        assert_true(t == USEC_PER_SEC); /* sub-microsecond part truncated */

        t = 3;
        static const char *const bad[] = {
                "", "s", "-1", "1 s", " 1", "1m", "1sec ", "1S", "1.s", ".5", "1e3", "1,5", "inf", "1d",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(parse_time_usec(bad[i], &t), -EINVAL);
        assert_int_equal(parse_time_usec("18446744073709551615", &t), -ERANGE);
        assert_int_equal(parse_time_usec("18446744073710s", &t), -ERANGE);
        assert_true(t == 3);
}

static void check_format(uint64_t bytes, const char *expected) {
        char buf[FORMAT_BYTES_MAX];

        assert_string_equal(format_bytes(buf, sizeof buf, bytes), expected);
}

/* format_bytes() as it was written with snprintf(), the reference for the hand-written one. */
static void reference_format(uint64_t bytes, char *buf, size_t n) {
        uint64_t unit = 1;
        char suffix = 'B';

        for (const char *s = "KMGTPE"; *s && bytes / unit >= 1024; s++) {
                unit *= 1024;
                suffix = *s;
        }
        uint64_t tenths = (uint64_t) ((unsigned __int128) (bytes % unit) * 10 / unit);
        char s[64];
        if (tenths > 0)
                (void) snprintf(s, sizeof s, "%" PRIu64 ".%" PRIu64 "%c", bytes / unit, tenths, suffix);
        else
                (void) snprintf(s, sizeof s, "%" PRIu64 "%c", bytes / unit, suffix);
        /* What snprintf(buf, n, ...) keeps of it. */
        size_t l = MIN(strlen(s), n - 1);
        memcpy(buf, s, l);
        buf[l] = 0;
}

static void test_format_bytes_reference(void **state) {
        char a[FORMAT_BYTES_MAX], b[FORMAT_BYTES_MAX];
        uint64_t x = 1;

        for (unsigned k = 0; k < 20000; k++) {
                /* Every magnitude: a random value below a random power of two, and around the units. */
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                uint64_t bytes = k % 3 == 0 ? (UINT64_C(1) << (k / 3 % 64)) - k % 2 : x >> (x % 64);
                if (bytes == SIZE_UNLIMITED)
                        continue;
                reference_format(bytes, a, sizeof a);
                assert_string_equal(format_bytes(b, sizeof b, bytes), a);
                /* Truncated as snprintf() truncates. */
                reference_format(bytes, a, 3);
                assert_string_equal(format_bytes(b, 3, bytes), a);
        }
}

static void test_format_bytes(void **state) {
        check_format(0, "0B");
        check_format(17, "17B");
        check_format(1023, "1023B");
        check_format(1024, "1K");
        check_format(512 * KIB, "512K");
        check_format(1536, "1.5K");
        check_format(256 * MIB, "256M");
        check_format(3 * GIB / 2, "1.5G");
        check_format(GIB - 1, "1023.9M");
        check_format(2 * GIB, "2G");
        check_format(1024 * GIB, "1T");
        check_format(UINT64_MAX - 1, "15.9E");
        check_format(SIZE_UNLIMITED, "max");

        /* Every size the parser produces from a formatted whole unit parses back. */
        uint64_t b;
        char buf[FORMAT_BYTES_MAX];
        assert_int_equal(parse_size(format_bytes(buf, sizeof buf, 3 * GIB / 2), false, &b, NULL), 0);
        assert_true(b == 3 * GIB / 2);
}

typedef struct TmpDir {
        char path[64];
        int fd;
} TmpDir;

static int tmpdir_setup(void **state) {
        TmpDir *t = calloc(1, sizeof(TmpDir));

        if (!t)
                return -1;
        strcpy(t->path, "/tmp/test-util-XXXXXX");
        if (!mkdtemp(t->path))
                return -1;
        t->fd = open(t->path, O_RDONLY|O_DIRECTORY|O_CLOEXEC);
        if (t->fd < 0)
                return -1;
        *state = t;
        return 0;
}

static int tmpdir_teardown(void **state) {
        TmpDir *t = *state;
        char cmd[128];

        (void) close(t->fd);
        (void) snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->path);
        if (system(cmd) != 0)
                return -1;
        free(t);
        return 0;
}

static void write_file(int dir_fd, const char *name, const char *data, size_t size) {
        int fd = openat(dir_fd, name, O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0644);

        assert_true(fd >= 0);
        assert_true(write(fd, data, size) == (ssize_t) size);
        assert_int_equal(close(fd), 0);
}

static void test_read_full_file_at(void **state) {
        TmpDir *t = *state;
        char *s = NULL;
        size_t size = 1;

        write_file(t->fd, "empty", "", 0);
        assert_int_equal(read_full_file_at(t->fd, "empty", 10, &s, &size), 0);
        assert_string_equal(s, "");
        assert_int_equal(size, 0);
        free(s);

        write_file(t->fd, "ten", "0123456789", 10);
        assert_int_equal(read_full_file_at(t->fd, "ten", 10, &s, &size), 0);
        assert_string_equal(s, "0123456789");
        assert_int_equal(size, 10);
        free(s);
        assert_int_equal(read_full_file_at(t->fd, "ten", 9, &s, NULL), -EFBIG);

        /* Bigger than one read buffer, to exercise growing it. */
        size_t big = 100000;
        char *data = malloc(big);
        assert_non_null(data);
        for (size_t i = 0; i < big; i++)
                data[i] = 'a' + i % 26;
        write_file(t->fd, "big", data, big);
        assert_int_equal(read_full_file_at(t->fd, "big", big, &s, &size), 0);
        assert_int_equal(size, big);
        assert_memory_equal(s, data, big);
        assert_int_equal(s[big], 0);
        free(s);
        assert_int_equal(read_full_file_at(t->fd, "big", big - 1, &s, &size), -EFBIG);
        free(data);

        s = NULL;
        assert_int_equal(read_full_file_at(t->fd, "missing", 10, &s, &size), -ENOENT);
        assert_null(s);

        /* AT_FDCWD and absolute paths work too. */
        assert_int_equal(read_full_file_at(AT_FDCWD, "/proc/self/stat", 4096, &s, NULL), 0);
        assert_true(strlen(s) > 0);
        free(s);
}

static void test_write_string_file_at(void **state) {
        TmpDir *t = *state;
        struct rlimit old, small = { .rlim_cur = 2, .rlim_max = RLIM_INFINITY };
        char *s;

        /* O_TRUNC, so the tests' plain-file cgroup trees read back what was written; no O_CREAT. */
        write_file(t->fd, "value", "old contents", 12);
        assert_int_equal(write_string_file_at(t->fd, "value", "1234"), 0);
        assert_int_equal(read_full_file_at(t->fd, "value", 100, &s, NULL), 0);
        assert_string_equal(s, "1234");
        free(s);

        assert_int_equal(write_string_file_at(t->fd, "missing", "1"), -ENOENT);
        assert_int_equal(faccessat(t->fd, "missing", F_OK, 0), -1);
        assert_int_equal(write_string_file_at(AT_FDCWD, "/dev/full", "1"), -ENOSPC);

        /* A short write is an error: cap the file size at 2 bytes. */
        write_file(t->fd, "short", "", 0);
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
        small.rlim_max = old.rlim_max;
        (void) signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
        int r = write_string_file_at(t->fd, "short", "1234");
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
        assert_int_equal(r, -EIO);
}

static size_t count_entries(const char *dir) {
        DIR *d = opendir(dir);
        size_t n = 0;

        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d));)
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

static void test_write_file_atomic(void **state) {
        TmpDir *t = *state;
        const char *dir = t->path;
        _cleanup_free_ char *path = NULL, *missing = NULL, *text = NULL;
        struct stat st;

        assert_true(asprintf(&path, "%s/metrics.prom", dir) > 0);
        assert_int_equal(write_file_atomic(path, "first\n", true), 0);
        assert_int_equal(write_file_atomic(path, "# EOF\n", false), 0);

        assert_int_equal(read_full_file_at(AT_FDCWD, path, 1024, &text, NULL), 0);
        assert_string_equal(text, "# EOF\n");
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0644);
        assert_int_equal(count_entries(dir), 1); /* no temporary file left */

        /* A directory that is not there: the error, and nothing written. */
        assert_true(asprintf(&missing, "%s/none/metrics.prom", dir) > 0);
        assert_int_equal(write_file_atomic(missing, "x\n", false), -ENOENT);
        assert_int_equal(count_entries(dir), 1);

        /* The rename fails (a directory is in the way): the temporary file is removed. */
        assert_int_equal(unlink(path), 0);
        assert_int_equal(mkdir(path, 0755), 0);
        assert_int_equal(write_file_atomic(path, "x\n", true), -EISDIR);
        assert_int_equal(count_entries(dir), 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_strv),
                cmocka_unit_test(test_safe_atou64),
                cmocka_unit_test(test_parse_size),
                cmocka_unit_test(test_parse_time_usec),
                cmocka_unit_test(test_format_bytes),
                cmocka_unit_test(test_format_bytes_reference),
                cmocka_unit_test_setup_teardown(test_read_full_file_at, tmpdir_setup, tmpdir_teardown),
                cmocka_unit_test_setup_teardown(test_write_string_file_at, tmpdir_setup, tmpdir_teardown),
                cmocka_unit_test_setup_teardown(test_write_file_atomic, tmpdir_setup, tmpdir_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
