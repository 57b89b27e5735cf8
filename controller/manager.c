/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>
#include <systemd/sd-daemon.h>

#include "bus.h"
#include "cgroup.h"
#include "log.h"
#include "manager.h"
#include "metrics.h"
#include "polling.h"
#include "psi.h"
#include "systemd.h"
#include "trace.h"
#include "util.h"

static uint64_t manager_now(Manager *m) {
        uint64_t t = 0;
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &t);
        return t;
}

static uint64_t monotonic_usec(void) {
        struct timespec ts;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static void manager_load_params(Manager *m) {
        config_policy_params(m->config, &m->params);
}

/* Arms a PSI trigger and logs once if the window had to be rounded up. */
static int manager_arm_trigger(Manager *m, int dir_fd, const char *path, uint64_t stall_usec,
                               sd_event_io_handler_t handler, void *userdata, sd_event_source **ret) {
        _cleanup_close_ int fd = -EBADF;
        uint64_t window;
        int r;

        r = psi_trigger_open_at(dir_fd, path, PSI_SOME, stall_usec, m->config->trigger_window_usec, &window, &fd);
        if (r == -EINVAL)
                return log_error_errno(r, "The kernel refused a PSI trigger on %s even with a %" PRIu64 " s window: "
                                       "unprivileged triggers need a window that is a multiple of 2 s and a "
                                       "stall shorter than the window.", path,
                                       psi_round_window(m->config->trigger_window_usec) / USEC_PER_SEC);
        if (r < 0)
                return r;

        if (window != m->config->trigger_window_usec && !m->window_rounding_logged) {
                log_notice("The kernel refused a %" PRIu64 " ms PSI trigger window (unprivileged triggers need a "
                           "multiple of 2 s); using %" PRIu64 " ms.",
                           m->config->trigger_window_usec / USEC_PER_MSEC, window / USEC_PER_MSEC);
                m->window_rounding_logged = true;
        }

        r = sd_event_add_io(m->event, ret, fd, EPOLLPRI, handler, userdata);
        if (r < 0)
                return log_error_errno(r, "Cannot watch %s: %m", path);
        r = sd_event_source_set_io_fd_own(*ret, true);
        if (r < 0)
                return r;
        TAKE_FD(fd);
        return 0;
}

static void manager_decide(Manager *m, const char *why);
static void manager_refresh_soon(Manager *m);

/* The host trigger fired within the idle interval: the host is busy for that long. */
static bool manager_host_triggered(Manager *m, uint64_t now) {
        return m->host_trigger_usec > 0 && now < m->host_trigger_usec + m->config->stats_idle_interval_usec;
}

/* Brings the tick forward to 'usec' if it is due later. */
static void manager_tick_by(Manager *m, uint64_t usec) {
        uint64_t t;

        if (m->tick && usec != UINT64_MAX && sd_event_source_get_time(m->tick, &t) >= 0 && usec < t)
                (void) sd_event_source_set_time(m->tick, usec);
}

/* After a decision: each VM's polling interval from what it reported and what was decided
 * (polling.h), and its next refresh brought forward when that made it busy. */
static void manager_schedule(Manager *m, const PolicyHost *host, size_t n) {
        uint64_t busy = m->config->stats_interval_usec,
                idle = MAX(m->config->stats_idle_interval_usec, busy), earliest = UINT64_MAX;

        m->host_busy = poll_host_busy(&m->params, host);
        for (size_t i = 0; i < n; i++) {
                VM *vm = m->snapshot_vms[i];
                PolicyVM p = m->snapshot[i];

                p.target = vm->target;
                p.carry = vm->carry;
                vm_set_poll_interval(vm, m->host_busy || poll_vm_busy(&m->params, &p, host->now_usec) ? busy : idle);
                if (vm->refresh_pending == 0)
                        vm->next_refresh_usec = MIN(vm->next_refresh_usec, vm->refresh_usec + vm->poll_interval_usec);
                earliest = MIN(earliest, vm->next_refresh_usec);
        }

        manager_tick_by(m, earliest);
}

static int on_host_trigger(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;

        if (revents & EPOLLERR) {
                log_warning("The host pressure trigger went away (its cgroup was removed?); host pressure "
                            "is read from available memory only until it can be armed again.");
                m->host_trigger = sd_event_source_disable_unref(m->host_trigger);
                m->host_trigger_lost = true;
                return 0;
        }

        m->host_pressure = true;
        m->host_trigger_usec = manager_now(m);
        manager_decide(m, "host pressure");
        /* Then every VM is read at once, and decided on again with what they say now. */
        m->refresh_all = true;
        manager_refresh_soon(m);
        return 0;
}

/* Arms the host trigger; 'ret_path' says which file, for the caller's messages. */
static int manager_try_host_trigger(Manager *m, char **ret_path) {
        _cleanup_free_ char *path = NULL;
        int r;

        m->host_trigger = sd_event_source_disable_unref(m->host_trigger);

        if (m->config->host_pressure == HOST_PRESSURE_SLICE) {
                if (asprintf(&path, "%s/memory.pressure", m->config->parent_slice) < 0)
                        return -ENOMEM;
                r = manager_arm_trigger(m, m->cgroup_fd, path, m->config->host_trigger_stall_usec,
                                        on_host_trigger, m, &m->host_trigger);
        } else {
                if (asprintf(&path, "%s/pressure/memory", m->options.proc_root) < 0)
                        return -ENOMEM;
                r = manager_arm_trigger(m, AT_FDCWD, path, m->config->host_trigger_stall_usec,
                                        on_host_trigger, m, &m->host_trigger);
        }
        *ret_path = TAKE_PTR(path);
        return r;
}

static int manager_arm_host_trigger(Manager *m) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = manager_try_host_trigger(m, &path);
        if (r == -ENOMEM)
                return log_oom();
        if (r == -ENOENT && m->config->host_pressure == HOST_PRESSURE_SLICE &&
            faccessat(m->cgroup_fd, m->config->parent_slice, F_OK, 0) < 0)
                return log_error_errno(r, "ParentSlice=%s does not exist under the cgroup root %s, and "
                                       "HostPressure=slice needs it: create it (systemctl start %s) or set "
                                       "ParentSlice= in autoballoon.conf.", m->config->parent_slice,
                                       m->options.cgroup_root, m->config->parent_slice);
        if (IN_SET(r, -ENOENT, -EOPNOTSUPP))
                return log_error_errno(r, "PSI is not available (%s: %m). Boot the kernel with psi=1.", path);
        if (r < 0)
                return log_error_errno(r, "Cannot arm the host pressure trigger on %s: %m", path);
        return 0;
}

/* After EPOLLERR, at each tick, without a message until it works. */
static void manager_rearm_host_trigger(Manager *m) {
        _cleanup_free_ char *path = NULL;

        if (manager_try_host_trigger(m, &path) >= 0) {
                m->host_trigger_lost = false;
                log_info("The host pressure trigger on %s is armed again.", path);
        }
}

static int read_meminfo(const char *proc_root, uint64_t *ret_total, uint64_t *ret_available) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        uint64_t total = 0, available = 0;
        int r;

        if (asprintf(&path, "%s/meminfo", proc_root) < 0)
                return -ENOMEM;
        r = read_full_file_at(AT_FDCWD, path, 64 * 1024, &text, NULL);
        if (r < 0)
                return r;

        for (char *line = text, *next; line && *line; line = next) {
                unsigned long long kb;

                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
                        total = kb * KIB;
                else if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
                        available = kb * KIB;
        }
        if (total == 0)
                return -EBADMSG;

        *ret_total = total;
        *ret_available = available;
        return 0;
}

/* The host as the policy sees it: the parent slice when it is limited and HostPressure=slice, the
 * machine otherwise. */
static void manager_read_host(Manager *m) {
        const char *parent = m->config->parent_slice;
        uint64_t limit = SIZE_UNLIMITED, v, current;
        int r;

        if (m->config->host_pressure == HOST_PRESSURE_SLICE) {
                if (cg_read_u64(m->cgroup_fd, parent, "memory.max", &v) >= 0)
                        limit = MIN(limit, v);
                if (cg_read_u64(m->cgroup_fd, parent, "memory.high", &v) >= 0)
                        limit = MIN(limit, v);
                if (limit != SIZE_UNLIMITED && cg_read_u64(m->cgroup_fd, parent, "memory.current", &current) >= 0) {
                        m->host_total = limit;
                        m->host_available = current < limit ? limit - current : 0;
                        return;
                }
        }

        r = read_meminfo(m->options.proc_root, &m->host_total, &m->host_available);
        if (r < 0)
                log_warning_errno(r, "Cannot read %s/meminfo: %m", m->options.proc_root);
}

static int vmstat_pgscan_item(const char *key, uint64_t value, void *userdata) {
        uint64_t *sum = userdata;

        if (streq(key, "pgscan_kswapd") || streq(key, "pgscan_direct") || streq(key, "pgscan_khugepaged"))
                *sum += value;
        return 0;
}

/* Pages the host's reclaim scanned, cumulative: the parent slice's memory.stat pgscan with
 * HostPressure=slice, else the machine's: <proc>/vmstat's pgscan_kswapd, _direct and _khugepaged, what
 * pgscan sums for a cgroup (pgscan_anon and _file, where present, split the same scans by type). */
static int manager_read_host_pgscan(Manager *m, uint64_t *ret) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        uint64_t sum = 0;
        int r;

        if (m->config->host_pressure == HOST_PRESSURE_SLICE) {
                CgMemoryStat s;

                r = cg_read_memory_stat(m->cgroup_fd, m->config->parent_slice, &s);
                if (r < 0)
                        return r;
                *ret = s.pgscan;
                return 0;
        }

        if (asprintf(&path, "%s/vmstat", m->options.proc_root) < 0)
                return -ENOMEM;
        r = read_full_file_at(AT_FDCWD, path, 64 * 1024, &text, NULL);
        if (r < 0)
                return r;
        r = parse_key_values(text, vmstat_pgscan_item, &sum);
        if (r < 0)
                return r;
        *ret = sum;
        return 0;
}

/* What the host's reclaim scanned since the previous decision (0 at the first, or when the counter
 * cannot be read or went back: the slice was made anew). */
static uint64_t manager_host_scanned(Manager *m) {
        uint64_t v, d;
        int r;

        /* Only Policy=rfc counts scans: the other modes read nothing more per decision. */
        if (m->config->policy != POLICY_MODE_RFC) {
                m->host_pgscan_known = false;
                return 0;
        }

        r = manager_read_host_pgscan(m, &v);
        if (r < 0) {
                log_debug_errno(r, "Cannot read the host's reclaim scan counter: %m");
                m->host_pgscan_known = false;
                return 0;
        }
        d = m->host_pgscan_known && v >= m->host_pgscan ? v - m->host_pgscan : 0;
        m->host_pgscan = v;
        m->host_pgscan_known = true;
        return d;
}

/* The host's part of the policy's snapshot, the same for a decision and an explanation. */
static PolicyHost policy_host(const Manager *m, uint64_t now, uint64_t scanned) {
        return (PolicyHost) {
                .now_usec = now,
                .total = m->host_total,
                .available = m->host_available,
                .pressure = m->host_pressure,
                .last_reclaim_usec = m->last_summary.last_reclaim_usec,
                .last_cycle_usec = m->last_summary.last_cycle_usec,
                .last_pressure_usec = m->last_summary.last_pressure_usec,
                .scanned = scanned,
        };
}

static int manager_read_host_pressure(Manager *m, PsiStats *ret) {
        _cleanup_free_ char *path = NULL;

        if (m->config->host_pressure == HOST_PRESSURE_SLICE) {
                if (asprintf(&path, "%s/memory.pressure", m->config->parent_slice) < 0)
                        return -ENOMEM;
                return psi_read_at(m->cgroup_fd, path, ret);
        }
        if (asprintf(&path, "%s/pressure/memory", m->options.proc_root) < 0)
                return -ENOMEM;
        return psi_read_at(AT_FDCWD, path, ret);
}

double manager_host_pressure(Manager *m) {
        PsiStats psi;

        return manager_read_host_pressure(m, &psi) >= 0 ? psi.some.avg10 : -1;
}

/* The line "systemctl status" shows: VMs, host pressure, memory reclaimed, the last decision. */
static void manager_notify_status(Manager *m) {
        char buf[512], pressure[32] = "?", last[128] = "none", size[FORMAT_BYTES_MAX + 1] = "",
                a[FORMAT_BYTES_MAX], b[FORMAT_BYTES_MAX];
        const VMHistoryEntry *newest = NULL;
        const VM *newest_vm = NULL;
        size_t managed = 0;
        uint64_t reclaimed = 0;
        double host_pressure;

        for (size_t i = 0; i < m->vms.n; i++) {
                const VM *vm = m->vms.items[i];

                if (vm->state == VM_READY) {
                        managed++;
                        if (vm->boot_memory > vm->actual)
                                reclaimed += vm->boot_memory - vm->actual;
                }
                const VMHistoryEntry *e = vm_last_decision(vm);
                if (e && (!newest || e->usec > newest->usec)) {
                        newest = e;
                        newest_vm = vm;
                }
        }

        host_pressure = manager_host_pressure(m);
        if (host_pressure >= 0)
                (void) snprintf(pressure, sizeof pressure, "%.2f%%", host_pressure);
        if (newest) {
                /* How much the balloon moves, or where memory.high goes; a hold moves nothing. */
                if (newest->action == POLICY_SET_HIGH)
                        (void) snprintf(size, sizeof size, " %s", format_bytes(b, sizeof b, newest->memory_high));
                else if (newest->action != POLICY_HOLD)
                        (void) snprintf(size, sizeof size, " %s", format_bytes(b, sizeof b,
                                        newest->target > newest->actual ? newest->target - newest->actual :
                                        newest->actual - newest->target));
                (void) snprintf(last, sizeof last, "%s %s%s, %" PRIu64 "s ago", newest_vm->name,
                                policy_action_to_string(newest->action), size,
                                (manager_now(m) - newest->usec) / USEC_PER_SEC);
        }

        (void) snprintf(buf, sizeof buf, "STATUS=%zu of %zu VMs managed, host pressure %s (some avg10), "
                        "host available %s, reclaimed %s, last decision: %s%s",
                        managed, m->vms.n, pressure, format_bytes(a, sizeof a, m->host_available),
                        format_bytes(b, sizeof b, reclaimed), last,
                        m->options.dry_run ? " (dry run)" : m->paused ? " (paused)" : "");
        (void) sd_notify(false, buf);
}

static void manager_decide(Manager *m, const char *why) {
        uint64_t now = manager_now(m);
        size_t n = 0;
        int r;

        /* Freeing the VMs at exit cancels their queries: no decision on what is being torn down. */
        if (m->stopping)
                return;

        for (size_t i = 0; i < m->vms.n; i++) {
                VM *vm = m->vms.items[i];
                if (vm->state != VM_READY)
                        continue;
                vm_snapshot(vm, now, &m->snapshot[n]);
                m->snapshot_vms[n++] = vm;
        }

        PolicyHost host = policy_host(m, now, manager_host_scanned(m) + m->last_summary.scan_left);
        m->params.host_reserve = size_spec_resolve(m->config->host_reserve, m->host_total);
        m->params.refill_margin = size_spec_resolve(m->config->refill_margin, m->host_total);

        if (m->record) {
                r = trace_write(m->record, &m->params, &host, m->snapshot, n);
                if (r < 0) {
                        log_warning_errno(r, "Cannot record the policy's input (%m); recording stops.");
                        (void) fclose(TAKE_PTR(m->record));
                }
        }

        r = policy_decide(&m->params, &host, m->snapshot, n, m->decisions, &m->last_summary);
        if (r < 0) {
                log_error_errno(r, "Policy could not decide (parameters refused, or out of memory): %m");
                return;
        }

        if (m->last_summary.host_pressure)
                log_debug("Decision (%s): %s", why, m->last_summary.reason);

        bool sent = false;
        for (size_t i = 0; i < n; i++) {
                VM *vm = m->snapshot_vms[i];
                const PolicyDecision *d = &m->decisions[i];
                bool moves = d->action == POLICY_INFLATE && d->target != vm->target;

                m->state_dirty = m->state_dirty || !policy_carry_equal(&vm->carry, &d->carry);
                vm_apply_decision(vm, now, d, m->options.dry_run || m->paused);
                sent = sent || moves;
        }

        /* How long from the trigger fd becoming readable to the balloon command on its way; the trigger's
         * CLOCK_MONOTONIC time lets a benchmark time the commands' arrival (tests/bench/reaction.py). */
        if (sent && m->host_pressure && m->host_trigger_usec > 0)
                log_debug("latency trigger->balloon %" PRIu64 " us, trigger at %" PRIu64 " us",
                          monotonic_usec() - m->host_trigger_usec, m->host_trigger_usec);

        host.pressure = host.pressure || manager_host_triggered(m, now);
        manager_schedule(m, &host, n);
        m->host_pressure = false;
        if (m->state_dirty)
                manager_save_state(m);
}

/* What the VMs see of the manager (VMContext). */

static bool on_vm_take_saved_carry(const VMContext *ctx, const char *name, PolicyCarry *ret) {
        Manager *m = ctx->userdata;
        PolicyCarry *c = (PolicyCarry *) state_find_vm(&m->saved, name);

        if (!c || policy_carry_is_empty(c))
                return false;
        *ret = *c;
        *c = (PolicyCarry) {};
        return true;
}

static void on_vm_decide(const VMContext *ctx, const char *why) {
        manager_decide(ctx->userdata, why);
}

/* A VM's refresh finished; the last VM of the round decides. A VM of an earlier round that answers
 * late is decided on at the next decision, and read again when due. */
static void on_vm_query_done(const VMContext *ctx, VM *vm) {
        Manager *m = ctx->userdata;

        if (m->stopping)
                return;
        if (m->round_pending == 0 || vm->refresh_usec != m->round_usec) {
                manager_tick_by(m, vm->next_refresh_usec);
                return;
        }
        if (--m->round_pending == 0) {
                (void) sd_event_source_set_enabled(m->round_timer, SD_EVENT_OFF);
                manager_decide(m, "tick");
        }
}

static void on_vm_refresh_soon(const VMContext *ctx) {
        manager_refresh_soon(ctx->userdata);
}

static int on_vm_arm_trigger(const VMContext *ctx, const char *path, uint64_t stall_usec,
                             sd_event_io_handler_t handler, void *userdata, sd_event_source **ret) {
        Manager *m = ctx->userdata;

        return manager_arm_trigger(m, m->cgroup_fd, path, stall_usec, handler, userdata, ret);
}

static int manager_grow_buffers(Manager *m, size_t n) {
        if (n <= m->snapshot_allocated)
                return 0;

        size_t k = MAX(n, m->snapshot_allocated * 2);
        PolicyVM *s = reallocarray(m->snapshot, k, sizeof *s);
        if (!s)
                return -ENOMEM;
        m->snapshot = s;
        PolicyDecision *d = reallocarray(m->decisions, k, sizeof *d);
        if (!d)
                return -ENOMEM;
        m->decisions = d;
        VM **v = reallocarray(m->snapshot_vms, k, sizeof *v);
        if (!v)
                return -ENOMEM;
        m->snapshot_vms = v;
        m->snapshot_allocated = k;
        return 0;
}

VM *manager_find_vm(Manager *m, const char *name) {
        return vm_list_find(&m->vms, name);
}

int manager_explain_vm(Manager *m, VM *vm, PolicyDecision *ret) {
        uint64_t now = manager_now(m);
        size_t n = 0, k = SIZE_MAX;
        int r;

        if (vm->state != VM_READY)
                return -ENOENT;

        /* Its own arrays: the manager's hold the last decision, which the next one reads. */
        _cleanup_free_ PolicyVM *vms = reallocarray(NULL, MAX(m->vms.n, 1u), sizeof(PolicyVM));
        _cleanup_free_ PolicyDecision *out = reallocarray(NULL, MAX(m->vms.n, 1u), sizeof(PolicyDecision));
        if (!vms || !out)
                return -ENOMEM;
        for (size_t i = 0; i < m->vms.n; i++) {
                if (m->vms.items[i]->state != VM_READY)
                        continue;
                if (m->vms.items[i] == vm)
                        k = n;
                vm_snapshot(m->vms.items[i], now, &vms[n++]);
        }

        /* Explaining consumes no scan counts: they belong to the next decision. */
        PolicyHost host = policy_host(m, now, 0);
        r = policy_explain(&m->params, &host, vms, n, out, NULL);
        if (r < 0)
                return r;
        *ret = out[k];
        return 0;
}

/* What the VM sources see of the manager (DiscoveryContext). */

static VM *on_find_vm(const DiscoveryContext *ctx, const char *name) {
        return manager_find_vm(ctx->userdata, name);
}

static int on_add_vm(const DiscoveryContext *ctx, VM *vm) {
        Manager *m = ctx->userdata;
        int r;

        r = manager_grow_buffers(m, m->vms.n + 1);
        if (r < 0)
                return r;
        return vm_list_add(&m->vms, vm);
}

static void on_remove_vm(const DiscoveryContext *ctx, VM *vm) {
        Manager *m = ctx->userdata;

        vm_list_remove(&m->vms, vm);
}

/* A round's decision waits this long at most for its VMs' answers: QEMU answers within milliseconds,
 * and one that does not must not hold back the decision for the others (its stats expire instead). */
#define ROUND_DEADLINE_USEC (250 * USEC_PER_MSEC)

static int on_round_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        log_debug("%zu VMs did not answer within %" PRIu64 " ms; deciding without their news",
                  m->round_pending, ROUND_DEADLINE_USEC / USEC_PER_MSEC);
        m->round_pending = 0;
        manager_decide(m, "tick");
        return 0;
}

static void manager_refresh_soon(Manager *m) {
        if (m->tick)
                (void) sd_event_source_set_time(m->tick, 0);
}

/* Refreshes the VMs that are due (all of them after the host trigger) and returns when the tick is
 * next due. A VM due within half StatsIntervalSec= goes along, so VMs keep in step and a round serves
 * many. */
static uint64_t manager_refresh_round(Manager *m, uint64_t now) {
        uint64_t slack = m->config->stats_interval_usec / 2,
                next = now + MAX(m->config->stats_idle_interval_usec, m->config->stats_interval_usec);
        bool all = m->refresh_all;

        m->refresh_all = false;
        m->round_usec = now;
        m->round_pending = 0;
        for (size_t i = 0; i < m->vms.n; i++) {
                VM *vm = m->vms.items[i];

                if (vm->state != VM_READY)
                        continue;
                if (vm->refresh_pending == 0 && (all || vm->next_refresh_usec <= now + slack))
                        m->round_pending += vm_refresh(vm) > 0;
                /* One whose refresh is still in flight sets no tick: its answer does (or its
                 * connection is lost). */
                if (vm->refresh_pending == 0)
                        next = MIN(next, vm->next_refresh_usec);
        }

        return next;
}

/* Decides now when no VM of the round has answers to wait for, else at its last answer or deadline. */
static void manager_round_wait(Manager *m) {
        (void) sd_event_source_set_enabled(m->round_timer, SD_EVENT_OFF);
        if (m->round_pending == 0)
                manager_decide(m, "tick");
        else if (sd_event_source_set_time_relative(m->round_timer, ROUND_DEADLINE_USEC) < 0 ||
                 sd_event_source_set_enabled(m->round_timer, SD_EVENT_ONESHOT) < 0)
                (void) on_round_deadline(m->round_timer, 0, m);
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        uint64_t now = manager_now(m), next;
        int r;

        for (size_t i = 0; i < m->n_sources; i++)
                if (m->sources[i]->ops->tick)
                        m->sources[i]->ops->tick(m->sources[i]);
        manager_read_host(m);
        if (m->host_trigger_lost)
                manager_rearm_host_trigger(m);

        /* A host that turns busy has every VM read at once. */
        PolicyHost host = {
                .available = m->host_available,
                .pressure = manager_host_triggered(m, now),
        };
        m->params.host_reserve = size_spec_resolve(m->config->host_reserve, m->host_total);
        if (poll_host_busy(&m->params, &host) && !m->host_busy)
                m->refresh_all = true;

        next = manager_refresh_round(m, now);
        /* Before the decision, which may bring a VM's next refresh forward. */
        r = sd_event_source_set_time(s, next);
        if (r < 0)
                return log_error_errno(r, "Cannot rearm the tick: %m");
        manager_round_wait(m);

        if (!m->notified_ready) {
                (void) sd_notify(false, "READY=1");
                m->notified_ready = true;
        }
        manager_notify_status(m);
        metrics_write(m);
        return 0;
}

static int manager_reload(Manager *m) {
        Config *c = NULL;
        int r;

        /* With Type=notify-reload (systemd >= 253) the time tells systemd that this RELOADING=1
         * answers its own SIGHUP, not an older one; systemd 252 ignores the field. */
        (void) sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, monotonic_usec());
        r = config_load(m->options.config_dir, &c);
        if (r < 0) {
                (void) sd_notify(false, "READY=1");
                return log_error_errno(r, "Reloading the configuration failed, keeping the old one.");
        }
        if (!streq(c->parent_slice, m->config->parent_slice) || !streq(c->runtime_dir, m->config->runtime_dir) ||
            c->libvirt != m->config->libvirt)
                log_warning("ParentSlice=, RuntimeDir= and Libvirt= take effect at the next start only.");
        free(c->parent_slice);
        c->parent_slice = strdup(m->config->parent_slice);
        if (!c->parent_slice) {
                config_free(c);
                return log_oom();
        }

        config_free(m->config);
        m->config = c;
        m->vm_context.config = c;
        manager_load_params(m);
        for (size_t i = 0; i < m->vms.n; i++)
                vm_reload(m->vms.items[i]);
        (void) manager_arm_host_trigger(m);
        /* Every VM read and decided on again under the new configuration, at once. */
        m->refresh_all = true;
        manager_refresh_soon(m);
        log_info("Configuration reloaded: policy %s.", policy_mode_to_string(c->policy));
        (void) sd_notify(false, "READY=1");
        return 0;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        (void) manager_reload(userdata);
        return 0;
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        log_info("Received SIG%s, exiting; balloons and memory.high stay as they are.",
                 sigabbrev_np((int) si->ssi_signo));
        (void) sd_notify(false, "STOPPING=1");
        return sd_event_exit(m->event, 0);
}

/* Pause and the VMs' carried state from before a restart. Never fatal: a state that cannot be read
 * is a warning, and the daemon starts as after a reboot. */
static void manager_load_state(Manager *m) {
        const char *why = NULL;
        uint64_t max_ahead;
        int r;

        r = state_boot_id(m->options.proc_root, m->boot_id);
        if (r < 0) {
                log_warning_errno(r, "Cannot read the boot id (%m): Pause and hysteresis are not kept across "
                                  "restarts.");
                return;
        }
        if (asprintf(&m->state_path, "%s/state", m->runtime_dir) < 0) {
                m->state_path = NULL;
                log_oom();
                return;
        }

        /* The furthest a deadline can be ahead: a hysteresis, or a back-off doubled 16 times. */
        max_ahead = MAX(m->config->hysteresis_usec, m->config->stall_backoff_usec << 16);
        r = state_load(m->state_path, m->boot_id, monotonic_usec(), max_ahead, &m->saved, &why);
        if (r == -ENOENT)
                return;
        if (r == -ESTALE) {
                log_info("%s was written before the last boot; not used.", m->state_path);
                return;
        }
        if (r == -EBADMSG) {
                log_warning("%s is corrupt (%s); ignored, starting as after a reboot.", m->state_path, why);
                return;
        }
        if (r < 0) {
                log_warning_errno(r, "Cannot read %s (%m); starting as after a reboot.", m->state_path);
                return;
        }

        m->paused = m->saved.paused;
        if (m->paused)
                log_notice("Paused, as before the restart: decisions are logged only until "
                           "\"autoballoonctl resume\".");
        log_info("Restored the state of the daemon before its restart (%zu VMs with state carried).",
                 m->saved.n_vms);
}

void manager_save_state(Manager *m) {
        _cleanup_free_ StateVM *vms = NULL;
        _cleanup_free_ char *text = NULL;
        State s = { .paused = m->paused };
        int r;

        if (!m->state_path)
                return;

        /* The managed VMs, and what is still saved for VMs not adopted again yet. */
        vms = new0(StateVM, m->vms.n + m->saved.n_vms);
        if (!vms) {
                log_oom();
                return;
        }
        for (size_t i = 0; i < m->vms.n; i++)
                vms[s.n_vms++] = (StateVM) { .name = m->vms.items[i]->name, .carry = m->vms.items[i]->carry };
        for (size_t i = 0; i < m->saved.n_vms; i++)
                /* An entry is emptied when its VM takes it: only the others are looked for. */
                if (!policy_carry_is_empty(&m->saved.vms[i].carry) && !vm_list_find(&m->vms, m->saved.vms[i].name))
                        vms[s.n_vms++] = m->saved.vms[i];
        s.vms = vms;

        r = state_format(&s, m->boot_id, &text);
        if (r < 0) {
                log_oom();
                return;
        }

        r = write_file_atomic(m->state_path, text, false);
        if (r < 0) {
                if (!m->state_failed)
                        log_warning_errno(r, "Cannot write %s (%m): a restart would forget Pause and hysteresis.",
                                          m->state_path);
                m->state_failed = true;
                return;
        }
        m->state_failed = false;
        m->state_dirty = false;
}

int manager_new(const ManagerOptions *options, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = new0(Manager, 1);
        if (!m)
                return log_oom();
        m->options = *options;
        m->cgroup_fd = -EBADF;

        r = config_load(options->config_dir, &m->config);
        if (r < 0)
                return r; /* config_load() logged file:line */

        m->runtime_dir = strdup(options->runtime_dir ?: m->config->runtime_dir);
        if (!m->runtime_dir)
                return log_oom();
        if (asprintf(&m->metrics_path, "%s/metrics.prom", m->runtime_dir) < 0)
                return log_oom();
        manager_load_params(m);
        manager_load_state(m);

        if (options->record_path) {
                m->record = fopen(options->record_path, "ae");
                if (!m->record)
                        return log_error_errno(errno, "Cannot open %s to record into: %m", options->record_path);
        }

        r = cg_open_root(options->cgroup_root, &m->cgroup_fd);
        if (r < 0)
                return log_error_errno(r, "Cannot open the cgroup root %s: %m", options->cgroup_root);
        r = cg_check_cgroup2(m->cgroup_fd, options->allow_plain_cgroup_dir);
        if (r == -ENOMEDIUM)
                return log_error_errno(r, "%s is not on a cgroup2 mount. autoballoond needs cgroup v2: boot with "
                                       "systemd.unified_cgroup_hierarchy=1, or mount it (mount -t cgroup2 none "
                                       "/sys/fs/cgroup) and pass --cgroup-root.", options->cgroup_root);
        if (r < 0)
                return log_error_errno(r, "Cannot check the cgroup root %s: %m", options->cgroup_root);

        r = sd_event_default(&m->event);
        if (r < 0)
                return log_error_errno(r, "Cannot create the event loop: %m");

        m->vm_context = (VMContext) {
                .event = m->event,
                .cgroup_fd = m->cgroup_fd,
                .config = m->config,
                .decide = on_vm_decide,
                .query_done = on_vm_query_done,
                .refresh_soon = on_vm_refresh_soon,
                .arm_trigger = on_vm_arm_trigger,
                .take_saved_carry = on_vm_take_saved_carry,
                .userdata = m,
        };
        m->discovery_context = (DiscoveryContext) {
                .vm = &m->vm_context,
                .cgroup_root = options->cgroup_root,
                .proc_root = options->proc_root,
                .runtime_dir = m->runtime_dir,
                .find_vm = on_find_vm,
                .add_vm = on_add_vm,
                .remove_vm = on_remove_vm,
                .userdata = m,
        };

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        /* Each source frees its VMs, which cancels their queries: nothing may decide from here on,
         * and the manager's list, which a decision walks, lets go of them first. */
        m->stopping = true;
        vm_list_done(&m->vms);
        bus_free(m->bus);
        for (size_t i = 0; i < m->n_sources; i++)
                discovery_free(m->sources[i]);
        free(m->sources);
        free(m->snapshot);
        free(m->decisions);
        free(m->snapshot_vms);
        sd_event_source_disable_unref(m->host_trigger);
        sd_event_source_disable_unref(m->tick);
        sd_event_source_disable_unref(m->round_timer);
        /* After the VMs, whose units hold slots on it; flushed so a last SetUnitProperties goes out. */
        sd_bus_flush_close_unref(m->systemd_bus);
        safe_close(m->cgroup_fd);
        config_free(m->config);
        free(m->runtime_dir);
        free(m->metrics_path);
        free(m->state_path);
        state_done(&m->saved);
        if (m->record)
                (void) fclose(m->record);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

/* Each source of options.sources, in order: those that find their VMs by themselves (libvirt) go
 * before the slice scan, which leaves their slices to them. */
static int manager_start_sources(Manager *m) {
        int r;

        for (const discovery_new_t *new = m->options.sources; *new; new++) {
                Discovery *d = NULL;

                r = (*new)(&m->discovery_context, &d);
                if (r < 0)
                        return r;
                if (!d)
                        continue; /* disabled */
                Discovery **l = reallocarray(m->sources, m->n_sources + 1, sizeof *l);
                if (!l) {
                        discovery_free(d);
                        return log_oom();
                }
                m->sources = l;
                m->sources[m->n_sources++] = d;
                r = d->ops->start(d);
                if (r < 0)
                        return r;
        }
        return 0;
}

int manager_start(Manager *m) {
        sigset_t mask;
        int r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "Cannot block signals: %m");

        r = sd_event_add_signal(m->event, NULL, SIGHUP, on_sighup, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGTERM, on_exit_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, on_exit_signal, m);
        if (r < 0)
                return log_error_errno(r, "Cannot watch signals: %m");

        r = manager_arm_host_trigger(m);
        if (r < 0)
                return r;

        /* Before the scan: each VM found asks systemd whether it manages its slice. */
        r = systemd_bus_open(m->event, &m->systemd_bus);
        if (r < 0)
                log_info_errno(r, "No system bus (%m): memory.high is written through cgroupfs.");
        m->vm_context.systemd_bus = m->systemd_bus;

        r = bus_open(m, m->options.bus_type, &m->bus);
        if (r < 0)
                return r;

        r = manager_start_sources(m);
        if (r < 0)
                return r;
        manager_read_host(m);

        r = sd_event_add_time_relative(m->event, &m->tick, CLOCK_MONOTONIC, m->config->stats_interval_usec,
                                       100 * USEC_PER_MSEC, on_tick, m);
        if (r < 0)
                return log_error_errno(r, "Cannot start the tick: %m");
        r = sd_event_source_set_enabled(m->tick, SD_EVENT_ON);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(m->event, &m->round_timer, CLOCK_MONOTONIC, ROUND_DEADLINE_USEC, 0,
                                       on_round_deadline, m);
        if (r < 0)
                return log_error_errno(r, "Cannot create the round timer: %m");
        r = sd_event_source_set_enabled(m->round_timer, SD_EVENT_OFF);
        if (r < 0)
                return r;

        r = sd_event_set_watchdog(m->event, true);
        if (r < 0)
                log_debug_errno(r, "No watchdog: %m");

        log_info("autoballoond started: policy %s, cgroup root %s, parent slice %s, QMP sockets in %s/qmp, %s%s",
                 policy_mode_to_string(m->config->policy), m->options.cgroup_root, m->config->parent_slice,
                 m->runtime_dir,
                 m->config->host_pressure == HOST_PRESSURE_SLICE ? "host pressure from the parent slice" :
                 "host pressure from the system", m->options.dry_run ? ", dry run: nothing is changed" : "");
        return 0;
}

int manager_run(Manager *m) {
        return sd_event_loop(m->event);
}
