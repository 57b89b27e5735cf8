/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "cgroup.h"

typedef struct Tree {
        char path[64];
        int fd;
} Tree;

static void put_file(int dir_fd, const char *name, const char *text) {
        int fd = openat(dir_fd, name, O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0644);

        assert_true(fd >= 0);
        assert_true(write(fd, text, strlen(text)) == (ssize_t) strlen(text));
        assert_int_equal(close(fd), 0);
}

/* A cgroup v2 tree imitated with plain directories and files. */
static int tree_setup(void **state) {
        static const char *const dirs[] = {
                "balloon.slice",
                "balloon.slice/balloon-web.slice",
                "balloon.slice/balloon-db_2.slice",
                "balloon.slice/balloon-Alpha.slice",
                "balloon.slice/balloon-a-b.slice",       /* a deeper slice to systemd */
                "balloon.slice/balloon-.slice",
                "balloon.slice/balloon-bad!.slice",
                "balloon.slice/balloon-x.scope",
                "balloon.slice/other-y.slice",
                "balloon.slice/balloon-z.slice.d",
                "balloon.slice/balloon-web.slice/balloon-web-inner.slice",
                "empty.slice",
        };
        Tree *t = calloc(1, sizeof(Tree));

        if (!t)
                return -1;
        strcpy(t->path, "/tmp/test-cgroup-XXXXXX");
        if (!mkdtemp(t->path))
                return -1;
        t->fd = open(t->path, O_RDONLY|O_DIRECTORY|O_CLOEXEC);
        if (t->fd < 0)
                return -1;
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++)
                if (mkdirat(t->fd, dirs[i], 0755) < 0)
                        return -1;
        *state = t;
        return 0;
}

static int tree_teardown(void **state) {
        Tree *t = *state;
        char cmd[128];

        (void) close(t->fd);
        (void) snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->path);
        free(t);
        return system(cmd) == 0 ? 0 : -1;
}

static void test_open_and_check(void **state) {
        Tree *t = *state;
        int fd = -1;

        assert_int_equal(cg_open_root(t->path, &fd), 0);
        assert_true(fd >= 0);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        assert_int_equal(cg_check_cgroup2(fd, false), -ENOMEDIUM);
        assert_int_equal(cg_check_cgroup2(fd, true), 0);
        assert_int_equal(close(fd), 0);

        fd = -1;
        assert_int_equal(cg_open_root("/nonexistent/autoballoon", &fd), -ENOENT);
        assert_int_equal(fd, -1);
        put_file(t->fd, "plain", "");
        char p[128];
        (void) snprintf(p, sizeof p, "%s/plain", t->path);
        assert_int_equal(cg_open_root(p, &fd), -ENOTDIR);

        assert_int_equal(cg_open_root("/proc", &fd), 0);
        assert_int_equal(cg_check_cgroup2(fd, false), -ENOMEDIUM);
        assert_int_equal(close(fd), 0);

        /* The real cgroup2 mount of a hybrid host, where there is one. */
        if (cg_open_root("/sys/fs/cgroup/unified", &fd) < 0)
                return;
        assert_int_equal(cg_check_cgroup2(fd, false), 0);
        assert_int_equal(close(fd), 0);
}

static void test_list_vms(void **state) {
        Tree *t = *state;
        char **names = NULL;

        put_file(t->fd, "balloon.slice/balloon-file.slice", ""); /* not a directory */
        assert_int_equal(symlinkat("balloon-web.slice", t->fd, "balloon.slice/balloon-link.slice"), 0);

        assert_int_equal(cg_list_vms(t->fd, "balloon.slice", &names), 3);
        assert_int_equal(strv_length(names), 3);
        assert_string_equal(names[0], "Alpha");
        assert_string_equal(names[1], "db_2");
        assert_string_equal(names[2], "web");
        assert_null(names[3]);
        strv_free(names);

        names = NULL;
        assert_int_equal(cg_list_vms(t->fd, "empty.slice", &names), 0);
        assert_non_null(names);
        assert_null(names[0]);
        strv_free(names);

        /* Nested parent: children of "balloon-web.slice" are "balloon-web-<vm>.slice". */
        names = NULL;
        assert_int_equal(cg_list_vms(t->fd, "balloon.slice/balloon-web.slice", &names), 1);
        assert_string_equal(names[0], "inner");
        strv_free(names);

        names = NULL;
        assert_int_equal(cg_list_vms(t->fd, "missing.slice", &names), -ENOENT);
        assert_int_equal(cg_list_vms(t->fd, "balloon", &names), -EINVAL);
        assert_int_equal(cg_list_vms(t->fd, ".slice", &names), -EINVAL);
        assert_null(names);
}

static void test_vm_path(void **state) {
        char *p = NULL;

        assert_int_equal(cg_vm_path("balloon.slice", "web", &p), 0);
        assert_string_equal(p, "balloon.slice/balloon-web.slice");
        free(p);
        assert_int_equal(cg_vm_path("machine.slice/machine-vms.slice", "db_1", &p), 0);
        assert_string_equal(p, "machine.slice/machine-vms.slice/machine-vms-db_1.slice");
        free(p);

        p = NULL;
        assert_int_equal(cg_vm_path("balloon.slice", "a-b", &p), -EINVAL);
        assert_int_equal(cg_vm_path("balloon.slice", "", &p), -EINVAL);
        assert_int_equal(cg_vm_path("balloon.slice", "../x", &p), -EINVAL);
        assert_int_equal(cg_vm_path("balloon", "web", &p), -EINVAL);
        assert_null(p);
}

static void test_read_write_u64(void **state) {
        Tree *t = *state;
        const char *cg = "balloon.slice/balloon-web.slice";
        uint64_t v = 0;

        put_file(t->fd, "balloon.slice/balloon-web.slice/memory.high", "max\n");
        put_file(t->fd, "balloon.slice/balloon-web.slice/memory.current", "123456789\n");
        put_file(t->fd, "balloon.slice/balloon-web.slice/memory.min", "0");
        put_file(t->fd, "balloon.slice/balloon-web.slice/memory.bad", "12 34\n");
        put_file(t->fd, "balloon.slice/balloon-web.slice/memory.empty", "");
        put_file(t->fd, "balloon.slice/balloon-web.slice/memory.neg", "-1\n");
        put_file(t->fd, "balloon.slice/balloon-web.slice/memory.huge", "18446744073709551616\n");
        put_file(t->fd, "memory.current", "42\n");

        assert_int_equal(cg_read_u64(t->fd, cg, "memory.high", &v), 0);
        assert_true(v == SIZE_UNLIMITED);
        assert_int_equal(cg_read_u64(t->fd, cg, "memory.current", &v), 0);
        assert_true(v == 123456789);
        assert_int_equal(cg_read_u64(t->fd, cg, "memory.min", &v), 0);
        assert_true(v == 0);
        assert_int_equal(cg_read_u64(t->fd, "", "memory.current", &v), 0); /* the root itself */
        assert_true(v == 42);

        v = 7;
        assert_int_equal(cg_read_u64(t->fd, cg, "memory.bad", &v), -EBADMSG);
        assert_int_equal(cg_read_u64(t->fd, cg, "memory.empty", &v), -EBADMSG);
        assert_int_equal(cg_read_u64(t->fd, cg, "memory.neg", &v), -EBADMSG);
        assert_int_equal(cg_read_u64(t->fd, cg, "memory.huge", &v), -EBADMSG);
        assert_int_equal(cg_read_u64(t->fd, cg, "memory.max", &v), -ENOENT);
        assert_int_equal(cg_read_u64(t->fd, "balloon.slice/balloon-gone.slice", "memory.high", &v), -ENOENT);
        assert_int_equal(cg_read_u64(t->fd, cg, "../memory.high", &v), -EINVAL);
        assert_true(v == 7);

        /* Write and read back; the file must exist (cgroupfs creates no files). */
        put_file(t->fd, "balloon.slice/balloon-web.slice/memory.high", "");
        assert_int_equal(cg_write_u64(t->fd, cg, "memory.high", 2 * GIB), 0);
        assert_int_equal(cg_read_u64(t->fd, cg, "memory.high", &v), 0);
        assert_true(v == 2 * GIB);
        put_file(t->fd, "balloon.slice/balloon-web.slice/memory.high", "");
        assert_int_equal(cg_write_u64(t->fd, cg, "memory.high", SIZE_UNLIMITED), 0);
        assert_int_equal(cg_read_u64(t->fd, cg, "memory.high", &v), 0);
        assert_true(v == SIZE_UNLIMITED);
        char *text;
        assert_int_equal(read_full_file_at(t->fd, "balloon.slice/balloon-web.slice/memory.high", 100, &text, NULL), 0);
        assert_string_equal(text, "max");
        free(text);

        assert_int_equal(cg_write_u64(t->fd, cg, "memory.swap.max", 1), -ENOENT);
        assert_int_equal(faccessat(t->fd, "balloon.slice/balloon-web.slice/memory.swap.max", F_OK, 0), -1);
}

static void test_memory_stat(void **state) {
        Tree *t = *state;
        const char *cg = "balloon.slice/balloon-web.slice";
        CgMemoryStat s = {};

        put_file(t->fd, "balloon.slice/balloon-web.slice/memory.stat",
                 "anon 1000\n"
                 "file 2000\n"
                 "kernel 3\n"
                 "shmem 300\n"
                 "workingset_refault_anon 7\n"
                 "workingset_refault_file 4000\n"
                 "pgfault 99999999999\n"
                 "pgscan 4096\n");
        assert_int_equal(cg_read_memory_stat(t->fd, cg, &s), 0);
        assert_true(s.anon == 1000);
        assert_true(s.file == 2000);
        assert_true(s.shmem == 300);
        assert_true(s.workingset_refault_file == 4000);
        assert_true(s.pgscan == 4096);

        /* Optional keys missing read 0. */
        put_file(t->fd, "balloon.slice/balloon-web.slice/memory.stat", "file 5\nanon 6\n");
        assert_int_equal(cg_read_memory_stat(t->fd, cg, &s), 0);
        assert_true(s.anon == 6 && s.file == 5 && s.shmem == 0 && s.workingset_refault_file == 0 &&
                    s.pgscan == 0);

        static const char *const bad[] = {
                "",
                "anon 1\n",                     /* no file */
                "anon 1\nfile\n",
                "anon 1\nfile x\n",
                "anon 1\nfile 2 3\n",
                "anon 1\nfile -2\n",
                "anon 1\n file 2\n",
                "anon 1\nfile 2\nshmem 18446744073709551616\n",
        };
        s.anon = 77;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                put_file(t->fd, "balloon.slice/balloon-web.slice/memory.stat", bad[i]);
                if (cg_read_memory_stat(t->fd, cg, &s) != -EBADMSG)
                        fail_msg("accepted memory.stat \"%s\"", bad[i]);
        }
        assert_true(s.anon == 77);

        assert_int_equal(cg_read_memory_stat(t->fd, "balloon.slice/balloon-Alpha.slice", &s), -ENOENT);
}

static void test_populated(void **state) {
        Tree *t = *state;
        const char *cg = "balloon.slice/balloon-web.slice";
        const char *events = "balloon.slice/balloon-web.slice/cgroup.events";
        bool b = false;

        put_file(t->fd, events, "populated 1\nfrozen 0\n");
        assert_int_equal(cg_read_populated(t->fd, cg, &b), 0);
        assert_true(b);
        put_file(t->fd, events, "frozen 0\npopulated 0\n");
        assert_int_equal(cg_read_populated(t->fd, cg, &b), 0);
        assert_false(b);

        b = true;
        put_file(t->fd, events, "frozen 0\n");
        assert_int_equal(cg_read_populated(t->fd, cg, &b), -EBADMSG);
        put_file(t->fd, events, "populated 2\n");
        assert_int_equal(cg_read_populated(t->fd, cg, &b), -EBADMSG);
        put_file(t->fd, events, "populated yes\n");
        assert_int_equal(cg_read_populated(t->fd, cg, &b), -EBADMSG);
        assert_true(b);
        assert_int_equal(cg_read_populated(t->fd, "balloon.slice/balloon-Alpha.slice", &b), -ENOENT);
}

static void test_open_file(void **state) {
        Tree *t = *state;
        int fd = -1;
        char buf[16] = {};

        put_file(t->fd, "balloon.slice/balloon-web.slice/memory.pressure", "some\n");
        assert_int_equal(cg_open_file(t->fd, "balloon.slice/balloon-web.slice", "memory.pressure", O_RDONLY, &fd), 0);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        assert_int_equal(read(fd, buf, sizeof buf - 1), 5);
        assert_string_equal(buf, "some\n");
        assert_int_equal(close(fd), 0);

        put_file(t->fd, "cgroup.procs", "");
        assert_int_equal(cg_open_file(t->fd, "", "cgroup.procs", O_WRONLY, &fd), 0);
        assert_int_equal(close(fd), 0);

        fd = -1;
        assert_int_equal(cg_open_file(t->fd, "balloon.slice", "memory.pressure", O_RDONLY, &fd), -ENOENT);
        assert_int_equal(fd, -1);
}

static void check_vm(const char *parent, const char *path, int expect, const char *cgpath, const char *vm) {
        char *c = NULL, *v = NULL;

        assert_int_equal(cg_vm_from_path(parent, path, &c, &v), expect);
        if (expect < 0) {
                assert_null(c);
                return;
        }
        assert_string_equal(c, cgpath);
        if (vm)
                assert_string_equal(v, vm);
        else
                assert_null(v);
        free(c);
        free(v);
}

static void test_vm_from_path(void **state) {
        /* libvirt on systemd with <partition>/balloon/web</partition>: QEMU's threads sit below. */
        check_vm("balloon.slice", "balloon.slice/balloon-web.slice/machine-qemu\\x2d1\\x2dweb.scope/libvirt/emulator",
                 0, "balloon.slice/balloon-web.slice", "web");
        check_vm("balloon.slice", "balloon.slice/balloon-web.slice", 0, "balloon.slice/balloon-web.slice", "web");
        /* The default partition: the machine scope, named by libvirt. */
        check_vm("balloon.slice", "machine.slice/machine-qemu\\x2d3\\x2ddb.scope/libvirt/vcpu0",
                 0, "machine.slice/machine-qemu\\x2d3\\x2ddb.scope", NULL);
        check_vm("balloon.slice", "machine.slice/machine-qemu\\x2d3\\x2ddb.scope", 0,
                 "machine.slice/machine-qemu\\x2d3\\x2ddb.scope", NULL);
        /* libvirt without systemd. */
        check_vm("balloon.slice", "machine/qemu-2-db.libvirt-qemu/emulator", 0, "machine/qemu-2-db.libvirt-qemu", NULL);
        /* A nested parent slice. */
        check_vm("x.slice/x-balloon.slice", "x.slice/x-balloon.slice/x-balloon-a_1.slice/y.scope", 0,
                 "x.slice/x-balloon.slice/x-balloon-a_1.slice", "a_1");
        /* Below the parent but no VM slice: only a machine scope is the VM's. */
        check_vm("balloon.slice", "balloon.slice/machine-qemu\\x2d4\\x2dother.scope", 0,
                 "balloon.slice/machine-qemu\\x2d4\\x2dother.scope", NULL);
        check_vm("balloon.slice", "balloon.slice/other.scope", -ENXIO, NULL, NULL);
        check_vm("balloon.slice", "balloon.slice/balloon-bad-name.slice/z.scope", -ENXIO, NULL, NULL);
        /* A session libvirtd's domain in a login session, or in a user's own scope: not a VM cgroup. */
        check_vm("balloon.slice", "user.slice/user-1000.slice/session-3.scope", -ENXIO, NULL, NULL);
        check_vm("balloon.slice", "user.slice/user-1000.slice/user@1000.service/app.slice/run-r1.scope",
                 -ENXIO, NULL, NULL);
        check_vm("balloon.slice", "machine.slice/machine-qemu\\x2d.scope", -ENXIO, NULL, NULL);
        /* No cgroup of its own (libvirt's cgroups disabled: QEMU stays in the daemon's). */
        check_vm("balloon.slice", "system.slice/libvirtd.service", -ENXIO, NULL, NULL);
        check_vm("balloon.slice", "", -ENXIO, NULL, NULL);
        check_vm("balloon.slice", "balloon.slice", -ENXIO, NULL, NULL);
        /* A domain's escaped name, unescaped; an unescaped '-' is a deeper slice, not a name. */
        check_vm("balloon.slice", "balloon.slice/balloon-instance\\x2d0000002a.slice/machine-qemu\\x2d1\\x2dx.scope",
                 0, "balloon.slice/balloon-instance\\x2d0000002a.slice", "instance-0000002a");
        check_vm("balloon.slice", "balloon.slice/balloon-ubuntu22.04.slice", 0, "balloon.slice/balloon-ubuntu22.04.slice",
                 "ubuntu22.04");
        check_vm("balloon.slice", "balloon.slice/balloon-a\\x2fb.slice", -ENXIO, NULL, NULL);
        check_vm("balloon.slice", "balloon.slice/balloon-a\\x2.slice", -ENXIO, NULL, NULL);
        /* Not a prefix match on a longer name. */
        check_vm("balloon.slice", "balloon.slicex/balloon-web.slice", -ENXIO, NULL, NULL);
        check_vm("notaslice", "balloon.slice/balloon-web.slice", -EINVAL, NULL, NULL);
}

/* A call that returns a string in p: its result as expected, p only on success; frees p. */
#define CHECK_STR(call, expect, want)                                   \
        do {                                                            \
                char *p = NULL;                                         \
                assert_int_equal((call), (expect));                     \
                if ((expect) >= 0)                                      \
                        assert_string_equal(p, (want));                 \
                else                                                    \
                        assert_null(p);                                 \
                free(p);                                                \
        } while (0)

static void test_partition_path(void **state) {
        CHECK_STR(cg_partition_path("/balloon/web", &p), 0, "balloon.slice/balloon-web.slice");
        CHECK_STR(cg_partition_path("/machine", &p), 0, "machine.slice");
        CHECK_STR(cg_partition_path("/a/b/c", &p), 0, "a.slice/a-b.slice/a-b-c.slice");
        CHECK_STR(cg_partition_path("/balloon//web/", &p), 0, "balloon.slice/balloon-web.slice");
        CHECK_STR(cg_partition_path("balloon/web", &p), -EINVAL, NULL);
        CHECK_STR(cg_partition_path("/", &p), -EINVAL, NULL);
        /* Escaped as libvirt and systemd do, so every domain name can have a slice. */
        CHECK_STR(cg_partition_path("/bal-loon/web", &p), 0, "bal\\x2dloon.slice/bal\\x2dloon-web.slice");
        CHECK_STR(cg_partition_path("/balloon/instance-0000002a", &p), 0,
                  "balloon.slice/balloon-instance\\x2d0000002a.slice");
        CHECK_STR(cg_partition_path("/balloon/ubuntu22.04", &p), 0, "balloon.slice/balloon-ubuntu22.04.slice");
        CHECK_STR(cg_partition_path("/balloon/.x", &p), 0, "balloon.slice/balloon-\\x2ex.slice");
        CHECK_STR(cg_partition_path("/balloon/.", &p), -EINVAL, NULL);
        CHECK_STR(cg_partition_path("/balloon/../x", &p), -EINVAL, NULL);

        /* A slice name systemd would refuse (over 255 characters with ".slice") is refused, before
         * the path grows with the square of the components: 2048 of them made 4 MB in 4 s. */
        char deep[2 * 2048 + 1], *q = NULL;
        for (size_t i = 0; i < 2048; i++)
                memcpy(deep + 2 * i, "/a", 2);
        deep[2 * 2048] = 0;
        deep[2 * 125] = 0;      /* a-a-...-a.slice: 125 * 2 - 1 + 6 = 255 */
        assert_int_equal(cg_partition_path(deep, &q), 0);
        assert_int_equal(strlen(strrchr(q, '/') + 1), 255);
        free(q);
        deep[2 * 125] = '/';
        deep[2 * 126] = 0;
        CHECK_STR(cg_partition_path(deep, &p), -EINVAL, NULL);
        deep[2 * 126] = '/';
        CHECK_STR(cg_partition_path(deep, &p), -EINVAL, NULL);
}

static const char mountinfo[] =
        "22 28 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
        "26 25 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755\n"
        "27 26 0:25 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate\n"
        "30 26 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,memory\n"
        "40 28 0:25 /user.slice /mnt/cg rw shared:5 - cgroup2 cgroup2 rw\n";

static void test_hierarchy_path(void **state) {
        CHECK_STR(cg_hierarchy_path(mountinfo, "/sys/fs/cgroup/unified", &p), 0, "/");
        CHECK_STR(cg_hierarchy_path(mountinfo, "/sys/fs/cgroup/unified/user.slice/abtest-1", &p), 0,
                  "/user.slice/abtest-1");
        /* A bind mount of a sub-tree: its root field. */
        CHECK_STR(cg_hierarchy_path(mountinfo, "/mnt/cg/x", &p), 0, "/user.slice/x");
        CHECK_STR(cg_hierarchy_path(mountinfo, "/mnt/cg", &p), 0, "/user.slice");
        /* The v1 memory hierarchy and a look-alike name are not it. */
        CHECK_STR(cg_hierarchy_path(mountinfo, "/sys/fs/cgroup/memory/x", &p), -ENOENT, NULL);
        CHECK_STR(cg_hierarchy_path(mountinfo, "/sys/fs/cgroup/unifiedx", &p), -ENOENT, NULL);
        /* A unified host. */
        CHECK_STR(cg_hierarchy_path("25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "/sys/fs/cgroup", &p),
                  0, "/");
        CHECK_STR(cg_hierarchy_path("25 1 0:22 / / rw - cgroup2 cgroup2 rw\n", "/a/b", &p), 0, "/a/b");
        CHECK_STR(cg_hierarchy_path("garbage\n\n", "/sys/fs/cgroup", &p), -ENOENT, NULL);
}

static void test_proc_cgroup(void **state) {
        CHECK_STR(cg_proc_cgroup_path("12:memory:/user.slice/x\n0::/user.slice/x/balloon.slice\n", &p), 0,
                  "/user.slice/x/balloon.slice");
        CHECK_STR(cg_proc_cgroup_path("0::/\n", &p), 0, "/");
        CHECK_STR(cg_proc_cgroup_path("12:memory:/a\n1:name=systemd:/b\n", &p), -ENOENT, NULL);
        CHECK_STR(cg_proc_cgroup_path("", &p), -ENOENT, NULL);

        CHECK_STR(cg_path_below("/user.slice/x", "/user.slice/x/balloon.slice/balloon-a.slice", &p), 0,
                  "balloon.slice/balloon-a.slice");
        CHECK_STR(cg_path_below("/", "/machine.slice/m.scope", &p), 0, "machine.slice/m.scope");
        CHECK_STR(cg_path_below("/user.slice/x", "/user.slice/x", &p), 0, "");
        CHECK_STR(cg_path_below("/user.slice/x", "/user.slice/xy/balloon.slice", &p), -EXDEV, NULL);
        CHECK_STR(cg_path_below("/user.slice/x", "/system.slice", &p), -EXDEV, NULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_open_and_check, tree_setup, tree_teardown),
                cmocka_unit_test_setup_teardown(test_list_vms, tree_setup, tree_teardown),
                cmocka_unit_test(test_vm_path),
                cmocka_unit_test(test_vm_from_path),
                cmocka_unit_test(test_partition_path),
                cmocka_unit_test(test_hierarchy_path),
                cmocka_unit_test(test_proc_cgroup),
                cmocka_unit_test_setup_teardown(test_read_write_u64, tree_setup, tree_teardown),
                cmocka_unit_test_setup_teardown(test_memory_stat, tree_setup, tree_teardown),
                cmocka_unit_test_setup_teardown(test_populated, tree_setup, tree_teardown),
                cmocka_unit_test_setup_teardown(test_open_file, tree_setup, tree_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
