/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The libvirt backend: domains of a libvirt daemon, through libvirt's C API. libvirt owns their QMP
 * monitors; it relays the balloon's size (BALLOON_CHANGE), sets targets (virDomainSetMemoryFlags)
 * and reads the guest stats (virDomainMemoryStats), and passes the patched device's
 * BALLOON_GUEST_PRESSURE event through (libvirt-qemu's monitor events). This file follows the
 * domains (where their QEMU runs, adoption, lifecycle); libvirt-connection.c keeps the connection.
 *
 * Calls that wait for the domain's QEMU monitor or for a job on the domain (the guest stats, the
 * balloon target, the stats period, and the job query in front of them) run in worker threads
 * (worker.h), at most one per domain, each bounded by CALL_TIMEOUT_USEC: a domain being dumped or
 * snapshotted, or whose QEMU does not answer, is left alone until its call returns, and no other VM
 * waits for it. A balloon target is never set while any job holds the domain. The other calls are
 * answered by libvirtd from its own state; keepalive (5 s, 3 probes) bounds those. libvirt's events
 * come through our sd-event loop (virt-event.c). */

#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend-libvirt.h"
#include "backend.h"
#include "cgroup.h"
#include "domain-xml.h"
#include "json-util.h"
#include "libvirt-connection.h"
#include "libvirt-dl.h"
#include "log.h"
#include "util.h"
#include "vm.h"
#include "worker.h"

#define BACKOFF_MIN_USEC (1 * USEC_PER_SEC)
#define BACKOFF_MAX_USEC (30 * USEC_PER_SEC)
/* A call on a domain that takes longer is waiting for a job or a monitor that does not answer. */
#define CALL_TIMEOUT_USEC (10 * USEC_PER_SEC)

typedef struct Libvirt {
        Discovery discovery;    /* its VMs are the domains' */
        LibvirtConnection *conn;
        WorkerQueue *workers;   /* the domains' blocking calls */
        char *root_path;        /* the cgroup root in the cgroup2 hierarchy; NULL: not on cgroup2 */
} Libvirt;

typedef enum LbOp {
        LB_PROBE,               /* the stats period, then the stats: the balloon's size */
        LB_STATS,
        LB_SET_TARGET,
} LbOp;

/* One blocking call on a domain, run by a worker thread. */
typedef struct LbCall {
        WorkerCall call;
        LbOp op;
        virDomainPtr dom;
        int stats_period;            /* LB_PROBE: seconds */
        unsigned long target_kib;    /* LB_SET_TARGET */
        /* Results. */
        int result;                  /* 0; -EIO; -EBUSY: a job holds the domain (LB_SET_TARGET) */
        bool migrating;
        bool period_failed;
        int job_operation;           /* the job's, when one was found */
        virDomainMemoryStatStruct stats[VIR_DOMAIN_MEMORY_STAT_NR];
        int n_stats;
        char error[256];             /* libvirt's message, which is per thread */
} LbCall;

typedef struct LibvirtBackend {
        Backend backend;
        Libvirt *lv;
        virDomainPtr dom;
        char uuid[VIR_UUID_STRING_BUFLEN];
        char *device;            /* the balloon as the domain XML names it, for messages */
        sd_event_source *probe;  /* adoption, from the loop; again with back-off after a failure */
        uint64_t probe_backoff_usec;
        uint64_t boot_kib;       /* from the probe, for the adoption when its call returns */
        LbCall *call;            /* in flight; one at a time */
        sd_event_source *call_timer;
        bool call_stuck;         /* CALL_TIMEOUT_USEC passed: not managed until the call returns */
        bool job_logged;         /* a job keeping the balloon as it is was said */
        bool has_queued_target;  /* a target asked for while a call was in flight, sent after it */
        unsigned long queued_target_kib;
        bool seen;               /* listed since the last (re)connection */
} LibvirtBackend;

static const char *lv_error(void) {
        return sym_virGetLastErrorMessage();
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

        if (sym_virDomainGetUUIDString(dom, uuid) < 0)
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
static void lb_retry(LibvirtBackend *b, const char *what, const char *error) {
        VM *vm = b->backend.vm;

        vm_backend_lost(vm, -EIO);
        if (!libvirt_connection_alive(b->lv->conn))
                return; /* the connection went: reconnecting adopts the domain again */
        log_warning("%s: %s failed: %s; retrying in %" PRIu64 " s", vm->name, what, error,
                    b->probe_backoff_usec / USEC_PER_SEC);
        lb_schedule_probe(b, b->probe_backoff_usec);
        b->probe_backoff_usec = MIN(b->probe_backoff_usec * 2, BACKOFF_MAX_USEC);
}

/* In a worker thread: the domain's job, if any. A query job, allowed while an async job (migration,
 * dump, snapshot, save, backup) holds the domain, but it may wait for the monitor. */
static void lb_call_job(LbCall *c, int *ret_type) {
        virTypedParameterPtr params = NULL;
        int type = VIR_DOMAIN_JOB_NONE, n = 0, state, reason;

        if (sym_virDomainGetState(c->dom, &state, &reason, 0) == 0 && state == VIR_DOMAIN_PAUSED &&
            IN_SET(reason, VIR_DOMAIN_PAUSED_MIGRATION, VIR_DOMAIN_PAUSED_POSTCOPY))
                c->migrating = true;
        if (sym_virDomainGetJobStats(c->dom, &type, &params, &n, 0) >= 0) {
                (void) sym_virTypedParamsGetInt(params, n, VIR_DOMAIN_JOB_OPERATION, &c->job_operation);
                sym_virTypedParamsFree(params, n);
        }
        if (type != VIR_DOMAIN_JOB_NONE &&
            IN_SET(c->job_operation, VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN, VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT))
                c->migrating = true;
        *ret_type = type;
}

static void lb_call_failed(LbCall *c) {
        c->result = -EIO;
        (void) snprintf(c->error, sizeof c->error, "%s", sym_virGetLastErrorMessage());
}

static void lb_call_run(WorkerCall *wc) {
        LbCall *c = (LbCall *) wc;
        int job;

        lb_call_job(c, &job);
        if (c->migrating)
                return;

        switch (c->op) {
        case LB_PROBE:
                /* As for QMP: without stats polling the VM is never inflated, but the floor applies. */
                if (sym_virDomainSetMemoryStatsPeriod(c->dom, c->stats_period, VIR_DOMAIN_AFFECT_LIVE) < 0)
                        c->period_failed = true;
                _fallthrough_;
        case LB_STATS:
                c->n_stats = sym_virDomainMemoryStats(c->dom, c->stats, VIR_DOMAIN_MEMORY_STAT_NR, 0);
                if (c->n_stats < 0)
                        lb_call_failed(c);
                break;
        case LB_SET_TARGET:
                /* A MODIFY job would wait up to libvirt's 30 s job timeout behind any async job. */
                if (job != VIR_DOMAIN_JOB_NONE) {
                        c->result = -EBUSY;
                        break;
                }
                if (sym_virDomainSetMemoryFlags(c->dom, c->target_kib, VIR_DOMAIN_AFFECT_LIVE) < 0)
                        lb_call_failed(c);
                break;
        }
}

static void lb_call_done(WorkerCall *wc, void *owner);

static const char *lb_op_to_string(LbOp op) {
        return op == LB_SET_TARGET ? "setting the balloon target" : "reading the guest stats";
}

static int lb_call_start(LibvirtBackend *b, LbOp op, unsigned long target_kib) {
        LbCall *c;
        int r;

        assert(!b->call);
        c = new0(LbCall, 1);
        if (!c)
                return log_oom();
        *c = (LbCall) {
                .call = { .run = lb_call_run, .done = lb_call_done, .owner = b },
                .op = op,
                .dom = b->dom,
                .stats_period = (int) MAX(b->backend.vm->ctx->config->stats_interval_usec / USEC_PER_SEC, 1u),
                .target_kib = target_kib,
        };
        (void) sym_virDomainRef(c->dom);
        r = worker_call_start(b->lv->workers, &c->call);
        if (r < 0) {
                (void) sym_virDomainFree(c->dom);
                free(c);
                return log_warning_errno(r, "%s: cannot start a thread for %s: %m", b->backend.vm->name,
                                         lb_op_to_string(op));
        }
        b->call = c;
        if (sd_event_source_set_time_relative(b->call_timer, CALL_TIMEOUT_USEC) < 0 ||
            sd_event_source_set_enabled(b->call_timer, SD_EVENT_ONESHOT) < 0)
                log_warning("%s: cannot bound the libvirt call", b->backend.vm->name);
        return 0;
}

static int on_call_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        LibvirtBackend *b = userdata;
        VM *vm = b->backend.vm;

        b->call_stuck = true;
        log_warning("%s: libvirt has not finished %s after %" PRIu64 " s (a job on the domain, or its QEMU not "
                    "answering): not managed until it does.", vm->name, lb_op_to_string(b->call->op),
                    CALL_TIMEOUT_USEC / USEC_PER_SEC);
        vm_backend_lost(vm, -ETIMEDOUT);
        return 0;
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

        xml = sym_virDomainGetXMLDesc(b->dom, 0);
        if (!xml) {
                lb_retry(b, "reading the domain XML", lv_error());
                return false;
        }
        r = domain_xml_parse(xml, vm->name, &info);
        if (r == -ENOMEM) {
                lb_retry(b, "parsing the domain XML", "out of memory");
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
                     sym_virDomainGetName(b->dom)) < 0)
                b->device = NULL;
        domain_info_done(&info);
        return true;
}

/* A balloon size libvirt passes on from the guest, saturated: a size past 2^64 (QEMU's negative
 * 'actual' as libvirt keeps it) stays out of range for vm.c to reject. */
static uint64_t kib_to_bytes(unsigned long long kib) {
        return kib > UINT64_MAX / KIB ? UINT64_MAX : kib * KIB;
}

static int on_probe(sd_event_source *s, uint64_t usec, void *userdata) {
        LibvirtBackend *b = userdata;
        VM *vm = b->backend.vm;
        int active;

        if (b->call)
                return 0; /* its return probes again if it has to */
        active = sym_virDomainIsActive(b->dom);
        if (active <= 0) {
                if (active < 0)
                        lb_retry(b, "checking the domain", lv_error());
                return 0; /* stopped: its lifecycle event drops it */
        }
        vm_backend_probing(vm);

        if (!lb_read_xml(b))
                return 0;

        b->boot_kib = sym_virDomainGetMaxMemory(b->dom);
        if (b->boot_kib == 0) {
                lb_retry(b, "reading the domain's memory size", lv_error());
                return 0;
        }
        if (lb_call_start(b, LB_PROBE, 0) < 0)
                lb_retry(b, "starting the probe", "no thread");
        return 0;
}

/* The stats' balloon size, 0 if none. */
static uint64_t lb_actual(const LbCall *c) {
        for (int i = 0; i < c->n_stats; i++)
                if (c->stats[i].tag == VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON)
                        return kib_to_bytes(c->stats[i].val);
        return 0;
}

static void lb_probe_done(LibvirtBackend *b, const LbCall *c) {
        VM *vm = b->backend.vm;
        uint64_t actual;

        if (c->period_failed)
                log_warning("%s: enabling guest stats polling failed", vm->name);
        if (c->result < 0) {
                lb_retry(b, "reading the balloon size", c->error);
                return;
        }
        actual = lb_actual(c);
        if (actual == 0) {
                vm_backend_unsupported(vm, "libvirt reports no balloon size (no balloon device in QEMU?)");
                return;
        }
        b->probe_backoff_usec = BACKOFF_MIN_USEC;
        vm_backend_ready(vm, (uint64_t) b->boot_kib * KIB, actual, b->device ?: "memballoon");
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

static void lb_stats_done(LibvirtBackend *b, const LbCall *c) {
        VM *vm = b->backend.vm;
        _cleanup_free_ char *cgpath = NULL, *unused = NULL;
        GuestStats s = {};
        uint64_t actual;

        if (c->result < 0) {
                lb_retry(b, "reading the guest stats", c->error);
                return;
        }
        for (int i = 0; i < c->n_stats; i++) {
                if (c->stats[i].tag == VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE)
                        s.last_update = c->stats[i].val;
                for (size_t k = 0; k < ELEMENTSOF(stat_map); k++)
                        if (c->stats[i].tag == stat_map[k].tag) {
                                s.value[stat_map[k].stat] = c->stats[i].val * stat_map[k].unit;
                                s.valid |= UINT32_C(1) << stat_map[k].stat;
                        }
        }
        actual = lb_actual(c);
        if (actual > 0)
                vm_backend_balloon_moved(vm, actual);
        vm_backend_stats(vm, &s);

        /* QEMU may have been moved to another cgroup since (or only now into its slice). */
        if (domain_cgroup(b->lv, sym_virDomainGetName(b->dom), &cgpath, &unused) >= 0 && !streq_ptr(cgpath, vm->cgpath)) {
                log_info("%s: QEMU's cgroup is now %s", vm->name, cgpath ?: "out of reach");
                vm_backend_cgroup(vm, cgpath);
        }
}

static void lb_set_target_done(LibvirtBackend *b, const LbCall *c) {
        VM *vm = b->backend.vm;

        if (c->result == -EBUSY) {
                if (!b->job_logged)
                        log_info("%s: a job (operation %d) holds the domain: its balloon is left as it is until "
                                 "the job ends.", vm->name, c->job_operation);
                b->job_logged = true;
                vm_backend_target_refused(vm);
                return;
        }
        b->job_logged = false;
        if (c->result < 0) {
                log_warning("%s: setting the balloon target failed: %s", vm->name, c->error);
                vm_backend_target_refused(vm);
        }
}

static void lb_call_done(WorkerCall *wc, void *owner) {
        LbCall *c = (LbCall *) wc;
        LibvirtBackend *b = owner;

        if (b) {
                b->call = NULL;
                (void) sd_event_source_set_enabled(b->call_timer, SD_EVENT_OFF);
                if (b->call_stuck) {
                        /* Whatever it says is old news: adopt the domain afresh. */
                        log_info("%s: libvirt finished %s at last.", b->backend.vm->name, lb_op_to_string(c->op));
                        b->call_stuck = false;
                        b->has_queued_target = false;
                        lb_schedule_probe(b, 0);
                } else if (c->migrating)
                        lb_wait_migration(b);
                else if (c->op == LB_PROBE)
                        lb_probe_done(b, c);
                else if (c->op == LB_STATS)
                        lb_stats_done(b, c);
                else
                        lb_set_target_done(b, c);

                if (!b->call && b->has_queued_target && b->backend.vm->state == VM_READY) {
                        b->has_queued_target = false;
                        (void) lb_call_start(b, LB_SET_TARGET, b->queued_target_kib);
                }
        }
        (void) sym_virDomainFree(c->dom);
        free(c);
}

static unsigned lb_refresh(Backend *backend) {
        LibvirtBackend *b = (LibvirtBackend *) backend;

        /* The last one still running: its answer is the refresh. */
        if (!b->call)
                (void) lb_call_start(b, LB_STATS, 0);
        return 0;
}

static int lb_set_target(Backend *backend, uint64_t bytes) {
        LibvirtBackend *b = (LibvirtBackend *) backend;

        if (b->call) {
                /* The newest target goes out when the call in flight returns. */
                b->has_queued_target = true;
                b->queued_target_kib = (unsigned long) (bytes / KIB);
                return 0;
        }
        return lb_call_start(b, LB_SET_TARGET, (unsigned long) (bytes / KIB));
}

static int lb_start(Backend *backend) {
        lb_schedule_probe((LibvirtBackend *) backend, 0);
        return 0;
}

static void lb_free(Backend *backend) {
        LibvirtBackend *b = (LibvirtBackend *) backend;

        sd_event_source_disable_unref(b->probe);
        sd_event_source_disable_unref(b->call_timer);
        if (b->call)
                worker_call_abandon(&b->call->call);
        free(b->device);
        if (b->dom)
                (void) sym_virDomainFree(b->dom);
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
        const char *dname = sym_virDomainGetName(dom);
        const char *name;
        VM *other;
        int r;

        if (b) {
                /* Known (libvirtd restarted, or the domain resumed): the new handle, adopted again. */
                if (b->dom != dom) {
                        (void) sym_virDomainRef(dom);
                        (void) sym_virDomainFree(b->dom);
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
        if (!slice_vm && (xml = sym_virDomainGetXMLDesc(dom, 0))) {
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
                 * that libvirt will never offer; a VM that was ever adopted is not let go. */
                if (!discovery_release(other)) {
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
        (void) sym_virDomainRef(dom);
        b->dom = dom;
        if (sym_virDomainGetUUIDString(dom, b->uuid) < 0)
                return log_warning_errno(EIO, "%s: no UUID for domain %s: %s", name, dname, lv_error());
        r = sd_event_add_time_relative(ctx->vm->event, &b->probe, CLOCK_MONOTONIC, 0, 0, on_probe, b);
        if (r < 0)
                return log_error_errno(r, "%s: cannot add the adoption timer: %m", name);
        r = sd_event_add_time_relative(ctx->vm->event, &b->call_timer, CLOCK_MONOTONIC, CALL_TIMEOUT_USEC, 0,
                                       on_call_timeout, b);
        if (r < 0)
                return log_error_errno(r, "%s: cannot add the call timer: %m", name);
        (void) sd_event_source_set_enabled(b->call_timer, SD_EVENT_OFF);

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
        log_info("%s: domain %s %s, dropping the VM", b->backend.vm->name, sym_virDomainGetName(dom), why);
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
                log_debug("domain %s %s", sym_virDomainGetName(dom),
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
        int r;

        if (!b)
                return;
        /* The guest's words, relayed: bounded as on the QMP path. */
        r = !details ? -EBADMSG : json_parse_untrusted(details, &data);
        if (r >= 0)
                r = guest_pressure_parse(data, &e);
        if (r < 0) {
                vm_backend_guest_pressure_invalid(b->backend.vm, r == -EOPNOTSUPP ? r : -EBADMSG);
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

        /* The VMs first: their backends hold the connection's domains, and abandon their calls. */
        discovery_done(d);
        worker_queue_free(lv->workers);
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

        /* Loaded here, when the configuration asks for it: a daemon without libvirt maps none of it.
         * Without it the other sources still run; dlopen_libvirt() said why. */
        if (!ctx->vm->config->libvirt || dlopen_libvirt() < 0) {
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

        r = worker_queue_new(ctx->vm->event, &lv->workers);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the libvirt calls' threads: %m");
        r = libvirt_connection_new(ctx->vm->event, &libvirt_callbacks, lv, &lv->conn);
        if (r < 0)
                return r;

        *ret = &TAKE_PTR(lv)->discovery;
        return 0;
}
