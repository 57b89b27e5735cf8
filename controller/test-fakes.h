/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* FAKES for the unit tests of the daemon's core (test-vm.c, test-manager.c, test-bus.c): a fake
 * backend that records what vm.c asks of it, a fake VM source, and a temporary directory tree standing
 * in for the cgroup root, /proc and the configuration and runtime directories. They stand in for QEMU,
 * libvirt and the kernel's cgroup files; the code under test is the daemon's own. */

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "backend.h"
#include "cgroup.h"
#include "discovery.h"
#include "manager.h"
#include "util.h"
#include "vm.h"

/* ---- A fake backend ---- */

typedef struct FakeBackend {
        Backend backend;
        unsigned started, refreshes;
        unsigned pending;          /* what refresh() returns: the answers the test gives later */
        unsigned n_targets;
        uint64_t target;           /* of the last set_target() */
        uint64_t high_at_target;   /* memory.high in the VM's cgroup when it came; 0: none */
        unsigned cancel_on_free;   /* answers free() reports as done, as QMP cancels its queries */
        unsigned n_intervals;      /* set_stats_interval() calls */
        uint64_t stats_interval;   /* of the last one */
        bool *freed;               /* set when the VM frees its backend */
} FakeBackend;

static inline FakeBackend *fake_backend_of(VM *vm) {
        return (FakeBackend *) vm->backend;
}

static inline int fake_backend_start(Backend *b) {
        ((FakeBackend *) b)->started++;
        return 0;
}

static inline void fake_backend_free(Backend *b) {
        FakeBackend *f = (FakeBackend *) b;

        if (f->freed)
                *f->freed = true;
        for (; f->cancel_on_free > 0; f->cancel_on_free--)
                vm_backend_refresh_done(b->vm);
        free(f);
}

static inline unsigned fake_backend_refresh(Backend *b) {
        FakeBackend *f = (FakeBackend *) b;

        f->refreshes++;
        return f->pending;
}

static inline int fake_backend_set_target(Backend *b, uint64_t bytes) {
        FakeBackend *f = (FakeBackend *) b;
        VM *vm = b->vm;

        f->n_targets++;
        f->target = bytes;
        f->high_at_target = 0;
        if (vm->cgpath)
                (void) cg_read_u64(vm->ctx->cgroup_fd, vm->cgpath, "memory.high", &f->high_at_target);
        return 0;
}

static inline void fake_backend_set_stats_interval(Backend *b, uint64_t usec) {
        FakeBackend *f = (FakeBackend *) b;

        f->n_intervals++;
        f->stats_interval = usec;
}

static const BackendOps fake_backend_ops = {
        .name = "fake",
        .start = fake_backend_start,
        .free = fake_backend_free,
        .refresh = fake_backend_refresh,
        .set_target = fake_backend_set_target,
        .set_stats_interval = fake_backend_set_stats_interval,
};

/* A VM with a fake backend, not started yet. 'freed' may be NULL. */
static inline VM *fake_vm_new(const VMContext *ctx, const char *name, const char *cgpath, bool *freed) {
        FakeBackend *f = calloc(1, sizeof *f);
        VM *vm = NULL;

        assert_non_null(f);
        assert_int_equal(vm_new(ctx, name, cgpath, &vm), 0);
        f->backend.ops = &fake_backend_ops;
        f->freed = freed;
        vm_attach_backend(vm, &f->backend);
        return vm;
}

/* The guest stats a guest with 'available' bytes available reports at 'last_update' (seconds). */
static inline GuestStats fake_stats(uint64_t last_update, uint64_t available) {
        GuestStats s = { .last_update = last_update };

        s.value[GUEST_STAT_AVAILABLE_MEMORY] = available;
        s.value[GUEST_STAT_FREE_MEMORY] = available / 2;
        s.valid = UINT32_C(1) << GUEST_STAT_AVAILABLE_MEMORY | UINT32_C(1) << GUEST_STAT_FREE_MEMORY;
        return s;
}

/* ---- A fake VM source: the test adds and removes its VMs ---- */

typedef struct FakeSource {
        Discovery discovery;
        unsigned starts, ticks;
} FakeSource;

static inline int fake_source_start(Discovery *d) {
        ((FakeSource *) d)->starts++;
        return 0;
}

static inline void fake_source_tick(Discovery *d) {
        ((FakeSource *) d)->ticks++;
}

static inline void fake_source_free(Discovery *d) {
        discovery_done(d);
        free(d);
}

static const DiscoveryOps fake_source_ops = {
        .name = "fake",
        .start = fake_source_start,
        .tick = fake_source_tick,
        .free = fake_source_free,
};

static inline int fake_source_new(const DiscoveryContext *ctx, Discovery **ret) {
        FakeSource *s = calloc(1, sizeof *s);

        if (!s)
                return -ENOMEM;
        s->discovery = (Discovery) { .ops = &fake_source_ops, .ctx = ctx };
        *ret = &s->discovery;
        return 0;
}

/* A VM of the source in its balloon slice, started and handed to the manager. */
static inline VM *fake_source_add(Discovery *d, const char *name, bool *freed) {
        _cleanup_free_ char *cgpath = NULL;
        VM *vm;

        assert_int_equal(cg_vm_path(d->ctx->vm->config->parent_slice, name, &cgpath), 0);
        vm = fake_vm_new(d->ctx->vm, name, cgpath, freed);
        assert_int_equal(vm_start(vm), 0);
        assert_int_equal(discovery_add_vm(d, vm), 0);
        return vm;
}

/* ---- A temporary tree: cgroup root, /proc, configuration and runtime directories ---- */

#define FAKE_BOOT_ID "3f2c9a4e-1b7d-4c55-9e0a-6d8b2f1c7e90"

typedef struct FakeTree {
        char root[64];
        char *cgroup, *proc, *config, *runtime;
        int cgroup_fd;
} FakeTree;

/* Writes 'text' to <root>/<path>, creating the directories on the way. */
static inline void fake_tree_write(const FakeTree *t, const char *path, const char *text) {
        _cleanup_free_ char *p = NULL;
        FILE *f;

        assert_true(asprintf(&p, "%s/%s", t->root, path) > 0);
        for (char *s = strchr(p + strlen(t->root) + 1, '/'); s; s = strchr(s + 1, '/')) {
                *s = 0;
                assert_true(mkdir(p, 0755) == 0 || errno == EEXIST);
                *s = '/';
        }
        f = fopen(p, "we");
        assert_non_null(f);
        assert_true(fputs(text, f) >= 0);
        assert_int_equal(fclose(f), 0);
}

static inline char *fake_tree_read(const FakeTree *t, const char *path) {
        _cleanup_free_ char *p = NULL;
        char *text = NULL;

        assert_true(asprintf(&p, "%s/%s", t->root, path) > 0);
        return read_full_file_at(AT_FDCWD, p, 1024 * 1024, &text, NULL) >= 0 ? text : NULL;
}

/* A slice balloon.slice/balloon-<vm>.slice with memory.high, memory.current and, when the kernel has
 * PSI, the host's memory.pressure for its trigger. */
static inline void fake_tree_slice(const FakeTree *t, const char *vm, const char *memory_high) {
        _cleanup_free_ char *high = NULL, *current = NULL, *pressure = NULL;

        assert_true(asprintf(&high, "cgroup/balloon.slice/balloon-%s.slice/memory.high", vm) > 0);
        assert_true(asprintf(&current, "cgroup/balloon.slice/balloon-%s.slice/memory.current", vm) > 0);
        fake_tree_write(t, high, memory_high);
        fake_tree_write(t, current, "1073741824\n");
        assert_true(asprintf(&pressure, "%s/balloon.slice/balloon-%s.slice/memory.pressure", t->cgroup, vm) > 0);
        if (access("/proc/pressure/memory", R_OK) >= 0)
                assert_int_equal(symlink("/proc/pressure/memory", pressure), 0);
}

/* The tree with 'config' as autoballoon.conf, a 16G host with 8G available, and the host's real PSI
 * file, if there is one, for the host trigger (a plain file cannot be polled). */
static inline void fake_tree_new(FakeTree *t, const char *config) {
        _cleanup_free_ char *pressure = NULL;

        *t = (FakeTree) { .cgroup_fd = -EBADF };
        strcpy(t->root, "/tmp/test-core-XXXXXX");
        assert_non_null(mkdtemp(t->root));
        assert_true(asprintf(&t->cgroup, "%s/cgroup", t->root) > 0);
        assert_true(asprintf(&t->proc, "%s/proc", t->root) > 0);
        assert_true(asprintf(&t->config, "%s/config", t->root) > 0);
        assert_true(asprintf(&t->runtime, "%s/run", t->root) > 0);

        fake_tree_write(t, "config/autoballoon.conf", config);
        fake_tree_write(t, "proc/meminfo", "MemTotal:       16777216 kB\nMemAvailable:    8388608 kB\n");
        fake_tree_write(t, "cgroup/balloon.slice/memory.current", "0\n");
        fake_tree_write(t, "run/.keep", "");
        fake_tree_write(t, "proc/sys/kernel/random/boot_id", FAKE_BOOT_ID "\n");
        fake_tree_write(t, "proc/pressure/.keep", "");
        assert_true(asprintf(&pressure, "%s/pressure/memory", t->proc) > 0);
        if (access("/proc/pressure/memory", R_OK) >= 0)
                assert_int_equal(symlink("/proc/pressure/memory", pressure), 0);
        assert_int_equal(cg_open_root(t->cgroup, &t->cgroup_fd), 0);
}

static inline void fake_tree_done(FakeTree *t) {
        _cleanup_free_ char *cmd = NULL;

        safe_close(t->cgroup_fd);
        assert_true(asprintf(&cmd, "rm -rf '%s'", t->root) > 0);
        assert_int_equal(system(cmd), 0);
        free(t->cgroup);
        free(t->proc);
        free(t->config);
        free(t->runtime);
}

/* A manager cannot start without PSI: skips the test on such a kernel. */
static inline void fake_require_psi(void) {
        if (access("/proc/pressure/memory", R_OK) < 0)
                skip();
}

/* A manager on the tree, started, with these VM sources and the D-Bus API on 'bus' (BUS_NONE, or a
 * private bus); no system bus (memory.high through the tree's files). */
static inline Manager *fake_manager_start(const FakeTree *t, const discovery_new_t *sources, BusType bus) {
        ManagerOptions o = {
                .config_dir = t->config,
                .cgroup_root = t->cgroup,
                .proc_root = t->proc,
                .runtime_dir = t->runtime,
                .allow_plain_cgroup_dir = true,
                .bus_type = bus,
                .sources = sources,
        };
        Manager *m = NULL;

        assert_int_equal(setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/system_bus_socket", 1), 0);
        assert_int_equal(manager_new(&o, &m), 0);
        assert_int_equal(manager_start(m), 0);
        return m;
}

static inline uint64_t fake_now(void) {
        struct timespec ts;

        assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* Runs the loop until 'cond' holds, failing after 10 s. */
#define RUN_UNTIL(event, cond)                                                          \
        do {                                                                            \
                uint64_t _deadline = fake_now() + 10 * USEC_PER_SEC;                    \
                while (!(cond)) {                                                       \
                        if (fake_now() > _deadline)                                     \
                                fail_msg("timed out waiting for %s", #cond);            \
                        assert_true(sd_event_run((event), 10 * USEC_PER_MSEC) >= 0);    \
                }                                                                       \
        } while (false)
