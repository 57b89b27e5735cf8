/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <time.h>

#include "backend.h"
#include "cgroup.h"
#include "log.h"
#include "psi.h"
#include "util.h"
#include "vm.h"

static const char *const vm_state_table[] = {
        [VM_CONNECTING] = "connecting",
        [VM_PROBING] = "probing",
        [VM_READY] = "ready",
        [VM_UNSUPPORTED] = "unsupported",
};

const char *vm_state_to_string(VMState s) {
        return s < ELEMENTSOF(vm_state_table) ? vm_state_table[s] : "unknown";
}

static uint64_t now_usec(VM *vm) {
        uint64_t t = 0;
        (void) sd_event_now(vm->ctx->event, CLOCK_MONOTONIC, &t);
        return t;
}

static void vm_set_state(VM *vm, VMState s) {
        if (vm->state == s)
                return;
        log_debug("%s: %s -> %s", vm->name, vm_state_to_string(vm->state), vm_state_to_string(s));
        vm->state = s;
}

/* Weight/MinMemory/MaxMemory: the config file's [VM <name>] keys, then those of backend_config that
 * the file does not set, then the defaults; a runtime weight wins. */
static void vm_apply_config(VM *vm) {
        const Config *c = vm->ctx->config;
        const VMConfig *vc = config_find_vm(c, vm->name), *bc = &vm->backend_config;

        if (vc)
                vm->config = *vc;
        else
                vm_config_defaults(&vm->config);
        vm->config.name = vm->name;
        vm->min_from_domain = false;
        /* The host's configuration file wins over what a domain says of itself, and bounds it. */
        static const VMConfig none = {};
        if (!c->domain_metadata)
                bc = &none;
        if (!vm->config.weight_set && bc->weight_set) {
                vm->config.weight = MIN(bc->weight, c->domain_max_weight);
                if (bc->weight > c->domain_max_weight)
                        log_notice("%s: the domain asks for weight %" PRIu64 ", DomainMaxWeight= gives it %" PRIu64,
                                   vm->name, bc->weight, c->domain_max_weight);
        }
        if (!vm->config.min_set && bc->min_set) {
                vm->config.min_memory = bc->min_memory;
                vm->min_from_domain = true;
        }
        if (!vm->config.max_set && bc->max_set)
                vm->config.max_memory = bc->max_memory;
        if (vm->runtime_weight > 0)
                vm->config.weight = vm->runtime_weight;
        vm->limits_checked = false;
}

static int on_slice_trigger(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        VM *vm = userdata;

        if (revents & EPOLLERR) {
                /* The slice's cgroup was removed: the next scan drops the VM, or, if the slice was
                 * created again in between, the next refresh arms a trigger on the new one. */
                log_debug("%s: slice pressure trigger gone", vm->name);
                vm->slice_trigger = sd_event_source_disable_unref(vm->slice_trigger);
                vm->slice_trigger_lost = true;
                return 0;
        }

        vm->slice_pressure = true;
        vm->ctx->decide(vm->ctx, "slice pressure");
        /* And read it at once: the decision above had the last known stats only. */
        vm->next_refresh_usec = 0;
        vm->ctx->refresh_soon(vm->ctx);
        return 0;
}

/* 'retry': a trigger lost with its cgroup is tried again at each refresh, logged only once it works. */
static int vm_arm_slice_trigger(VM *vm, bool retry) {
        _cleanup_free_ char *path = NULL;
        int r;

        vm->slice_trigger = sd_event_source_disable_unref(vm->slice_trigger);
        if (!vm->cgpath)
                return 0;

        if (asprintf(&path, "%s/memory.pressure", vm->cgpath) < 0)
                return log_oom();

        r = vm->ctx->arm_trigger(vm->ctx, path, vm->ctx->config->slice_trigger_stall_usec, on_slice_trigger, vm,
                                 &vm->slice_trigger);
        if (r < 0) {
                if (retry)
                        return r;
                return log_warning_errno(r, "%s: cannot watch slice pressure (%s), continuing without: %m",
                                         vm->name, path);
        }
        if (retry)
                log_info("%s: slice %s is back, its pressure trigger re-armed", vm->name, vm->cgpath);
        vm->slice_trigger_lost = false;
        return 0;
}

void vm_reload(VM *vm) {
        vm_apply_config(vm);
        (void) vm_arm_slice_trigger(vm, false);
}

/* Callbacks of the backend (backend.h). */

void vm_backend_probing(VM *vm) {
        vm_set_state(vm, VM_PROBING);
}

/* A guest's balloon lies are logged at most once per this, per VM, so a guest cannot flood the log. */
#define INVALID_LOG_INTERVAL_USEC (10 * 60 * USEC_PER_SEC)

/* A balloon has made progress once it moved this far towards its target since its last progress, or
 * reached it: a balloon moving a page per BalloonStallSec= is stalled, not slow. */
#define PROGRESS_MIN (4 * MIB)

/* Whether a warning limited by 'l' is said now; if so, *ret_suppressed is how many were not since the
 * last one. */
static bool vm_log_limit(VM *vm, VMLogLimit *l, unsigned *ret_suppressed) {
        uint64_t now = now_usec(vm);

        if (l->logged_usec != 0 && now < l->logged_usec + INVALID_LOG_INTERVAL_USEC) {
                l->suppressed++;
                return false;
        }
        *ret_suppressed = l->suppressed;
        l->logged_usec = now ?: 1;
        l->suppressed = 0;
        return true;
}

static void vm_log_invalid(VM *vm, const char *what, uint64_t bytes, bool malformed) {
        unsigned n;

        if (!vm_log_limit(vm, &vm->invalid_size_log, &n))
                return;
        if (malformed)
                log_warning("%s: balloon size in %s is not a size, ignoring it (%u more ignored since the last warning)",
                            vm->name, what, n);
        else
                log_warning("%s: balloon size %" PRIu64 " in %s is above the boot memory %" PRIu64
                            ", ignoring it (%u more ignored since the last warning)",
                            vm->name, bytes, what, vm->boot_memory, n);
}

/* Balloon sizes come from the guest (QEMU passes its config.actual on): within [0, boot memory] or
 * not believed. */
static bool vm_size_valid(VM *vm, uint64_t bytes, const char *what) {
        if (vm->boot_memory == 0 || bytes <= vm->boot_memory)
                return true;
        vm_log_invalid(vm, what, bytes, false);
        return false;
}

static void vm_mark_progress(VM *vm) {
        vm->last_progress_usec = now_usec(vm);
        vm->progress_actual = vm->actual;
}

void vm_backend_ready(VM *vm, uint64_t boot_memory, uint64_t actual, const char *device) {
        char a[FORMAT_BYTES_MAX], b[FORMAT_BYTES_MAX];
        char *d = strdup(device);

        if (!d) {
                log_oom();
                return;
        }
        free(vm->device);
        vm->device = d;
        vm->boot_memory = boot_memory;

        /* QEMU runs in the slice now, so systemd has loaded it if it manages it. */
        if (vm->unit)
                (void) systemd_unit_refresh(vm->unit);

        /* Adopt the balloon as it is: a restarted daemon (or libvirtd) must not reset anything. A
         * size past the boot memory is the guest's word against QEMU's: take the boot memory, which
         * lowers nothing. */
        if (!vm_size_valid(vm, actual, "probe"))
                actual = boot_memory;
        vm->actual = vm->target = vm->progress_actual = actual;
        vm->last_progress_usec = 0;
        if (vm->ctx->take_saved_carry && vm->ctx->take_saved_carry(vm->ctx, vm->name, &vm->carry))
                log_info("%s: hysteresis, back-off and stall count carried over from before the restart",
                         vm->name);
        /* The backend asked the guest for stats at StatsIntervalSec=; the first refresh is now. */
        vm->poll_interval_usec = vm->ctx->config->stats_interval_usec;
        vm->next_refresh_usec = 0;
        vm_set_state(vm, VM_READY);
        vm->limits_checked = false; /* against the new boot memory */
        vm->ctx->refresh_soon(vm->ctx);
        log_info("%s: adopted: balloon %s (%s), actual %s of %s boot memory, weight %" PRIu64,
                 vm->name, vm->device, vm->backend->ops->name, format_bytes(a, sizeof a, actual),
                 format_bytes(b, sizeof b, vm->boot_memory), vm->config.weight);
}

void vm_backend_unsupported(VM *vm, const char *why) {
        if (vm->state == VM_UNSUPPORTED)
                return;
        vm_set_state(vm, VM_UNSUPPORTED);
        vm->has_stats = vm->has_prev_stats = false;
        log_warning("%s: %s; not managed", vm->name, why);
}

void vm_backend_lost(VM *vm, int error) {
        if (vm->state == VM_READY)
                log_info_errno(error, "%s: lost the %s connection (%m); not managed until it answers again",
                               vm->name, vm->backend->ops->name);
        vm_set_state(vm, VM_CONNECTING);
        vm->has_stats = vm->has_prev_stats = false;
}

/* Where the balloon is now. Towards the target it is progress, counted once it is real; a move
 * nobody asked for is adopted only when it gives the guest memory (another QMP client or virsh setmem
 * deflating, the guest deflating on OOM), a step at a time, never when it takes some: a guest reporting a balloon it
 * did not inflate must not lower its own target, hence its memory.high. Returns whether a move was
 * adopted. */
static bool vm_balloon_moved(VM *vm, uint64_t actual) {
        char a[FORMAT_BYTES_MAX], b[FORMAT_BYTES_MAX], c[FORMAT_BYTES_MAX];
        uint64_t was = vm->actual;

        if (actual == was)
                return false;
        vm->actual = actual;

        if (vm->target < was ? actual >= vm->target && actual < was : actual > was && actual <= vm->target) {
                uint64_t moved = actual > vm->progress_actual ? actual - vm->progress_actual : vm->progress_actual - actual;

                if (actual == vm->target || moved >= PROGRESS_MIN)
                        vm_mark_progress(vm);
                return false;
        }

        if (actual > was) {
                /* The size is the guest's word (config.actual): one report moves our target by at
                 * most DeflateStep=, so a guest claiming an empty balloon is not handed its memory
                 * back in one go. */
                uint64_t adopted = vm->target + MIN(actual - vm->target, vm->ctx->config->deflate_step);

                log_info("%s: balloon deflated to %s past our target %s: adopting %s", vm->name,
                         format_bytes(a, sizeof a, actual), format_bytes(b, sizeof b, vm->target),
                         format_bytes(c, sizeof c, adopted));
                vm->target = adopted;
                vm->progress_actual = actual;
                vm->last_progress_usec = 0;
                vm->guest_deflations++;
                return true;
        }

        /* Not adopted, nor a stall to back off from: the target stands, and bounds memory.high. */
        log_info("%s: balloon inflated to %s past our target %s, which we did not ask: keeping the target",
                 vm->name, format_bytes(a, sizeof a, actual), format_bytes(b, sizeof b, vm->target));
        vm->last_progress_usec = 0;
        return false;
}

void vm_backend_balloon_moved(VM *vm, uint64_t actual) {
        if (!vm_size_valid(vm, actual, "a balloon report"))
                return;
        /* memory.high must follow a deflation at once, so the host does not reclaim what the guest
         * just got back. */
        if (vm_balloon_moved(vm, actual) && vm->state == VM_READY)
                vm->ctx->decide(vm->ctx, "balloon deflated outside the daemon");
}

void vm_backend_balloon_invalid(VM *vm, const char *what) {
        vm_log_invalid(vm, what, 0, true);
}

void vm_backend_target_refused(VM *vm) {
        /* The balloon stays where it is; waiting for the target would only look like a stall. */
        vm->target = vm->actual;
        vm->last_progress_usec = 0;
}

/* Whether the folded guest pressure messages are presented to the policy at 'now'. */
static bool vm_pressure_due(const VM *vm, uint64_t now) {
        return vm->pressure_event &&
                (vm->pressure_acted_usec == 0 ||
                 now >= vm->pressure_acted_usec + vm->ctx->config->guest_pressure_interval_usec);
}

static int on_pressure_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        VM *vm = userdata;

        if (vm->state == VM_READY && vm_pressure_due(vm, usec))
                vm->ctx->decide(vm->ctx, "guest pressure event");
        return 0;
}

/* Decides when the interval since the last messages acted on ends. */
static void vm_arm_pressure_timer(VM *vm) {
        uint64_t when = vm->pressure_acted_usec + vm->ctx->config->guest_pressure_interval_usec;
        int r;

        if (vm->pressure_timer) {
                r = sd_event_source_set_time(vm->pressure_timer, when);
                if (r >= 0)
                        r = sd_event_source_set_enabled(vm->pressure_timer, SD_EVENT_ONESHOT);
        } else
                r = sd_event_add_time(vm->ctx->event, &vm->pressure_timer, CLOCK_MONOTONIC, when, 0,
                                      on_pressure_timer, vm);
        if (r < 0)
                /* The next tick decides on it instead. */
                log_warning_errno(r, "%s: cannot arm the guest pressure timer, the next decision takes the message: %m",
                                  vm->name);
}

/* The guest pressure queue (docs/guest-pressure.md): the device forwards the guest's
 * message and decides nothing, and the event says nothing of the balloon. The policy cancels and
 * deflates from the daemon's own target and last-read size; here the messages are only folded and
 * rate-limited, so a guest sending them without end gets one decision per interval. */
void vm_backend_guest_pressure(VM *vm, const GuestPressureEvent *e) {
        uint64_t now = now_usec(vm);
        /* A hint, bounded like every size the guest gives (QEMU bounds it to the RAM size too). */
        uint64_t size = vm->boot_memory > 0 ? MIN(e->size, vm->boot_memory) : e->size;

        if (!vm->pressure_event || e->level > vm->pressure_event_level)
                vm->pressure_event_level = e->level;
        vm->pressure_event_size = vm->pressure_event ? MAX(vm->pressure_event_size, size) : size;
        vm->pressure_event_count = vm->pressure_event ? vm->pressure_event_count + 1 : 1;
        vm->pressure_event = true;
        log_debug("%s: guest pressure message, level %s, size %" PRIu64 " (%" PRIu64 " pending)", vm->name,
                  guest_pressure_level_to_string(e->level), size, vm->pressure_event_count);

        if (vm->state != VM_READY)
                return;
        if (vm_pressure_due(vm, now))
                vm->ctx->decide(vm->ctx, "guest pressure event");
        else
                vm_arm_pressure_timer(vm);
}

void vm_backend_guest_pressure_invalid(VM *vm, int error) {
        unsigned n;

        if (!vm_log_limit(vm, &vm->invalid_event_log, &n))
                return;
        if (error == -EOPNOTSUPP)
                log_warning("%s: BALLOON_GUEST_PRESSURE event with a level this daemon does not know, ignoring it "
                            "(%u more ignored since the last warning)", vm->name, n);
        else
                log_warning("%s: malformed BALLOON_GUEST_PRESSURE event, ignoring it (%u more ignored since the last warning)",
                            vm->name, n);
}

void vm_backend_refresh_done(VM *vm) {
        if (vm->refresh_pending == 0 || --vm->refresh_pending > 0)
                return;
        vm->ctx->query_done(vm->ctx, vm);
}

void vm_backend_metadata(VM *vm, const VMConfig *c) {
        vm->backend_config = *c;
        vm->backend_config.name = NULL;
        vm_apply_config(vm);
}

static int vm_set_cgpath(VM *vm, const char *cgpath) {
        _cleanup_free_ char *p = NULL;
        SystemdUnit *unit = NULL;

        if (streq_ptr(cgpath, vm->cgpath))
                return 0;
        if (cgpath) {
                p = strdup(cgpath);
                if (!p)
                        return log_oom();
                /* A slice's (or scope's) unit name is the last component of its cgroup path. */
                const char *last = strrchr(p, '/');
                if (systemd_unit_new(vm->ctx->systemd_bus, last ? last + 1 : p, vm->name, &unit) < 0)
                        return log_oom();
        }

        systemd_unit_free(vm->unit);
        vm->unit = unit;
        free(vm->cgpath);
        vm->cgpath = TAKE_PTR(p);
        vm->memory_high_known = vm->memory_high_checked = false;
        (void) vm_arm_slice_trigger(vm, false);
        return 0;
}

void vm_backend_cgroup(VM *vm, const char *cgpath) {
        (void) vm_set_cgpath(vm, cgpath);
}

int vm_new(const VMContext *ctx, const char *name, const char *cgpath, VM **ret) {
        _cleanup_(vm_freep) VM *vm = NULL;

        vm = new0(VM, 1);
        if (!vm)
                return log_oom();
        vm->ctx = ctx;
        vm->state = VM_CONNECTING;
        vm_config_defaults(&vm->backend_config);
        vm->name = strdup(name);
        if (!vm->name)
                return log_oom();
        vm_apply_config(vm);

        if (vm_set_cgpath(vm, cgpath) < 0)
                return -ENOMEM;

        *ret = TAKE_PTR(vm);
        return 0;
}

void vm_attach_backend(VM *vm, Backend *b) {
        b->vm = vm;
        vm->backend = b;
}

int vm_start(VM *vm) {
        return vm->backend->ops->start(vm->backend);
}

VM *vm_free(VM *vm) {
        if (!vm)
                return NULL;
        backend_free(vm->backend);
        systemd_unit_free(vm->unit);
        sd_event_source_disable_unref(vm->slice_trigger);
        sd_event_source_disable_unref(vm->pressure_timer);
        free(vm->device);
        free(vm->cgpath);
        free(vm->name);
        free(vm);
        return NULL;
}

static uint64_t stat_delta(const GuestStats *now, const GuestStats *prev, GuestStat i) {
        if (!guest_stat_valid(now, i) || !guest_stat_valid(prev, i) || now->value[i] < prev->value[i])
                return 0;
        return now->value[i] - prev->value[i];
}

static uint64_t minus(uint64_t a, uint64_t b) {
        return a > b ? a - b : 0;
}

/* A new guest report joins the window; what it says of the guest's recent use is computed once here
 * rather than at every decision. */
static void vm_window_add(VM *vm, uint64_t now) {
        uint64_t window = vm->ctx->config->idle_window_usec, free = 0, most_used;
        const VMWindowSample *last;
        VMWindowSample *w;

        if (guest_stat_valid(&vm->stats, GUEST_STAT_FREE_MEMORY))
                free = vm->stats.value[GUEST_STAT_FREE_MEMORY];

        /* Samples older than the window go, then the oldest if it is full. */
        while (vm->n_window > 0 &&
               (vm->window[vm->window_start].usec + window <= now || vm->n_window == VM_WINDOW_MAX)) {
                vm->window_start = (vm->window_start + 1) % VM_WINDOW_MAX;
                vm->n_window--;
        }
        last = vm->n_window > 0 ? &vm->window[(vm->window_start + vm->n_window - 1) % VM_WINDOW_MAX] : NULL;
        w = &vm->window[(vm->window_start + vm->n_window++) % VM_WINDOW_MAX];
        *w = (VMWindowSample) {
                .usec = now,
                .demand = minus(vm->actual, vm->stats.value[GUEST_STAT_AVAILABLE_MEMORY]),
                .actual = vm->actual,
                .guest_deflations = vm->guest_deflations,
                /* A balloon deflated past our target is the guest's doing (deflate-on-oom) to meet its
                 * own growth, which must count. */
                .moved = last && vm->actual != last->actual &&
                        !(vm->actual > last->actual && vm->guest_deflations != last->guest_deflations),
                .used = minus(vm->actual, free),
        };

        /* What the guest used in the window is measured against the balloon, not free memory alone:
         * memory given back by a deflation is free, and was never used. */
        most_used = w->used;
        vm->guest_growth = 0;
        for (unsigned i = 0; i < vm->n_window; i++) {
                const VMWindowSample *x = &vm->window[(vm->window_start + i) % VM_WINDOW_MAX],
                        *a = i >= 1 ? &vm->window[(vm->window_start + i - 1) % VM_WINDOW_MAX] : NULL,
                        *b = i >= 2 ? &vm->window[(vm->window_start + i - 2) % VM_WINDOW_MAX] : NULL;
                uint64_t base;

                /* The balloon size is read at once, the guest's report up to an interval late: across
                 * a move of ours, and in the interval after it, demand and use look as if they grew
                 * by the move. For the same reason a growth may show over two intervals: from the
                 * lower of the two samples before. */
                if (x->moved || (a && a->moved))
                        continue;
                most_used = MAX(most_used, x->used);
                if (!a)
                        continue;
                base = a->demand;
                if (b && !b->moved)
                        base = MIN(base, b->demand);
                vm->guest_growth = MAX(vm->guest_growth, minus(x->demand, base));
        }
        vm->guest_free_recent = MIN(most_used - w->used, free);
}

static void vm_update_stats(VM *vm, const GuestStats *s) {
        if (s->last_update == 0 || !guest_stat_valid(s, GUEST_STAT_AVAILABLE_MEMORY)) {
                /* The first reads may come before the guest's first report: say it when it lasts. */
                if (++vm->stats_missing == 3)
                        log_info("%s: the guest reports no balloon statistics (virtio_balloon driver not loaded?): "
                                 "not inflated until it does", vm->name);
                vm->has_stats = false;
                return;
        }
        vm->stats_missing = 0;
        /* A report read again is as old as when it was first read, across a reconnection too. */
        if (s->last_update != vm->stats.last_update || vm->stats_seen_usec == 0)
                vm->stats_seen_usec = now_usec(vm);
        vm->has_stats = true;

        if (vm->has_prev_stats && s->last_update == vm->stats.last_update)
                return; /* the guest has not reported since: keep the rates we have */

        vm->prev_stats = vm->stats;
        vm->has_prev_stats = vm->stats.last_update != 0;
        vm->stats = *s;
        vm_window_add(vm, now_usec(vm));

        if (!vm->has_prev_stats || s->last_update <= vm->prev_stats.last_update) {
                vm->swap_in_rate = vm->major_fault_rate = 0;
                vm->alloc_stalls = vm->direct_reclaims = vm->oom_kills = 0;
                return;
        }

        uint64_t dt = s->last_update - vm->prev_stats.last_update;
        vm->swap_in_rate = stat_delta(s, &vm->prev_stats, GUEST_STAT_SWAP_IN) / dt;
        vm->major_fault_rate = stat_delta(s, &vm->prev_stats, GUEST_STAT_MAJOR_FAULTS) / dt;
        vm->alloc_stalls = stat_delta(s, &vm->prev_stats, GUEST_STAT_ALLOC_STALLS);
        vm->direct_reclaims = stat_delta(s, &vm->prev_stats, GUEST_STAT_DIRECT_RECLAIMS);
        vm->oom_kills = stat_delta(s, &vm->prev_stats, GUEST_STAT_OOM_KILLS);
}

void vm_backend_stats(VM *vm, const GuestStats *s) {
        if (!s) {
                /* The guest is untrusted: a bad report means no stats, hence no inflation. */
                log_warning("%s: malformed guest stats, ignoring them", vm->name);
                vm->has_stats = false;
                return;
        }
        vm_update_stats(vm, s);
}

int vm_read_slice_pressure(const VM *vm, double *ret) {
        _cleanup_free_ char *path = NULL;
        PsiStats psi;
        int r;

        if (!vm->cgpath)
                return -ENOENT;
        if (asprintf(&path, "%s/memory.pressure", vm->cgpath) < 0)
                return -ENOMEM;
        r = psi_read_at(vm->ctx->cgroup_fd, path, &psi);
        if (r < 0)
                return r;
        *ret = psi.some.avg10;
        return 0;
}

static void vm_read_slice(VM *vm) {
        int fd = vm->ctx->cgroup_fd;
        CgMemoryStat stat;
        uint64_t v;
        int r;

        if (!vm->cgpath) {
                if (!vm->memory_high_checked)
                        log_info("%s: its cgroup is not under the cgroup root: managing the balloon only", vm->name);
                vm->memory_high_known = false;
                vm->memory_high_checked = true;
                return;
        }

        r = cg_read_u64(fd, vm->cgpath, "memory.high", &v);
        if (r >= 0) {
                vm->memory_high = v;
                vm->memory_high_known = true;
        } else {
                if (vm->memory_high_known || !vm->memory_high_checked)
                        log_info_errno(r, "%s: no memory.high in %s (%m): managing the balloon only",
                                       vm->name, vm->cgpath);
                vm->memory_high_known = false;
        }

        vm->memory_high_checked = true;

        if (cg_read_u64(fd, vm->cgpath, "memory.current", &v) >= 0)
                vm->memory_current = v;
        /* The host page cache charged to the slice (QEMU's disk I/O): reclaimable, not the VM's.
         * shmem is in "file" but is guest RAM when it is backed by memfd or shared memory. */
        vm->slice_cache = cg_read_memory_stat(fd, vm->cgpath, &stat) >= 0 ? minus(stat.file, stat.shmem) : 0;
}

/* MaxMemory= above the boot memory gives targets the balloon cannot reach: the boot memory caps it. A
 * MinMemory= above MaxMemory= in mixed units (one a size, one a percentage) can only be found here:
 * the floor wins, and vm_check_limits() says so. */
static uint64_t vm_min_memory(const VM *vm) {
        uint64_t base = vm->boot_memory ?: vm->actual, min = size_spec_resolve(vm->config.min_memory, base);

        if (vm->min_from_domain)
                min = MIN(min, size_spec_resolve(vm->ctx->config->domain_max_min_memory, base));
        return MIN(min, base);
}

static uint64_t vm_max_memory(const VM *vm) {
        uint64_t base = vm->boot_memory ?: vm->actual, max = size_spec_resolve(vm->config.max_memory, base);
        return MAX(MIN(max ?: base, base), vm_min_memory(vm));
}

/* Once per VM and configuration: the config loader cannot compare a size with a percentage. */
static void vm_check_limits(VM *vm) {
        uint64_t base = vm->boot_memory ?: vm->actual;
        uint64_t min = size_spec_resolve(vm->config.min_memory, base), max = size_spec_resolve(vm->config.max_memory, base);
        char a[FORMAT_BYTES_MAX], b[FORMAT_BYTES_MAX], c[FORMAT_BYTES_MAX];

        if (base == 0 || vm->limits_checked)
                return;
        vm->limits_checked = true;
        if (vm->min_from_domain && min > vm_min_memory(vm) && vm_min_memory(vm) < base)
                log_notice("%s: the domain asks for MinMemory %s, DomainMaxMinMemory= gives it %s", vm->name,
                           format_bytes(a, sizeof a, min), format_bytes(b, sizeof b, vm_min_memory(vm)));
        min = MIN(min, vm_min_memory(vm));
        if (max > 0 && min > max)
                log_warning("%s: MinMemory= (%s) is above MaxMemory= (%s) for %s of boot memory; the floor wins",
                            vm->name, format_bytes(a, sizeof a, min), format_bytes(b, sizeof b, max),
                            format_bytes(c, sizeof c, base));
        else if (max > base)
                log_notice("%s: MaxMemory= (%s) is above the boot memory (%s): the boot memory is the ceiling",
                           vm->name, format_bytes(a, sizeof a, max), format_bytes(b, sizeof b, base));
}

void vm_set_poll_interval(VM *vm, uint64_t usec) {
        if (usec == vm->poll_interval_usec)
                return;
        vm->poll_interval_usec = usec;
        if (vm->backend->ops->set_stats_interval)
                vm->backend->ops->set_stats_interval(vm->backend, usec);
}

unsigned vm_refresh(VM *vm) {
        uint64_t now = now_usec(vm);

        if (vm->state != VM_READY || vm->refresh_pending > 0)
                return 0;

        if (vm->slice_trigger_lost)
                (void) vm_arm_slice_trigger(vm, true);
        vm_check_limits(vm);

        vm->refresh_usec = now;
        vm->next_refresh_usec = now + vm->poll_interval_usec;
        vm_read_slice(vm);
        vm->refresh_pending = vm->backend->ops->refresh(vm->backend);
        return vm->refresh_pending;
}

uint64_t vm_stats_max_age(const VM *vm) {
        return 2 * (vm->ctx->config->stats_interval_usec + vm->poll_interval_usec);
}

void vm_snapshot(VM *vm, uint64_t now, PolicyVM *p) {
        const Config *c = vm->ctx->config;
        bool pressure_due = vm_pressure_due(vm, now);

        *p = (PolicyVM) {
                .name = vm->name,
                .weight = vm->config.weight,
                .min = vm_min_memory(vm),
                .max = vm_max_memory(vm),
                .actual = vm->actual,
                .target = vm->target,
                .memory_high_known = vm->memory_high_known,
                .memory_high = vm->memory_high,
                .memory_current = vm->memory_current,
                .slice_cache = vm->slice_cache,
                /* Stale stats are no stats: the cap that keeps an inflation from pushing the
                 * guest into OOM must not use old numbers. */
                .has_stats = vm->has_stats && now <= vm->stats_seen_usec + vm_stats_max_age(vm),
                .guest_available = vm->stats.value[GUEST_STAT_AVAILABLE_MEMORY],
                .guest_free = guest_stat_valid(&vm->stats, GUEST_STAT_FREE_MEMORY) ?
                        vm->stats.value[GUEST_STAT_FREE_MEMORY] : 0,
                .guest_free_recent = vm->guest_free_recent,
                .guest_growth = vm->guest_growth,
                .guest_reserve = size_spec_resolve(c->guest_reserve, vm->actual),
                .guest_min_available = size_spec_resolve(c->guest_min_available, vm->actual),
                .swap_in_rate = vm->swap_in_rate,
                .major_fault_rate = vm->major_fault_rate,
                .alloc_stalls = vm->alloc_stalls,
                .direct_reclaims = vm->direct_reclaims,
                .oom_kills = vm->oom_kills,
                .pressure_event = pressure_due,
                .pressure_event_level = pressure_due ? vm->pressure_event_level : 0,
                .pressure_event_size = pressure_due ? vm->pressure_event_size : 0,
                .pressure_event_count = pressure_due ? vm->pressure_event_count : 0,
                .slice_pressure = vm->slice_pressure,
                .carry = vm->carry,
                .last_progress_usec = vm->last_progress_usec,
        };
}

static void vm_write_memory_high(VM *vm, uint64_t value, bool dry_run) {
        char a[FORMAT_BYTES_MAX];
        int r;

        if (dry_run) {
                log_info("%s: would set memory.high to %s (dry run or paused)", vm->name, format_bytes(a, sizeof a, value));
                return;
        }
        if (systemd_unit_is_managed(vm->unit)) {
                r = systemd_unit_set_memory_high(vm->unit, value);
                if (r >= 0) {
                        vm->memory_high = value;
                        return;
                }
                log_warning_errno(r, "%s: cannot ask systemd for MemoryHigh= (%m), writing memory.high directly",
                                  vm->name);
        }
        r = cg_write_u64(vm->ctx->cgroup_fd, vm->cgpath, "memory.high", value);
        if (r < 0) {
                log_warning_errno(r, "%s: cannot write memory.high: %m", vm->name);
                return;
        }
        systemd_unit_wrote_directly(vm->unit, value);
        vm->memory_high = value;
}

static void vm_send_balloon(VM *vm, uint64_t target, bool dry_run) {
        if (dry_run)
                return;
        if (vm->backend->ops->set_target(vm->backend, target) < 0)
                return;
        vm->target = target;
        vm_mark_progress(vm);
}

static void vm_record(VM *vm, uint64_t now, const PolicyDecision *d) {
        VMHistoryEntry *e = &vm->history[vm->n_history++ % VM_HISTORY_MAX];

        vm->n_decisions[d->action]++;

        *e = (VMHistoryEntry) {
                .usec = now,
                .action = d->action,
                .actual = vm->actual,
                .target = d->target,
                .memory_high = d->memory_high,
        };
        memcpy(e->reason, d->reason, sizeof e->reason);
}

unsigned vm_history_count(const VM *vm) {
        return MIN(vm->n_history, (unsigned) VM_HISTORY_MAX);
}

const VMHistoryEntry *vm_history_entry(const VM *vm, unsigned i) {
        /* The ring holds the last VM_HISTORY_MAX of n_history. */
        return &vm->history[(vm->n_history - vm_history_count(vm) + i) % VM_HISTORY_MAX];
}

const VMHistoryEntry *vm_last_decision(const VM *vm) {
        return vm->n_history > 0 ? vm_history_entry(vm, vm_history_count(vm) - 1) : NULL;
}

static bool is_balloon_action(PolicyAction a) {
        return IN_SET(a, POLICY_INFLATE, POLICY_DEFLATE, POLICY_CANCEL, POLICY_STALL);
}

/* Sizes as the log prints them ("1.5G"), in a buffer of the caller's frame. */
#define FB(b) format_bytes((char[FORMAT_BYTES_MAX]) { 0 }, FORMAT_BYTES_MAX, (b))

/* The most memory.high is lowered below memory.current in one write: what the writer may have to
 * reclaim synchronously. A fast swap device (zram, NVMe) takes a few tens of milliseconds for it, a
 * slow one under a second, well within systemd's and our own watchdogs. */
#define MEMORY_HIGH_STEP (64 * MIB)

/* memory.high as written, whatever any policy mode asks: never below what the balloon leaves the guest
 * (max(MinMemory, target, actual) + MemoryHighOverhead=), and lowered at most MEMORY_HIGH_STEP below
 * memory.current per write, so the writer (PID 1 in SetUnitProperties, or the daemon on cgroupfs)
 * never reclaims more than that synchronously; the next decisions follow memory.current down as the
 * balloon empties. Returns the value, and appends why it differs from 'want' to 'reason'. */
static uint64_t vm_bound_memory_high(const VM *vm, uint64_t want, uint64_t target, char *reason, size_t size) {
        uint64_t overhead = vm->ctx->config->memory_high_overhead, min = vm_min_memory(vm), floor, step_floor, v = want;
        size_t l = strnlen(reason, size);

        floor = MAX(MAX(min, target), vm->actual);
        floor = floor > UINT64_MAX - overhead ? UINT64_MAX : floor + overhead;
        if (v < floor) {
                v = floor;
                l += snprintf(reason + l, size - l, "; memory.high not under %s (min %s, target %s, balloon %s: the largest + overhead %s)",
                              FB(floor), FB(min), FB(target), FB(vm->actual), FB(overhead));
                l = MIN(l, size - 1);
        }
        if (v >= vm->memory_high)
                return v;

        /* memory.current unknown: no lowering can be bounded, so none. */
        step_floor = vm->memory_current == 0 ? vm->memory_high :
                vm->memory_current > MEMORY_HIGH_STEP ? vm->memory_current - MEMORY_HIGH_STEP : 0;
        if (v >= step_floor)
                return v;
        v = MIN(step_floor, vm->memory_high);
        (void) snprintf(reason + l, size - l, "; lowered in steps: to %s now (memory.current %s - %s)",
                        FB(v), FB(vm->memory_current), FB(MEMORY_HIGH_STEP));
        return v;
}

void vm_apply_decision(VM *vm, uint64_t now, const PolicyDecision *decision, bool dry_run) {
        PolicyDecision d = *decision;
        bool balloon, high_changes;

        vm->carry = d.carry;
        vm->slice_pressure = false;
        if (vm_pressure_due(vm, now)) {
                vm->pressure_event = false;
                vm->pressure_acted_usec = now ?: 1;
        }
        /* The counters' increase since the guest's last report is decided on once: decisions before
         * its next report (ticks reading the same report, triggers) must not deflate for it again. */
        vm->alloc_stalls = vm->direct_reclaims = vm->oom_kills = 0;

        balloon = is_balloon_action(d.action) && d.target != vm->target;
        high_changes = vm->memory_high_known && d.memory_high != vm->memory_high;
        if (high_changes) {
                d.memory_high = vm_bound_memory_high(vm, d.memory_high, balloon ? d.target : vm->target,
                                                     d.reason, sizeof d.reason);
                high_changes = d.memory_high != vm->memory_high;
        }

        /* memory.high alone, bounded to where it is: nothing to do after all. */
        if (d.action == POLICY_NONE || (d.action == POLICY_SET_HIGH && !high_changes))
                return;

        /* A hold repeats every tick while it lasts, with quiet ticks between; paused or in a dry run,
         * so does every decision, since nothing moves. Each is said once, and again after
         * REPEAT_LOG_USEC if it still holds. */
        /* The same cause: its reason's numbers (a hysteresis' time left) change at every tick. */
        char cause[sizeof vm->logged.cause];
        (void) snprintf(cause, sizeof cause, "%.*s", (int) strcspn(d.reason, ":"), d.reason);
        bool repeat = (d.action == POLICY_HOLD || dry_run) && d.action == vm->logged.action &&
                d.target == vm->logged.target && d.memory_high == vm->logged.memory_high &&
                streq(cause, vm->logged.cause) && now < vm->logged.usec + REPEAT_LOG_USEC;
        if (!repeat) {
                vm->logged = (VMLoggedDecision) { d.action, d.target, d.memory_high, {}, now };
                memcpy(vm->logged.cause, cause, sizeof cause);
                /* What the action moves: the balloon, memory.high's new value, nothing for a hold. */
                uint64_t bytes = is_balloon_action(d.action) ?
                        (d.target > vm->actual ? d.target - vm->actual : vm->actual - d.target) :
                        d.action == POLICY_SET_HIGH ? d.memory_high : 0;
                log_decision(vm->name, policy_action_to_string(d.action), bytes, d.target, d.reason);
                vm_record(vm, now, &d);
        }

        if (dry_run && repeat)
                return; /* its "would set" was said with it */

        if (high_changes && d.raise_high_first)
                vm_write_memory_high(vm, d.memory_high, dry_run);

        if (balloon)
                vm_send_balloon(vm, d.target, dry_run);

        if (high_changes && !d.raise_high_first)
                vm_write_memory_high(vm, d.memory_high, dry_run);
}

int vm_list_add(VMList *l, VM *vm) {
        VM **v = reallocarray(l->items, l->n + 1, sizeof *v);

        if (!v)
                return -ENOMEM;
        l->items = v;
        l->items[l->n++] = vm;
        return 0;
}

void vm_list_remove(VMList *l, VM *vm) {
        for (size_t i = 0; i < l->n; i++)
                if (l->items[i] == vm) {
                        l->items[i] = l->items[--l->n];
                        return;
                }
}

VM *vm_list_find(const VMList *l, const char *name) {
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->items[i]->name, name))
                        return l->items[i];
        return NULL;
}

void vm_list_done(VMList *l) {
        free(l->items);
        *l = (VMList) {};
}
