/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sys/stat.h>

#include "psi.h"
#include "util.h"

static void test_parse_good(void **state) {
        PsiStats s;

        assert_int_equal(psi_parse("some avg10=2.53 avg60=1.82 avg300=0.57 total=2198384\n"
                                   "full avg10=1.71 avg60=0.67 avg300=0.17 total=860342\n", &s), 0);
        assert_true(s.some.avg10 == 2.53);
        assert_true(s.some.avg60 == 1.82);
        assert_true(s.some.avg300 == 0.57);
        assert_true(s.some.total_usec == 2198384);
        assert_true(s.has_full);
        assert_true(s.full.avg10 == 1.71);
        assert_true(s.full.avg60 == 0.67);
        assert_true(s.full.avg300 == 0.17);
        assert_true(s.full.total_usec == 860342);

        /* No "full" line (system-wide cpu on older kernels), no trailing newline. */
        assert_int_equal(psi_parse("some avg10=100.00 avg60=0.00 avg300=0.00 total=18446744073709551615", &s), 0);
        assert_true(s.some.avg10 == 100.0);
        assert_true(s.some.total_usec == UINT64_MAX);
        assert_false(s.has_full);
        assert_true(s.full.total_usec == 0);
}

static void test_parse_bad(void **state) {
        static const char *const bad[] = {
                "",
                "\n",
                "garbage",
                "some",
                "some avg10=0.00",
                "some avg10=0.00 avg60=0.00 avg300=0.00",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=12\nfull avg10=0.00 avg60=",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=12\nfull",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=12\n\n",
                "some avg10=0.00 avg60=0.00 total=12\n",                          /* missing key */
                "some avg60=0.00 avg10=0.00 avg300=0.00 total=12\n",              /* keys out of order */
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=12 extra=1\n",
                "some  avg10=0.00 avg60=0.00 avg300=0.00 total=12\n",             /* double space */
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=12 \n",
                "some avg10= avg60=0.00 avg300=0.00 total=12\n",
                "some avg10=1 avg60=0.00 avg300=0.00 total=12\n",                 /* no decimals */
                "some avg10=-1.00 avg60=0.00 avg300=0.00 total=12\n",             /* negative */
                "some avg10=100.01 avg60=0.00 avg300=0.00 total=12\n",            /* over 100% */
                "some avg10=nan avg60=0.00 avg300=0.00 total=12\n",
                "some avg10=0x1.0p1 avg60=0.00 avg300=0.00 total=12\n",
                "some avg10=1e1 avg60=0.00 avg300=0.00 total=12\n",
                "some avg10=1. avg60=0.00 avg300=0.00 total=12\n",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=-1\n",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=18446744073709551616\n", /* > UINT64_MAX */
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=99999999999999999999999999999999999999\n",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=1x\n",
                "full avg10=0.00 avg60=0.00 avg300=0.00 total=12\n",              /* no "some" */
                "full avg10=0.00 avg60=0.00 avg300=0.00 total=12\n"
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=12\n",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=12\n"
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=12\n",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=12\n"
                "full avg10=0.00 avg60=0.00 avg300=0.00 total=12\n"
                "full avg10=0.00 avg60=0.00 avg300=0.00 total=12\n",
                "somex avg10=0.00 avg60=0.00 avg300=0.00 total=12\n",
                " some avg10=0.00 avg60=0.00 avg300=0.00 total=12\n",
        };
        PsiStats s = { .some.total_usec = 42 };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                if (psi_parse(bad[i], &s) != -EBADMSG)
                        fail_msg("accepted: \"%s\"", bad[i]);
                assert_true(s.some.total_usec == 42); /* untouched */
        }
}

static void test_round_window(void **state) {
        assert_true(psi_round_window(0) == 2 * USEC_PER_SEC);
        assert_true(psi_round_window(1) == 2 * USEC_PER_SEC);
        assert_true(psi_round_window(500 * USEC_PER_MSEC) == 2 * USEC_PER_SEC);
        assert_true(psi_round_window(2 * USEC_PER_SEC) == 2 * USEC_PER_SEC);
        assert_true(psi_round_window(2 * USEC_PER_SEC + 1) == 4 * USEC_PER_SEC);
        assert_true(psi_round_window(9 * USEC_PER_SEC) == 10 * USEC_PER_SEC);
        assert_true(psi_round_window(10 * USEC_PER_SEC) == 10 * USEC_PER_SEC);
        assert_true(psi_round_window(UINT64_MAX) % (2 * USEC_PER_SEC) == 0);
        assert_true(psi_round_window(UINT64_MAX) > UINT64_MAX - 2 * USEC_PER_SEC);
}

static int tmpdir_setup(void **state) {
        char *p = strdup("/tmp/test-psi-XXXXXX");

        if (!p || !mkdtemp(p))
                return -1;
        *state = p;
        return 0;
}

static int tmpdir_teardown(void **state) {
        char cmd[128];

        (void) snprintf(cmd, sizeof cmd, "rm -rf '%s'", (char *) *state);
        free(*state);
        return system(cmd) == 0 ? 0 : -1;
}

static void put_file(int dir_fd, const char *name, const char *text) {
        int fd = openat(dir_fd, name, O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0644);

        assert_true(fd >= 0);
        assert_true(write(fd, text, strlen(text)) == (ssize_t) strlen(text));
        assert_int_equal(close(fd), 0);
}

static void test_read_at(void **state) {
        int dir_fd = open(*state, O_RDONLY|O_DIRECTORY|O_CLOEXEC);
        PsiStats s;

        assert_true(dir_fd >= 0);
        put_file(dir_fd, "memory.pressure", "some avg10=18.01 avg60=5.00 avg300=1.00 total=123\n"
                                            "full avg10=9.50 avg60=2.00 avg300=0.50 total=45\n");
        put_file(dir_fd, "broken.pressure", "some avg10=18.01 avg60=5.00\n");

        assert_int_equal(psi_read_at(dir_fd, "memory.pressure", &s), 0);
        assert_true(s.some.avg10 == 18.01);
        assert_true(s.full.total_usec == 45);
        assert_int_equal(psi_read_at(dir_fd, "broken.pressure", &s), -EBADMSG);
        assert_int_equal(psi_read_at(dir_fd, "missing.pressure", &s), -ENOENT);
        assert_int_equal(close(dir_fd), 0);

        if (access("/proc/pressure/memory", F_OK) < 0)
                return;
        assert_int_equal(psi_read_at(AT_FDCWD, "/proc/pressure/memory", &s), 0);
        assert_true(s.has_full);
}

/* Against a plain file the write goes through, so the exact bytes can be checked. */
static void test_trigger_bytes(void **state) {
        int dir_fd = open(*state, O_RDONLY|O_DIRECTORY|O_CLOEXEC), fd = -1;
        uint64_t w = 0;
        char *text;
        size_t size;

        assert_true(dir_fd >= 0);
        put_file(dir_fd, "memory.pressure", "");
        assert_int_equal(psi_trigger_open_at(dir_fd, "memory.pressure", PSI_SOME, 100 * USEC_PER_MSEC,
                                             2 * USEC_PER_SEC, &w, &fd), 0);
        assert_true(w == 2 * USEC_PER_SEC);
        assert_true(fd >= 0);
        assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
        assert_true((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        assert_int_equal(close(fd), 0);

        assert_int_equal(read_full_file_at(dir_fd, "memory.pressure", 100, &text, &size), 0);
        assert_int_equal(size, strlen("some 100000 2000000") + 1);
        assert_memory_equal(text, "some 100000 2000000", size); /* with its NUL */
        free(text);

        put_file(dir_fd, "memory.pressure", "");
        assert_int_equal(psi_trigger_open_at(dir_fd, "memory.pressure", PSI_FULL, 1, 3, NULL, &fd), 0);
        assert_int_equal(close(fd), 0);
        assert_int_equal(read_full_file_at(dir_fd, "memory.pressure", 100, &text, &size), 0);
        assert_memory_equal(text, "full 1 3", size);
        free(text);

        fd = -1;
        assert_int_equal(psi_trigger_open_at(dir_fd, "missing.pressure", PSI_SOME, 1, 2, &w, &fd), -ENOENT);
        assert_int_equal(fd, -1);
        assert_int_equal(close(dir_fd), 0);
}

static bool have_cap_sys_resource(void) {
        _cleanup_free_ char *status = NULL;
        const char *p;
        uint64_t caps;

        if (read_full_file_at(AT_FDCWD, "/proc/self/status", 64 * 1024, &status, NULL) < 0)
                return false;
        p = strstr(status, "\nCapEff:\t");
        if (!p || sscanf(p + strlen("\nCapEff:\t"), "%" SCNx64, &caps) != 1)
                return false;
        return caps & (UINT64_C(1) << 24); /* CAP_SYS_RESOURCE */
}

static void test_trigger_kernel(void **state) {
        const char *path = "/proc/pressure/memory";
        uint64_t w = 0;
        int fd = -1, r;

        r = psi_trigger_open_at(AT_FDCWD, path, PSI_SOME, 100 * USEC_PER_MSEC, 2 * USEC_PER_SEC, &w, &fd);
        if (IN_SET(r, -ENOENT, -EOPNOTSUPP))
                skip(); /* no PSI on this kernel */
        assert_int_equal(r, 0);
        assert_true(w == 2 * USEC_PER_SEC);
        struct pollfd p = { .fd = fd, .events = POLLPRI };
        assert_true(poll(&p, 1, 0) >= 0);
        assert_false(p.revents & (POLLERR|POLLNVAL));
        assert_int_equal(close(fd), 0);

        /* 1 s is allowed for privileged writers only; others get the 2 s rounding. */
        assert_int_equal(psi_trigger_open_at(AT_FDCWD, path, PSI_FULL, 100 * USEC_PER_MSEC, USEC_PER_SEC, &w, &fd), 0);
        assert_true(w == (have_cap_sys_resource() ? USEC_PER_SEC : 2 * USEC_PER_SEC));
        assert_int_equal(close(fd), 0);

        /* Refused even after rounding: over the kernel's 10 s, stall longer than the window, no stall. */
        fd = -1;
        w = 7;
        assert_int_equal(psi_trigger_open_at(AT_FDCWD, path, PSI_SOME, USEC_PER_SEC, 20 * USEC_PER_SEC, &w, &fd), -EINVAL);
        assert_int_equal(psi_trigger_open_at(AT_FDCWD, path, PSI_SOME, USEC_PER_SEC, 11 * USEC_PER_SEC, &w, &fd), -EINVAL);
        assert_int_equal(psi_trigger_open_at(AT_FDCWD, path, PSI_SOME, 5 * USEC_PER_SEC, USEC_PER_SEC, &w, &fd), -EINVAL);
        assert_int_equal(psi_trigger_open_at(AT_FDCWD, path, PSI_SOME, 0, 2 * USEC_PER_SEC, &w, &fd), -EINVAL);
        assert_int_equal(fd, -1);
        assert_true(w == 7);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_good),
                cmocka_unit_test(test_parse_bad),
                cmocka_unit_test(test_round_window),
                cmocka_unit_test_setup_teardown(test_read_at, tmpdir_setup, tmpdir_teardown),
                cmocka_unit_test_setup_teardown(test_trigger_bytes, tmpdir_setup, tmpdir_teardown),
                cmocka_unit_test(test_trigger_kernel),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
