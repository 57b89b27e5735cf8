/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The QMP backend: a plain QEMU whose monitor socket is <RuntimeDir>/qmp/<vm>.sock, and the slice scan
 * that finds them. */

#include <inttypes.h>
#include <stdio.h>

#include "backend-qmp.h"
#include "backend.h"
#include "cgroup.h"
#include "log.h"
#include "qmp.h"
#include "util.h"
#include "vm.h"

#define QMP_TIMEOUT_USEC (5 * USEC_PER_SEC)

typedef struct QmpBackend {
        Backend backend;
        QmpClient *qmp;
        char *balloon_qom_path;
        uint64_t boot_memory;
        uint64_t stats_interval;  /* seconds, as last set in QEMU's guest-stats-polling-interval */
} QmpBackend;

static const char *name_of(QmpBackend *q) {
        return q->backend.vm->name;
}

static int qb_call(QmpBackend *q, const char *command, json_object *args, qmp_reply_t cb) {
        int r = qmp_client_call(q->qmp, command, args, QMP_TIMEOUT_USEC, cb, q);
        if (r < 0)
                log_warning_errno(r, "%s: cannot send %s: %m", name_of(q), command);
        return r;
}

static bool qb_reply_failed(QmpBackend *q, const char *what, int error, const char *desc) {
        if (error == 0)
                return false;
        if (error != -ECANCELED)
                log_warning_errno(error, "%s: %s failed: %s", name_of(q), what, desc ?: strerror(-error));
        return true;
}

/* Probe chain after QMP becomes ready: boot memory -> balloon device -> stats polling -> size. A step
 * that fails starts the chain over on a new connection after the back-off, rather than leave the VM
 * unmanaged until QEMU restarts. A lost connection (-ECONNRESET, a timeout) does that by itself. */
static bool qb_probe_failed(QmpBackend *q, const char *what, int error, const char *desc) {
        if (!qb_reply_failed(q, what, error, desc))
                return false;
        if (error == -EREMOTEIO)
                qmp_client_reconnect(q->qmp, error, "adoption failed");
        return true;
}

static void qb_probe_malformed(QmpBackend *q, const char *what) {
        char why[64];

        (void) snprintf(why, sizeof why, "malformed %s reply", what);
        qmp_client_reconnect(q->qmp, -EBADMSG, why);
}

static void on_probe_balloon(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        QmpBackend *q = userdata;
        uint64_t actual;

        if (qb_probe_failed(q, "query-balloon", error, desc))
                return;
        if (qmp_parse_query_balloon(result, &actual) < 0) {
                /* No size (the guest's config.actual past its RAM): the boot memory, which lowers
                 * nothing, rather than leaving the VM unmanaged for the guest to choose. */
                vm_backend_balloon_invalid(q->backend.vm, "query-balloon");
                actual = q->boot_memory;
        }
        vm_backend_ready(q->backend.vm, q->boot_memory, actual, q->balloon_qom_path);
}

static void on_probe_stats_interval(QmpClient *c, int error, json_object *result, const char *desc,
                                    void *userdata) {
        QmpBackend *q = userdata;

        /* Without stats polling the VM is never inflated (the policy needs the guest's available
         * memory); keep managing it anyway so guest pressure and the floor still apply. */
        (void) qb_reply_failed(q, "enabling guest stats polling", error, desc);
        if (error < 0 && error != -EREMOTEIO)
                return; /* the connection is gone; the next one probes again */
        (void) qb_call(q, "query-balloon", NULL, on_probe_balloon);
}

static int qb_set_polling_interval(QmpBackend *q, uint64_t seconds, qmp_reply_t cb) {
        json_object *args = json_object_new_object();

        if (!args)
                return log_oom();
        json_object_object_add(args, "path", json_object_new_string(q->balloon_qom_path));
        json_object_object_add(args, "property", json_object_new_string("guest-stats-polling-interval"));
        json_object_object_add(args, "value", json_object_new_int64((int64_t) seconds));
        return qb_call(q, "qom-set", args, cb);
}

static uint64_t interval_seconds(uint64_t usec) {
        return MAX(usec / USEC_PER_SEC, 1u);
}

static void qb_probe_stats(QmpBackend *q) {
        q->stats_interval = interval_seconds(q->backend.vm->ctx->config->stats_interval_usec);
        (void) qb_set_polling_interval(q, q->stats_interval, on_probe_stats_interval);
}

static void qb_probe_devices(QmpBackend *q, const char *container);

static void on_probe_devices(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        QmpBackend *q = userdata;
        /* Which container was listed: remembered in balloon_qom_path until the device is found. */
        bool anon = q->balloon_qom_path && streq(q->balloon_qom_path, "/machine/peripheral-anon");

        if (qb_probe_failed(q, "qom-list", error, desc))
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
                if (asprintf(&path, "%s/%s", q->balloon_qom_path, json_object_get_string(name)) < 0) {
                        log_oom();
                        return;
                }
                free(q->balloon_qom_path);
                q->balloon_qom_path = TAKE_PTR(path);
                qb_probe_stats(q);
                return;
        }

        if (!anon) {
                qb_probe_devices(q, "/machine/peripheral-anon");
                return;
        }

        vm_backend_unsupported(q->backend.vm, "no virtio-balloon device in this VM (add -device virtio-balloon-pci)");
}

static void qb_probe_devices(QmpBackend *q, const char *container) {
        json_object *args = json_object_new_object();
        char *p = strdup(container);

        if (!args || !p) {
                json_object_put(args);
                free(p);
                log_oom();
                return;
        }
        free(q->balloon_qom_path);
        q->balloon_qom_path = p;
        json_object_object_add(args, "path", json_object_new_string(container));
        (void) qb_call(q, "qom-list", args, on_probe_devices);
}

static void on_probe_memory(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        QmpBackend *q = userdata;
        json_object *base;

        if (qb_probe_failed(q, "query-memory-size-summary", error, desc))
                return;
        if (!json_object_object_get_ex(result, "base-memory", &base) || !json_object_is_type(base, json_type_int)) {
                qb_probe_malformed(q, "query-memory-size-summary");
                return;
        }
        q->boot_memory = json_object_get_uint64(base);
        qb_probe_devices(q, "/machine/peripheral");
}

static void on_qmp_state(QmpClient *c, QmpState state, int error, void *userdata) {
        QmpBackend *q = userdata;

        switch (state) {
        case QMP_READY:
                vm_backend_probing(q->backend.vm);
                (void) qb_call(q, "query-memory-size-summary", NULL, on_probe_memory);
                break;
        case QMP_DISCONNECTED:
                /* qmp.c already warned with the details. */
                vm_backend_lost(q->backend.vm, error);
                break;
        case QMP_CONNECTING:
                break;
        }
}

static void on_qmp_event(QmpClient *c, const char *event, json_object *data, void *userdata) {
        QmpBackend *q = userdata;
        GuestPressureEvent e;
        uint64_t actual;

        if (streq(event, "BALLOON_CHANGE")) {
                /* Its data is query-balloon's reply, and gets the same parser: a negative size (the
                 * guest's config.actual past its RAM) is rejected on both paths. */
                if (qmp_parse_query_balloon(data, &actual) < 0)
                        vm_backend_balloon_invalid(q->backend.vm, "BALLOON_CHANGE");
                else
                        vm_backend_balloon_moved(q->backend.vm, actual);
                return;
        }

        if (streq(event, "BALLOON_GUEST_PRESSURE")) {
                int r = guest_pressure_parse(data, &e);

                if (r < 0)
                        vm_backend_guest_pressure_invalid(q->backend.vm, r);
                else
                        vm_backend_guest_pressure(q->backend.vm, &e);
                return;
        }

        log_debug("%s: QMP event %s", name_of(q), event);
}

static void on_refresh_balloon(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        QmpBackend *q = userdata;
        uint64_t actual;

        if (!qb_reply_failed(q, "query-balloon", error, desc)) {
                if (qmp_parse_query_balloon(result, &actual) < 0)
                        vm_backend_balloon_invalid(q->backend.vm, "query-balloon");
                else
                        vm_backend_balloon_moved(q->backend.vm, actual);
        }
        vm_backend_refresh_done(q->backend.vm);
}

static void on_refresh_stats(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        QmpBackend *q = userdata;
        GuestStats s;

        if (!qb_reply_failed(q, "reading guest stats", error, desc))
                vm_backend_stats(q->backend.vm, guest_stats_parse(result, &s) >= 0 ? &s : NULL);
        vm_backend_refresh_done(q->backend.vm);
}

static unsigned qb_refresh(Backend *b) {
        QmpBackend *q = (QmpBackend *) b;
        unsigned n = 0;
        json_object *args;

        if (qb_call(q, "query-balloon", NULL, on_refresh_balloon) >= 0)
                n++;

        args = json_object_new_object();
        if (!args) {
                log_oom();
                return n;
        }
        json_object_object_add(args, "path", json_object_new_string(q->balloon_qom_path));
        json_object_object_add(args, "property", json_object_new_string("guest-stats"));
        if (qb_call(q, "qom-get", args, on_refresh_stats) >= 0)
                n++;

        return n;
}

static void on_balloon_reply(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        (void) qb_reply_failed(userdata, "balloon", error, desc);
}

static void on_stats_interval_reply(QmpClient *c, int error, json_object *result, const char *desc,
                                    void *userdata) {
        (void) qb_reply_failed(userdata, "setting the guest stats polling interval", error, desc);
}

static void qb_set_stats_interval(Backend *b, uint64_t usec) {
        QmpBackend *q = (QmpBackend *) b;
        uint64_t seconds = interval_seconds(usec);

        if (seconds == q->stats_interval)
                return;
        /* QEMU re-arms its timer a whole new interval away when the interval changes, but polls the
         * guest at once when polling is switched on: off first when going faster, so a guest that
         * became busy reports now rather than at the end of its idle interval. */
        if (seconds < q->stats_interval && qb_set_polling_interval(q, 0, on_stats_interval_reply) < 0)
                return;
        if (qb_set_polling_interval(q, seconds, on_stats_interval_reply) >= 0)
                q->stats_interval = seconds;
}

static int qb_set_target(Backend *b, uint64_t bytes) {
        QmpBackend *q = (QmpBackend *) b;
        json_object *args = json_object_new_object();

        if (!args)
                return log_oom();
        json_object_object_add(args, "value", json_object_new_int64((int64_t) bytes));
        return qb_call(q, "balloon", args, on_balloon_reply);
}

static int qb_start(Backend *b) {
        QmpBackend *q = (QmpBackend *) b;
        int r = qmp_client_start(q->qmp);

        if (r < 0)
                return log_error_errno(r, "%s: cannot start QMP client: %m", name_of(q));
        return 0;
}

static void qb_free(Backend *b) {
        QmpBackend *q = (QmpBackend *) b;

        /* Pending replies are cancelled here and see -ECANCELED. */
        qmp_client_free(q->qmp);
        free(q->balloon_qom_path);
        free(q);
}

static const BackendOps qmp_backend_ops = {
        .name = "QMP",
        .start = qb_start,
        .free = qb_free,
        .refresh = qb_refresh,
        .set_target = qb_set_target,
        .set_stats_interval = qb_set_stats_interval,
};

/* ---- The slice scan ---- */

static int qmp_vm_new(Discovery *d, const char *name, VM **ret) {
        const VMContext *ctx = d->ctx->vm;
        _cleanup_(vm_freep) VM *vm = NULL;
        _cleanup_free_ char *cgpath = NULL, *socket_path = NULL;
        QmpBackend *q;
        int r;

        r = cg_vm_path(ctx->config->parent_slice, name, &cgpath);
        if (r < 0)
                return log_error_errno(r, "%s: invalid VM name: %m", name);
        if (asprintf(&socket_path, "%s/qmp/%s.sock", d->ctx->runtime_dir, name) < 0)
                return log_oom();

        r = vm_new(ctx, name, cgpath, &vm);
        if (r < 0)
                return r;

        q = new0(QmpBackend, 1);
        if (!q)
                return log_oom();
        q->backend.ops = &qmp_backend_ops;
        vm_attach_backend(vm, &q->backend);

        r = qmp_client_new(ctx->event, socket_path, &q->qmp);
        if (r < 0)
                return log_error_errno(r, "%s: cannot create QMP client: %m", name);
        qmp_client_set_handlers(q->qmp, on_qmp_event, on_qmp_state, q);

        r = vm_start(vm);
        if (r < 0)
                return r;
        log_info("%s: found slice %s, connecting to %s", name, cgpath, socket_path);
        *ret = TAKE_PTR(vm);
        return 0;
}

static bool strv_contains(char **l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

/* Adopts new balloon slices and drops vanished ones. A slice whose VM another source already manages
 * (a libvirt domain placed in it) is left to that one. */
static int qmp_scan(Discovery *d) {
        const VMContext *ctx = d->ctx->vm;
        _cleanup_strv_free_ char **names = NULL;
        int r;

        r = cg_list_vms(ctx->cgroup_fd, ctx->config->parent_slice, &names);
        if (r == -ENOENT)
                names = NULL; /* no parent slice (yet): no VMs */
        else if (r < 0)
                return log_warning_errno(r, "Cannot list the VM slices under ParentSlice=%s: %m", ctx->config->parent_slice);

        for (size_t i = 0; i < d->vms.n;) {
                VM *vm = d->vms.items[i];
                if (strv_contains(names, vm->name)) {
                        i++;
                        continue;
                }
                log_info("%s: slice %s is gone, dropping the VM", vm->name, vm->cgpath);
                discovery_remove_vm(d, vm);
        }

        for (char **name = names; name && *name; name++) {
                VM *vm = NULL;

                if (d->ctx->find_vm(d->ctx, *name))
                        continue;
                r = qmp_vm_new(d, *name, &vm);
                if (r < 0)
                        continue;
                r = discovery_add_vm(d, vm);
                if (r < 0) {
                        vm_free(vm);
                        return r;
                }
        }
        return 0;
}

static int qmp_discovery_start(Discovery *d) {
        (void) qmp_scan(d);
        return 0;
}

static void qmp_discovery_tick(Discovery *d) {
        (void) qmp_scan(d);
}

/* A VM that never answered on its socket is let go: the slice is a libvirt domain's. One that was
 * adopted once (its boot memory known) is a QEMU of its own, perhaps restarting: a libvirt domain
 * that is only named like it must not take it over. */
static bool qmp_discovery_release(Discovery *d, VM *vm) {
        if (vm->state == VM_READY || vm->boot_memory > 0)
                return false;
        discovery_remove_vm(d, vm);
        return true;
}

static void qmp_discovery_free(Discovery *d) {
        discovery_done(d);
        free(d);
}

static const DiscoveryOps qmp_discovery_ops = {
        .name = "slice scan",
        .start = qmp_discovery_start,
        .tick = qmp_discovery_tick,
        .release = qmp_discovery_release,
        .free = qmp_discovery_free,
};

int qmp_discovery_new(const DiscoveryContext *ctx, Discovery **ret) {
        Discovery *d = new0(Discovery, 1);

        if (!d)
                return log_oom();
        *d = (Discovery) { .ops = &qmp_discovery_ops, .ctx = ctx };
        *ret = d;
        return 0;
}
