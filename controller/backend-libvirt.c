/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The libvirt backend: domains of a libvirt daemon, through libvirt's C API. libvirt owns their QMP
 * monitors; it relays the balloon's size (BALLOON_CHANGE), sets targets (virDomainSetMemoryFlags)
 * and reads the guest stats (virDomainMemoryStats), and passes the patched device's
 * BALLOON_GUEST_PRESSURE event through (libvirt-qemu's monitor events). This file follows the
 * domains (where their QEMU runs, adoption, lifecycle); libvirt-connection.c keeps the connection.
 *
 * libvirt's calls block until libvirtd answers; its events come through our sd-event loop
 * (virt-event.c). Keepalive (5 s, 3 probes) bounds how long a hung libvirtd can hold the loop. */

#include <fcntl.h>
#include <inttypes.h>
#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend-libvirt.h"
#include "backend.h"
#include "cgroup.h"
#include "domain-xml.h"
#include "json-util.h"
#include "libvirt-connection.h"
#include "log.h"
#include "util.h"
#include "vm.h"

#define BACKOFF_MIN_USEC (1 * USEC_PER_SEC)
#define BACKOFF_MAX_USEC (30 * USEC_PER_SEC)

typedef struct Libvirt {
        Discovery discovery;    /* its VMs are the domains' */
        LibvirtConnection *conn;
        char *root_path;        /* the cgroup root in the cgroup2 hierarchy; NULL: not on cgroup2 */
} Libvirt;

typedef struct LibvirtBackend {
        Backend backend;
        Libvirt *lv;
        virDomainPtr dom;
        char uuid[VIR_UUID_STRING_BUFLEN];
        char *device;            /* the balloon as the domain XML names it, for messages */
        sd_event_source *probe;  /* adoption, from the loop; again with back-off after a failure */
        uint64_t probe_backoff_usec;
        bool seen;               /* listed since the last (re)connection */
} LibvirtBackend;

static const char *lv_error(void) {
        return virGetLastErrorMessage();
}

static const Config *lv_config(const Libvirt *lv) {
        return lv->discovery.ctx->vm->config;
}

/* The backend of one of lv's VMs. */
static LibvirtBackend *backend_of(const Libvirt *lv, size_t i) {
        return (LibvirtBackend *) lv->discovery.vms.items[i]->backend;
}

static LibvirtBackend *lv_find(Libvirt *lv, virDomainPtr dom) {
        char uuid[VIR_UUID_STRING_BUFLEN];

        if (virDomainGetUUIDString(dom, uuid) < 0)
                return NULL;
        for (size_t i = 0; i < lv->discovery.vms.n; i++)
                if (streq(backend_of(lv, i)->uuid, uuid))
                        return backend_of(lv, i);
        return NULL;
}

/* ---- Where the domain's QEMU runs: its cgroup relative to the cgroup root ---- */

static int domain_pid(Libvirt *lv, const char *name, pid_t *ret) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        uint64_t pid;
        int r;

        if (asprintf(&path, "%s/%s.pid", lv_config(lv)->libvirt_pid_dir, name) < 0)
                return -ENOMEM;
        r = read_full_file_at(AT_FDCWD, path, 64, &text, NULL);
        if (r < 0)
                return r;
        text[strcspn(text, "\n")] = 0;
        r = safe_atou64(text, &pid);
        if (r < 0 || pid == 0 || pid > INT_MAX)
                return -EBADMSG;
        *ret = (pid_t) pid;
        return 0;
}

/* The VM's cgroup and, when it is a balloon slice, the VM's name there; NULL when out of reach, which
 * is no error. Fails with -ENOMEM only. */
static int domain_cgroup(Libvirt *lv, const char *name, char **ret_cgpath, char **ret_vm) {
        _cleanup_free_ char *path = NULL, *text = NULL, *hier = NULL, *rel = NULL, *cgpath = NULL, *vm = NULL;
        pid_t pid = 0;
        int r = -ENOENT;

        if (lv->root_path)
                r = domain_pid(lv, name, &pid);
        if (r >= 0 && asprintf(&path, "%s/%d/cgroup", lv->discovery.ctx->proc_root, (int) pid) < 0)
                return -ENOMEM;
        if (r >= 0)
                r = read_full_file_at(AT_FDCWD, path, 64 * 1024, &text, NULL);
        if (r >= 0)
                r = cg_proc_cgroup_path(text, &hier);
        if (r >= 0)
                r = cg_path_below(lv->root_path, hier, &rel);
        if (r >= 0)
                r = cg_vm_from_path(lv_config(lv)->parent_slice, rel, &cgpath, &vm);
        if (r == -ENOMEM)
                return r;
        if (r < 0 && lv->root_path)
                log_debug_errno(r, "%s: QEMU (pid %d from %s) is in no VM cgroup below the cgroup root (%s): %m",
                                name, (int) pid, lv_config(lv)->libvirt_pid_dir, strna(hier));
        *ret_cgpath = TAKE_PTR(cgpath);
        *ret_vm = TAKE_PTR(vm);
        return 0;
}

/* ---- Adoption ---- */

static void lb_schedule_probe(LibvirtBackend *b, uint64_t delay_usec) {
        if (sd_event_source_set_time_relative(b->probe, delay_usec) < 0 ||
            sd_event_source_set_enabled(b->probe, SD_EVENT_ONESHOT) < 0)
                log_warning("%s: cannot schedule adopting the domain", b->backend.vm->name);
}

/* A call failed without the domain being unfit: try again later, less and less often. */
static void lb_retry(LibvirtBackend *b, const char *what) {
        VM *vm = b->backend.vm;

        vm_backend_lost(vm, -EIO);
        if (!libvirt_connection_alive(b->lv->conn))
                return; /* the connection went: reconnecting adopts the domain again */
        log_warning("%s: %s failed: %s; retrying in %" PRIu64 " s", vm->name, what, lv_error(),
                    b->probe_backoff_usec / USEC_PER_SEC);
        lb_schedule_probe(b, b->probe_backoff_usec);
        b->probe_backoff_usec = MIN(b->probe_backoff_usec * 2, BACKOFF_MAX_USEC);
}

static bool lb_migrating(LibvirtBackend *b) {
        virTypedParameterPtr params = NULL;
        int type = VIR_DOMAIN_JOB_NONE, n = 0, op = 0, state, reason;

        if (virDomainGetState(b->dom, &state, &reason, 0) == 0 && state == VIR_DOMAIN_PAUSED &&
            IN_SET(reason, VIR_DOMAIN_PAUSED_MIGRATION, VIR_DOMAIN_PAUSED_POSTCOPY))
                return true;
        /* A query job: allowed while a migration holds the domain, unlike setting its memory. */
        if (virDomainGetJobStats(b->dom, &type, &params, &n, 0) < 0)
                return false;
        (void) virTypedParamsGetInt(params, n, VIR_DOMAIN_JOB_OPERATION, &op);
        virTypedParamsFree(params, n);
        return type != VIR_DOMAIN_JOB_NONE &&
               IN_SET(op, VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN, VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT);
}

/* Not managed while a migration holds the domain. libvirt says when one succeeds (JOB_COMPLETED, or the
 * domain resumes) but not always when one fails or is cancelled: look again, less and less often. */
static void lb_wait_migration(LibvirtBackend *b) {
        vm_backend_unsupported(b->backend.vm, "migration in progress (checked again until it ends)");
        lb_schedule_probe(b, b->probe_backoff_usec);
        b->probe_backoff_usec = MIN(b->probe_backoff_usec * 2, BACKOFF_MAX_USEC);
}

/* Reads the XML: whether it can balloon, and the metadata. Returns false when it cannot. */
static bool lb_read_xml(LibvirtBackend *b) {
        VM *vm = b->backend.vm;
        _cleanup_free_ char *xml = NULL;
        DomainInfo info;
        int r;

        xml = virDomainGetXMLDesc(b->dom, 0);
        if (!xml) {
                lb_retry(b, "reading the domain XML");
                return false;
        }
        r = domain_xml_parse(xml, vm->name, &info);
        if (r == -ENOMEM) {
                lb_retry(b, "parsing the domain XML");
                return false;
        }
        if (r < 0) {
                vm_backend_unsupported(vm, "libvirt gave XML that is not a domain's");
                return false;
        }
        if (info.unsupported) {
                vm_backend_unsupported(vm, info.unsupported);
                domain_info_done(&info);
                return false;
        }
        vm_backend_metadata(vm, &info.config);
        free(b->device);
        if (asprintf(&b->device, "%s of domain %s", info.balloon_alias ?: "memballoon",
                     virDomainGetName(b->dom)) < 0)
                b->device = NULL;
        domain_info_done(&info);
        return true;
}

static int lb_memory_stats(LibvirtBackend *b, virDomainMemoryStatStruct *stats, int *ret_n) {
        int n = virDomainMemoryStats(b->dom, stats, VIR_DOMAIN_MEMORY_STAT_NR, 0);

        if (n < 0)
                return -EIO;
        *ret_n = n;
        return 0;
}

/* A balloon size libvirt passes on from the guest, saturated: a size past 2^64 (QEMU's negative
 * 'actual' as libvirt keeps it) stays out of range for vm.c to reject. */
static uint64_t kib_to_bytes(unsigned long long kib) {
        return kib > UINT64_MAX / KIB ? UINT64_MAX : kib * KIB;
}

static int on_probe(sd_event_source *s, uint64_t usec, void *userdata) {
        LibvirtBackend *b = userdata;
        VM *vm = b->backend.vm;
        virDomainMemoryStatStruct stats[VIR_DOMAIN_MEMORY_STAT_NR];
        unsigned long max_kib;
        uint64_t actual = 0;
        int n, active;

        active = virDomainIsActive(b->dom);
        if (active <= 0) {
                if (active < 0)
                        lb_retry(b, "checking the domain");
                return 0; /* stopped: its lifecycle event drops it */
        }
        if (lb_migrating(b)) {
                lb_wait_migration(b);
                return 0;
        }
        vm_backend_probing(vm);

        if (!lb_read_xml(b))
                return 0;

        max_kib = virDomainGetMaxMemory(b->dom);
        if (max_kib == 0) {
                lb_retry(b, "reading the domain's memory size");
                return 0;
        }
        /* As for QMP: without stats polling the VM is never inflated, but the floor still applies. */
        if (virDomainSetMemoryStatsPeriod(b->dom, (int) MAX(vm->ctx->config->stats_interval_usec / USEC_PER_SEC, 1u),
                                          VIR_DOMAIN_AFFECT_LIVE) < 0)
                log_warning("%s: enabling guest stats polling failed: %s", vm->name, lv_error());

        if (lb_memory_stats(b, stats, &n) < 0) {
                lb_retry(b, "reading the balloon size");
                return 0;
        }
        for (int i = 0; i < n; i++)
                if (stats[i].tag == VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON)
                        actual = kib_to_bytes(stats[i].val);
        if (actual == 0) {
                vm_backend_unsupported(vm, "libvirt reports no balloon size (no balloon device in QEMU?)");
                return 0;
        }

        b->probe_backoff_usec = BACKOFF_MIN_USEC;
        vm_backend_ready(vm, (uint64_t) max_kib * KIB, actual, b->device ?: "memballoon");
        return 0;
}

/* ---- Backend operations ---- */

static const struct {
        int tag;
        GuestStat stat;
        uint64_t unit;          /* libvirt's unit in bytes; 1 for counts */
} stat_map[] = {
        { VIR_DOMAIN_MEMORY_STAT_SWAP_IN,         GUEST_STAT_SWAP_IN,          KIB },
        { VIR_DOMAIN_MEMORY_STAT_SWAP_OUT,        GUEST_STAT_SWAP_OUT,         KIB },
        { VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT,     GUEST_STAT_MAJOR_FAULTS,     1 },
        { VIR_DOMAIN_MEMORY_STAT_MINOR_FAULT,     GUEST_STAT_MINOR_FAULTS,     1 },
        { VIR_DOMAIN_MEMORY_STAT_UNUSED,          GUEST_STAT_FREE_MEMORY,      KIB },
        /* libvirt's names are off by one from QEMU's: "available" is the guest's total memory,
         * "usable" what QEMU calls available. */
        { VIR_DOMAIN_MEMORY_STAT_AVAILABLE,       GUEST_STAT_TOTAL_MEMORY,     KIB },
        { VIR_DOMAIN_MEMORY_STAT_USABLE,          GUEST_STAT_AVAILABLE_MEMORY, KIB },
        { VIR_DOMAIN_MEMORY_STAT_DISK_CACHES,     GUEST_STAT_DISK_CACHES,      KIB },
        { VIR_DOMAIN_MEMORY_STAT_HUGETLB_PGALLOC, GUEST_STAT_HTLB_PGALLOC,     1 },
        { VIR_DOMAIN_MEMORY_STAT_HUGETLB_PGFAIL,  GUEST_STAT_HTLB_PGFAIL,      1 },
};

static unsigned lb_refresh(Backend *backend) {
        LibvirtBackend *b = (LibvirtBackend *) backend;
        VM *vm = backend->vm;
        virDomainMemoryStatStruct stats[VIR_DOMAIN_MEMORY_STAT_NR];
        _cleanup_free_ char *cgpath = NULL, *unused = NULL;
        GuestStats s = {};
        uint64_t actual = 0;
        int n;

        if (lb_migrating(b)) {
                lb_wait_migration(b);
                return 0;
        }
        if (lb_memory_stats(b, stats, &n) < 0) {
                lb_retry(b, "reading the guest stats");
                return 0;
        }
        for (int i = 0; i < n; i++) {
                if (stats[i].tag == VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON)
                        actual = kib_to_bytes(stats[i].val);
                else if (stats[i].tag == VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE)
                        s.last_update = stats[i].val;
                for (size_t k = 0; k < ELEMENTSOF(stat_map); k++)
                        if (stats[i].tag == stat_map[k].tag) {
                                s.value[stat_map[k].stat] = stats[i].val * stat_map[k].unit;
                                s.valid |= UINT32_C(1) << stat_map[k].stat;
                        }
        }
        if (actual > 0)
                vm_backend_balloon_moved(vm, actual);
        vm_backend_stats(vm, &s);

        /* QEMU may have been moved to another cgroup since (or only now into its slice). */
        if (domain_cgroup(b->lv, virDomainGetName(b->dom), &cgpath, &unused) >= 0 && !streq_ptr(cgpath, vm->cgpath)) {
                log_info("%s: QEMU's cgroup is now %s", vm->name, cgpath ?: "out of reach");
                vm_backend_cgroup(vm, cgpath);
        }
        return 0;
}

static int lb_set_target(Backend *backend, uint64_t bytes) {
        LibvirtBackend *b = (LibvirtBackend *) backend;

        if (virDomainSetMemoryFlags(b->dom, (unsigned long) (bytes / KIB), VIR_DOMAIN_AFFECT_LIVE) < 0)
                return log_warning_errno(EIO, "%s: setting the balloon target failed: %s", backend->vm->name, lv_error());
        return 0;
}

static int lb_start(Backend *backend) {
        lb_schedule_probe((LibvirtBackend *) backend, 0);
        return 0;
}

static void lb_free(Backend *backend) {
        LibvirtBackend *b = (LibvirtBackend *) backend;

        sd_event_source_disable_unref(b->probe);
        free(b->device);
        if (b->dom)
                (void) virDomainFree(b->dom);
        free(b);
}

static const BackendOps libvirt_backend_ops = {
        .name = "libvirt",
        .start = lb_start,
        .free = lb_free,
        .refresh = lb_refresh,
        .set_target = lb_set_target,
};

/* ---- Domains coming and going ---- */

static int lv_domain_found(Libvirt *lv, virDomainPtr dom) {
        const DiscoveryContext *ctx = lv->discovery.ctx;
        LibvirtBackend *b = lv_find(lv, dom);
        _cleanup_free_ char *cgpath = NULL, *slice_vm = NULL, *xml = NULL;
        _cleanup_(vm_freep) VM *vm = NULL;
        const char *dname = virDomainGetName(dom);
        const char *name;
        VM *other;
        int r;

        if (b) {
                /* Known (libvirtd restarted, or the domain resumed): the new handle, adopted again. */
                if (b->dom != dom) {
                        (void) virDomainRef(dom);
                        (void) virDomainFree(b->dom);
                        b->dom = dom;
                }
                b->seen = true;
                b->probe_backoff_usec = BACKOFF_MIN_USEC;
                lb_schedule_probe(b, 0);
                return 0;
        }

        if (domain_cgroup(lv, dname, &cgpath, &slice_vm) < 0)
                return log_oom();
        /* Not (yet) in its slice: the name its <partition> gives, else the domain's. */
        if (!slice_vm && (xml = virDomainGetXMLDesc(dom, 0))) {
                DomainInfo info;
                _cleanup_free_ char *ppath = NULL, *pcg = NULL;

                if (domain_xml_parse(xml, dname, &info) >= 0) {
                        if (info.partition && cg_partition_path(info.partition, &ppath) >= 0)
                                (void) cg_vm_from_path(lv_config(lv)->parent_slice, ppath, &pcg, &slice_vm);
                        domain_info_done(&info);
                }
        }
        name = slice_vm ?: dname;

        other = ctx->find_vm(ctx, name);
        if (other) {
                /* A slice scan may have found the domain's slice first and waits for a QMP socket
                 * that libvirt will never offer. A domain that is only named like another VM is not
                 * that VM, even while it is not answering. */
                if (!slice_vm || !discovery_release(other)) {
                        log_warning("%s: domain %s would be VM %s, which is already managed; skipping it", name,
                                    dname, name);
                        return -EEXIST;
                }
                log_info("%s: the slice is domain %s's: managing it through libvirt", name, dname);
        }

        r = vm_new(ctx->vm, name, cgpath, &vm);
        if (r < 0)
                return r;
        b = new0(LibvirtBackend, 1);
        if (!b)
                return log_oom();
        b->backend.ops = &libvirt_backend_ops;
        vm_attach_backend(vm, &b->backend);
        b->lv = lv;
        b->seen = true;
        b->probe_backoff_usec = BACKOFF_MIN_USEC;
        (void) virDomainRef(dom);
        b->dom = dom;
        if (virDomainGetUUIDString(dom, b->uuid) < 0)
                return log_warning_errno(EIO, "%s: no UUID for domain %s: %s", name, dname, lv_error());
        r = sd_event_add_time_relative(ctx->vm->event, &b->probe, CLOCK_MONOTONIC, 0, 0, on_probe, b);
        if (r < 0)
                return log_error_errno(r, "%s: cannot add the adoption timer: %m", name);

        r = vm_start(vm);
        if (r < 0)
                return r;
        log_info("%s: found libvirt domain %s%s%s", name, dname, cgpath ? " in " : ", its cgroup out of reach",
                 cgpath ?: "");
        r = discovery_add_vm(&lv->discovery, vm);
        if (r < 0)
                return r;
        TAKE_PTR(vm);
        return 0;
}

static void lv_domain_gone(Libvirt *lv, virDomainPtr dom, const char *why) {
        LibvirtBackend *b = lv_find(lv, dom);

        if (!b)
                return;
        log_info("%s: domain %s %s, dropping the VM", b->backend.vm->name, virDomainGetName(dom), why);
        discovery_remove_vm(&lv->discovery, b->backend.vm);
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque) {
        Libvirt *lv = opaque;
        LibvirtBackend *b;

        switch (event) {
        case VIR_DOMAIN_EVENT_STARTED:
                (void) lv_domain_found(lv, dom);
                break;
        case VIR_DOMAIN_EVENT_RESUMED:
                /* The end of an incoming migration, or a paused domain running again. */
                b = lv_find(lv, dom);
                if (b && b->backend.vm->state != VM_READY)
                        (void) lv_domain_found(lv, dom);
                break;
        case VIR_DOMAIN_EVENT_STOPPED:
                lv_domain_gone(lv, dom, detail == VIR_DOMAIN_EVENT_STOPPED_MIGRATED ? "migrated away" : "stopped");
                break;
        case VIR_DOMAIN_EVENT_DEFINED:
        case VIR_DOMAIN_EVENT_UNDEFINED:
                log_debug("domain %s %s", virDomainGetName(dom),
                          event == VIR_DOMAIN_EVENT_DEFINED ? "defined" : "undefined");
                break;
        default:
                break;
        }
        return 0;
}

static void on_job_completed(virConnectPtr conn, virDomainPtr dom, virTypedParameterPtr params, int n, void *opaque) {
        LibvirtBackend *b = lv_find(opaque, dom);

        if (b && b->backend.vm->state == VM_UNSUPPORTED)
                (void) lv_domain_found(opaque, dom);
}

static void on_balloon_change(virConnectPtr conn, virDomainPtr dom, unsigned long long actual_kib, void *opaque) {
        LibvirtBackend *b = lv_find(opaque, dom);

        if (b && b->backend.vm->state == VM_READY)
                vm_backend_balloon_moved(b->backend.vm, kib_to_bytes(actual_kib));
}

static void on_metadata_change(virConnectPtr conn, virDomainPtr dom, int type, const char *nsuri, void *opaque) {
        LibvirtBackend *b = lv_find(opaque, dom);

        if (b && b->backend.vm->state == VM_READY && type == VIR_DOMAIN_METADATA_ELEMENT &&
            streq_ptr(nsuri, DOMAIN_METADATA_NS) && lb_read_xml(b))
                log_info("%s: metadata changed: weight %" PRIu64, b->backend.vm->name, b->backend.vm->config.weight);
}

static void on_qemu_event(virConnectPtr conn, virDomainPtr dom, const char *event, long long seconds,
                          unsigned micros, const char *details, void *opaque) {
        LibvirtBackend *b = lv_find(opaque, dom);
        _cleanup_json_ json_object *data = NULL;
        GuestPressureEvent e;

        if (!b)
                return;
        data = details ? json_tokener_parse(details) : NULL;
        if (!data || guest_pressure_parse(data, &e) < 0) {
                log_warning("%s: malformed BALLOON_GUEST_PRESSURE event, ignoring it", b->backend.vm->name);
                return;
        }
        vm_backend_guest_pressure(b->backend.vm, &e);
}

/* ---- The connection's news ---- */

static const char *on_uri(void *userdata) {
        return lv_config(userdata)->libvirt_uri;
}

static void on_connected(virDomainPtr *doms, int n, void *userdata) {
        Libvirt *lv = userdata;

        for (size_t i = 0; i < lv->discovery.vms.n; i++)
                backend_of(lv, i)->seen = false;
        for (int i = 0; i < n; i++)
                (void) lv_domain_found(lv, doms[i]);

        /* Stopped while we were away. */
        for (size_t i = 0; i < lv->discovery.vms.n;) {
                VM *vm = lv->discovery.vms.items[i];
                if (!backend_of(lv, i)->seen) {
                        log_info("%s: domain gone while libvirt was away, dropping the VM", vm->name);
                        discovery_remove_vm(&lv->discovery, vm);
                        continue;
                }
                i++;
        }
}

static void on_lost(void *userdata) {
        Libvirt *lv = userdata;

        for (size_t i = 0; i < lv->discovery.vms.n; i++) {
                (void) sd_event_source_set_enabled(backend_of(lv, i)->probe, SD_EVENT_OFF);
                vm_backend_lost(lv->discovery.vms.items[i], -ECONNRESET);
        }
}

static const LibvirtCallbacks libvirt_callbacks = {
        .uri = on_uri,
        .connected = on_connected,
        .lost = on_lost,
        .lifecycle = on_lifecycle,
        .balloon_change = on_balloon_change,
        .metadata_change = on_metadata_change,
        .job_completed = on_job_completed,
        .guest_pressure = on_qemu_event,
};

/* ---- The source ---- */

static int root_hierarchy_path(const DiscoveryContext *ctx, char **ret) {
        _cleanup_free_ char *path = NULL, *text = NULL, *real = NULL;
        int r;

        real = realpath(ctx->cgroup_root, NULL);
        if (!real)
                return -errno;
        if (asprintf(&path, "%s/self/mountinfo", ctx->proc_root) < 0)
                return -ENOMEM;
        r = read_full_file_at(AT_FDCWD, path, 1024 * 1024, &text, NULL);
        if (r < 0)
                return r;
        return cg_hierarchy_path(text, real, ret);
}

static int libvirt_start(Discovery *d) {
        libvirt_connection_start(((Libvirt *) d)->conn);
        return 0;
}

static void libvirt_free(Discovery *d) {
        Libvirt *lv = (Libvirt *) d;

        /* The VMs first: their backends hold the connection's domains. */
        discovery_done(d);
        libvirt_connection_free(lv->conn);
        free(lv->root_path);
        free(lv);
}

static const DiscoveryOps libvirt_discovery_ops = {
        .name = "libvirt",
        .start = libvirt_start,
        .free = libvirt_free,
};

int libvirt_discovery_new(const DiscoveryContext *ctx, Discovery **ret) {
        _cleanup_free_ Libvirt *lv = NULL;
        int r;

        if (!ctx->vm->config->libvirt) {
                *ret = NULL;
                return 0;
        }

        lv = new0(Libvirt, 1);
        if (!lv)
                return log_oom();
        lv->discovery = (Discovery) { .ops = &libvirt_discovery_ops, .ctx = ctx };

        r = root_hierarchy_path(ctx, &lv->root_path);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                log_info_errno(r, "The cgroup root %s is not on a cgroup2 mount (%m): libvirt domains are "
                               "managed without their slices.", ctx->cgroup_root);

        r = libvirt_connection_new(ctx->vm->event, &libvirt_callbacks, lv, &lv->conn);
        if (r < 0)
                return r;

        *ret = &TAKE_PTR(lv)->discovery;
        return 0;
}
