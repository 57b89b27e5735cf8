/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <time.h>

#include "cgroup.h"
#include "log.h"
#include "manager.h"
#include "util.h"
#include "vm.h"

#define VM_QMP_TIMEOUT_USEC (5 * USEC_PER_SEC)

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
        (void) sd_event_now(vm->manager->event, CLOCK_MONOTONIC, &t);
        return t;
}

static void vm_set_state(VM *vm, VMState s) {
        if (vm->state == s)
                return;
        log_debug("%s: %s -> %s", vm->name, vm_state_to_string(vm->state), vm_state_to_string(s));
        vm->state = s;
}

void vm_apply_config(VM *vm, const Config *c) {
        const VMConfig *vc = config_find_vm(c, vm->name);

        if (vc)
                vm->config = *vc;
        else
                vm_config_defaults(&vm->config);
        vm->config.name = vm->name;
        if (vm->runtime_weight > 0)
                vm->config.weight = vm->runtime_weight;
}

static int on_slice_trigger(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        VM *vm = userdata;

        if (revents & EPOLLERR) {
                /* The slice's cgroup was removed: the next scan drops the VM. */
                log_debug("%s: slice pressure trigger gone", vm->name);
                vm->slice_trigger = sd_event_source_disable_unref(vm->slice_trigger);
                return 0;
        }

        vm->slice_pressure = true;
        manager_decide(vm->manager, "slice pressure");
        return 0;
}

int vm_arm_slice_trigger(VM *vm) {
        Manager *m = vm->manager;
        _cleanup_free_ char *path = NULL;
        int r;

        vm->slice_trigger = sd_event_source_disable_unref(vm->slice_trigger);

        if (asprintf(&path, "%s/memory.pressure", vm->cgpath) < 0)
                return log_oom();

        r = manager_arm_trigger(m, m->cgroup_fd, path, m->config->slice_trigger_stall_usec,
                                on_slice_trigger, vm, &vm->slice_trigger);
        if (r < 0)
                return log_warning_errno(r, "%s: cannot watch slice pressure (%s), continuing without: %m",
                                         vm->name, path);
        return 0;
}

static int vm_call(VM *vm, const char *command, json_object *args, qmp_reply_t cb) {
        int r = qmp_client_call(vm->qmp, command, args, VM_QMP_TIMEOUT_USEC, cb, vm);
        if (r < 0)
                log_warning_errno(r, "%s: cannot send %s: %m", vm->name, command);
        return r;
}

static bool vm_reply_failed(VM *vm, const char *what, int error, const char *desc) {
        if (error == 0)
                return false;
        if (error != -ECANCELED)
                log_warning_errno(error, "%s: %s failed: %s", vm->name, what, desc ?: strerror(-error));
        return true;
}

/* Probe chain after QMP becomes ready: boot memory -> balloon device -> stats polling -> size. */

static void on_probe_balloon(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        VM *vm = userdata;
        uint64_t actual;
        char a[FORMAT_BYTES_MAX], b[FORMAT_BYTES_MAX];

        if (vm_reply_failed(vm, "query-balloon", error, desc))
                return;
        if (qmp_parse_query_balloon(result, &actual) < 0) {
                log_warning("%s: malformed query-balloon reply", vm->name);
                return;
        }

        /* QEMU runs in the slice now, so systemd has loaded it if it manages it. */
        (void) systemd_unit_refresh(vm->unit);

        /* Adopt the balloon as it is: a restarted daemon must not reset anything. */
        vm->actual = vm->target = actual;
        vm->last_progress_usec = 0;
        vm_set_state(vm, VM_READY);
        log_info("%s: adopted: balloon %s, actual %s of %s boot memory, weight %" PRIu64,
                 vm->name, vm->balloon_qom_path, format_bytes(a, sizeof a, actual),
                 format_bytes(b, sizeof b, vm->boot_memory), vm->config.weight);
}

static void on_probe_stats_interval(QmpClient *c, int error, json_object *result, const char *desc,
                                    void *userdata) {
        VM *vm = userdata;

        /* Without stats polling the VM is never inflated (the policy needs the guest's available
         * memory); keep managing it anyway so guest pressure and the floor still apply. */
        (void) vm_reply_failed(vm, "enabling guest stats polling", error, desc);
        if (error < 0 && error != -EREMOTEIO)
                return; /* the connection is gone; the next one probes again */
        (void) vm_call(vm, "query-balloon", NULL, on_probe_balloon);
}

static void vm_probe_stats(VM *vm) {
        json_object *args = json_object_new_object();

        if (!args) {
                log_oom();
                return;
        }
        json_object_object_add(args, "path", json_object_new_string(vm->balloon_qom_path));
        json_object_object_add(args, "property", json_object_new_string("guest-stats-polling-interval"));
        json_object_object_add(args, "value",
                               json_object_new_int64((int64_t) MAX(vm->manager->config->stats_interval_usec / USEC_PER_SEC, 1u)));
        (void) vm_call(vm, "qom-set", args, on_probe_stats_interval);
}

static void vm_probe_devices(VM *vm, const char *container);

static void on_probe_devices(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        VM *vm = userdata;
        /* Which container was listed: remembered in balloon_qom_path until the device is found. */
        bool anon = vm->balloon_qom_path && streq(vm->balloon_qom_path, "/machine/peripheral-anon");

        if (vm_reply_failed(vm, "qom-list", error, desc))
                return;

        size_t n = json_object_is_type(result, json_type_array) ? json_object_array_length(result) : 0;
        for (size_t i = 0; i < n; i++) {
                json_object *child = json_object_array_get_idx(result, i), *name, *type;

                if (!json_object_object_get_ex(child, "name", &name) ||
                    !json_object_object_get_ex(child, "type", &type))
                        continue;
                /* "child<virtio-balloon-pci>", "child<virtio-balloon-ccw>", "child<virtio-balloon-device>" */
                if (!startswith(json_object_get_string(type), "child<virtio-balloon"))
                        continue;

                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s", vm->balloon_qom_path, json_object_get_string(name)) < 0) {
                        log_oom();
                        return;
                }
                free(vm->balloon_qom_path);
                vm->balloon_qom_path = TAKE_PTR(path);
                vm_probe_stats(vm);
                return;
        }

        if (!anon) {
                vm_probe_devices(vm, "/machine/peripheral-anon");
                return;
        }

        vm_set_state(vm, VM_UNSUPPORTED);
        log_warning("%s: no virtio-balloon device in this VM; not managed (add -device virtio-balloon-pci)",
                    vm->name);
}

static void vm_probe_devices(VM *vm, const char *container) {
        json_object *args = json_object_new_object();
        char *p = strdup(container);

        if (!args || !p) {
                json_object_put(args);
                free(p);
                log_oom();
                return;
        }
        free(vm->balloon_qom_path);
        vm->balloon_qom_path = p;
        json_object_object_add(args, "path", json_object_new_string(container));
        (void) vm_call(vm, "qom-list", args, on_probe_devices);
}

static void on_probe_memory(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        VM *vm = userdata;
        json_object *base;

        if (vm_reply_failed(vm, "query-memory-size-summary", error, desc))
                return;
        if (!json_object_object_get_ex(result, "base-memory", &base) || !json_object_is_type(base, json_type_int)) {
                log_warning("%s: malformed query-memory-size-summary reply", vm->name);
                return;
        }
        vm->boot_memory = json_object_get_uint64(base);
        vm_probe_devices(vm, "/machine/peripheral");
}

static void on_qmp_state(QmpClient *c, QmpState state, int error, void *userdata) {
        VM *vm = userdata;

        switch (state) {
        case QMP_READY:
                vm_set_state(vm, VM_PROBING);
                (void) vm_call(vm, "query-memory-size-summary", NULL, on_probe_memory);
                break;
        case QMP_DISCONNECTED:
                /* qmp.c already warned with the details. */
                if (vm->state == VM_READY)
                        log_info_errno(error, "%s: lost the QMP connection (%m); not managed until QEMU answers again",
                                       vm->name);
                vm_set_state(vm, VM_CONNECTING);
                vm->has_stats = vm->has_prev_stats = false;
                break;
        case QMP_CONNECTING:
                break;
        }
}

static void vm_balloon_moved(VM *vm, uint64_t actual) {
        char a[FORMAT_BYTES_MAX], b[FORMAT_BYTES_MAX];

        if (actual == vm->actual)
                return;

        /* Progress is movement towards the target; the stall detector watches it. */
        if ((vm->target < vm->actual && actual < vm->actual) || (vm->target > vm->actual && actual > vm->actual))
                vm->last_progress_usec = now_usec(vm);
        else {
                /* Moved by someone else: another QMP client, or the guest deflating on OOM. Their
                 * word is the newest; waiting for our old target would only look like a stall. */
                log_info("%s: balloon moved to %s, away from our target %s: adopting it", vm->name,
                         format_bytes(a, sizeof a, actual), format_bytes(b, sizeof b, vm->target));
                vm->target = actual;
                vm->last_progress_usec = 0;
        }
        vm->actual = actual;
}

static bool json_get_u64(json_object *o, const char *key, uint64_t *ret) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int) ||
            json_object_get_int64(v) < 0)
                return false;
        *ret = json_object_get_uint64(v);
        return true;
}

/* The guest pressure queue (guest/ and qemu/ patches): the device has already cancelled an inflation
 * or deflated a step and tells us where the balloon is going; the policy puts the VM in hysteresis. */
static void vm_guest_pressure_event(VM *vm, json_object *data) {
        uint64_t actual, target, level;
        json_object *action;

        if (!json_get_u64(data, "actual", &actual) || !json_get_u64(data, "target", &target) ||
            !json_get_u64(data, "level", &level) || level > 2 ||
            !json_object_object_get_ex(data, "action", &action) || !json_object_is_type(action, json_type_string)) {
                log_warning("%s: malformed BALLOON_GUEST_PRESSURE event, ignoring it", vm->name);
                return;
        }

        vm->actual = actual;
        if (target != vm->target) {
                vm->target = target;
                vm->last_progress_usec = now_usec(vm);
        }
        vm->pressure_event = true;
        vm->pressure_event_level = (int) level;
        (void) snprintf(vm->pressure_event_action, sizeof vm->pressure_event_action, "%s",
                        json_object_get_string(action));
        if (vm->state == VM_READY)
                manager_decide(vm->manager, "guest pressure event");
}

static void on_qmp_event(QmpClient *c, const char *event, json_object *data, void *userdata) {
        VM *vm = userdata;
        json_object *v;

        if (streq(event, "BALLOON_CHANGE")) {
                if (json_object_object_get_ex(data, "actual", &v) && json_object_is_type(v, json_type_int))
                        vm_balloon_moved(vm, json_object_get_uint64(v));
                return;
        }

        if (streq(event, "BALLOON_GUEST_PRESSURE")) {
                vm_guest_pressure_event(vm, data);
                return;
        }

        log_debug("%s: QMP event %s", vm->name, event);
}

int vm_new(Manager *m, const char *name, VM **ret) {
        _cleanup_(vm_freep) VM *vm = NULL;
        int r;

        vm = new0(VM, 1);
        if (!vm)
                return log_oom();
        vm->manager = m;
        vm->state = VM_CONNECTING;
        vm->name = strdup(name);
        if (!vm->name)
                return log_oom();

        r = cg_vm_path(m->config->parent_slice, name, &vm->cgpath);
        if (r < 0)
                return log_error_errno(r, "%s: invalid VM name: %m", name);

        /* A slice's unit name is the last component of its cgroup path. */
        r = systemd_unit_new(m->systemd_bus, strrchr(vm->cgpath, '/') + 1, name, &vm->unit);
        if (r < 0)
                return log_oom();

        if (asprintf(&vm->qmp_path, "%s/qmp/%s.sock", m->runtime_dir, name) < 0)
                return log_oom();

        vm_apply_config(vm, m->config);

        r = qmp_client_new(m->event, vm->qmp_path, &vm->qmp);
        if (r < 0)
                return log_error_errno(r, "%s: cannot create QMP client: %m", name);
        qmp_client_set_handlers(vm->qmp, on_qmp_event, on_qmp_state, vm);

        (void) vm_arm_slice_trigger(vm);

        r = qmp_client_start(vm->qmp);
        if (r < 0)
                return log_error_errno(r, "%s: cannot start QMP client: %m", name);

        *ret = TAKE_PTR(vm);
        return 0;
}

VM *vm_free(VM *vm) {
        if (!vm)
                return NULL;
        /* Pending replies are cancelled here and see -ECANCELED. */
        qmp_client_free(vm->qmp);
        systemd_unit_free(vm->unit);
        sd_event_source_disable_unref(vm->slice_trigger);
        free(vm->balloon_qom_path);
        free(vm->qmp_path);
        free(vm->cgpath);
        free(vm->name);
        free(vm);
        return NULL;
}

static void on_refresh_balloon(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        VM *vm = userdata;
        uint64_t actual;

        if (!vm_reply_failed(vm, "query-balloon", error, desc) && qmp_parse_query_balloon(result, &actual) >= 0)
                vm_balloon_moved(vm, actual);
        manager_query_done(vm->manager);
}

static uint64_t stat_delta(const GuestStats *now, const GuestStats *prev, GuestStat i) {
        if (!guest_stat_valid(now, i) || !guest_stat_valid(prev, i) || now->value[i] < prev->value[i])
                return 0;
        return now->value[i] - prev->value[i];
}

static void vm_update_stats(VM *vm, const GuestStats *s) {
        if (s->last_update == 0 || !guest_stat_valid(s, GUEST_STAT_AVAILABLE_MEMORY)) {
                vm->has_stats = false;
                return;
        }
        vm->has_stats = true;

        if (vm->has_prev_stats && s->last_update == vm->stats.last_update)
                return; /* the guest has not reported since: keep the rates we have */

        vm->prev_stats = vm->stats;
        vm->has_prev_stats = vm->stats.last_update != 0;
        vm->stats = *s;

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

static void on_refresh_stats(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        VM *vm = userdata;
        GuestStats s;

        if (!vm_reply_failed(vm, "reading guest stats", error, desc)) {
                if (qmp_parse_guest_stats(result, &s) >= 0)
                        vm_update_stats(vm, &s);
                else {
                        /* The guest is untrusted: a bad report means no stats, hence no inflation. */
                        log_warning("%s: malformed guest stats, ignoring them", vm->name);
                        vm->has_stats = false;
                }
        }
        manager_query_done(vm->manager);
}

static void vm_read_slice(VM *vm) {
        int fd = vm->manager->cgroup_fd;
        uint64_t v;
        int r;

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
}

unsigned vm_refresh(VM *vm) {
        unsigned n = 0;
        json_object *args;

        if (vm->state != VM_READY)
                return 0;

        vm_read_slice(vm);

        if (vm_call(vm, "query-balloon", NULL, on_refresh_balloon) >= 0)
                n++;

        args = json_object_new_object();
        if (!args) {
                log_oom();
                return n;
        }
        json_object_object_add(args, "path", json_object_new_string(vm->balloon_qom_path));
        json_object_object_add(args, "property", json_object_new_string("guest-stats"));
        if (vm_call(vm, "qom-get", args, on_refresh_stats) >= 0)
                n++;

        return n;
}

void vm_snapshot(VM *vm, uint64_t now, PolicyVM *p) {
        const Config *c = vm->manager->config;
        uint64_t base = vm->boot_memory ?: vm->actual;

        *p = (PolicyVM) {
                .name = vm->name,
                .weight = vm->config.weight,
                .min = size_spec_resolve(vm->config.min_memory, base),
                .max = size_spec_resolve(vm->config.max_memory, base) ?: base,
                .actual = vm->actual,
                .target = vm->target,
                .memory_high_known = vm->memory_high_known,
                .memory_high = vm->memory_high,
                .memory_current = vm->memory_current,
                .has_stats = vm->has_stats,
                .guest_available = vm->stats.value[GUEST_STAT_AVAILABLE_MEMORY],
                .guest_free = guest_stat_valid(&vm->stats, GUEST_STAT_FREE_MEMORY) ?
                        vm->stats.value[GUEST_STAT_FREE_MEMORY] : 0,
                .guest_reserve = size_spec_resolve(c->guest_reserve, vm->actual),
                .guest_min_available = size_spec_resolve(c->guest_min_available, vm->actual),
                .swap_in_rate = vm->swap_in_rate,
                .major_fault_rate = vm->major_fault_rate,
                .alloc_stalls = vm->alloc_stalls,
                .direct_reclaims = vm->direct_reclaims,
                .oom_kills = vm->oom_kills,
                .pressure_event = vm->pressure_event,
                .pressure_event_level = vm->pressure_event_level,
                .pressure_event_action = vm->pressure_event_action,
                .slice_pressure = vm->slice_pressure,
                .hysteresis_until_usec = vm->hysteresis_until_usec,
                .backoff_until_usec = vm->backoff_until_usec,
                .stall_count = vm->stall_count,
                .last_progress_usec = vm->last_progress_usec,
                .last_inflate_usec = vm->last_inflate_usec,
        };
        if (p->min > p->max)
                p->min = p->max;
}

static void on_balloon_reply(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        (void) vm_reply_failed(userdata, "balloon", error, desc);
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
        r = cg_write_u64(vm->manager->cgroup_fd, vm->cgpath, "memory.high", value);
        if (r < 0) {
                log_warning_errno(r, "%s: cannot write memory.high: %m", vm->name);
                return;
        }
        vm->memory_high = value;
}

static void vm_send_balloon(VM *vm, uint64_t target, bool dry_run) {
        json_object *args;

        if (dry_run)
                return;

        args = json_object_new_object();
        if (!args) {
                log_oom();
                return;
        }
        json_object_object_add(args, "value", json_object_new_int64((int64_t) target));
        if (vm_call(vm, "balloon", args, on_balloon_reply) < 0)
                return;
        vm->target = target;
        vm->last_progress_usec = now_usec(vm);
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

static bool is_balloon_action(PolicyAction a) {
        return IN_SET(a, POLICY_INFLATE, POLICY_DEFLATE, POLICY_CANCEL, POLICY_STALL);
}

void vm_apply_decision(VM *vm, uint64_t now, const PolicyDecision *d, bool dry_run) {
        bool high_changes = vm->memory_high_known && d->memory_high != vm->memory_high;

        vm->hysteresis_until_usec = d->hysteresis_until_usec;
        vm->backoff_until_usec = d->backoff_until_usec;
        vm->stall_count = d->stall_count;
        vm->last_inflate_usec = d->last_inflate_usec;

        if (d->action == POLICY_NONE) {
                vm->last_action = POLICY_NONE;
                return;
        }

        /* A hold repeats every tick while it lasts; say it once. */
        bool repeat = d->action == POLICY_HOLD && vm->last_action == POLICY_HOLD;
        vm->last_action = d->action;
        memcpy(vm->last_reason, d->reason, sizeof vm->last_reason);
        if (!repeat) {
                uint64_t bytes = is_balloon_action(d->action) ?
                        (d->target > vm->actual ? d->target - vm->actual : vm->actual - d->target) :
                        d->memory_high;
                log_decision(vm->name, policy_action_to_string(d->action), bytes, d->target, d->reason);
                vm_record(vm, now, d);
        }

        if (high_changes && d->raise_high_first)
                vm_write_memory_high(vm, d->memory_high, dry_run);

        if (is_balloon_action(d->action) && d->target != vm->target)
                vm_send_balloon(vm, d->target, dry_run);

        if (high_changes && !d->raise_high_first)
                vm_write_memory_high(vm, d->memory_high, dry_run);
}
