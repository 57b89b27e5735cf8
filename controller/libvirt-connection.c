/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "libvirt-connection.h"
#include "libvirt-dl.h"
#include "log.h"
#include "macro.h"
#include "virt-event.h"
#include "worker.h"

#define BACKOFF_MIN_USEC (1 * USEC_PER_SEC)
#define BACKOFF_MAX_USEC (30 * USEC_PER_SEC)
/* virConnectOpen() runs before keepalive can bound it: in a worker thread, said when it takes long. */
#define CONNECT_SLOW_USEC (30 * USEC_PER_SEC)

enum {
        EVENT_LIFECYCLE,
        EVENT_BALLOON_CHANGE,
        EVENT_METADATA_CHANGE,
        EVENT_JOB_COMPLETED,
        _EVENT_MAX,
};

/* What a connection attempt holds, in its worker thread and then handed to the loop. */
typedef struct ConnectCall {
        WorkerCall call;
        const LibvirtCallbacks *cb;
        void *userdata;
        struct LibvirtConnection *c;  /* the close callback's opaque */
        char *uri;
        virConnectPtr conn;
        int event_ids[_EVENT_MAX];
        int qemu_event_id;
        bool no_qemu_events;
        virDomainPtr *doms;
        int n_doms;
        char error[256];
} ConnectCall;

struct LibvirtConnection {
        const LibvirtCallbacks *cb;
        void *userdata;
        virConnectPtr conn;
        int event_ids[_EVENT_MAX];
        int qemu_event_id;
        sd_event_source *reconnect;
        uint64_t backoff_usec;
        bool connect_failed_logged;
        bool alive;             /* connected, and not closed since */
        WorkerQueue *workers;   /* the connection attempt */
        ConnectCall *connecting;
        sd_event_source *connect_slow;
        int close_fd;           /* libvirt may call on_close() from any thread: it writes here */
        sd_event_source *close_source;
        atomic_int close_reason;
};

static void lc_schedule_reconnect(LibvirtConnection *c) {
        if (sd_event_source_set_time_relative(c->reconnect, c->backoff_usec) < 0 ||
            sd_event_source_set_enabled(c->reconnect, SD_EVENT_ONESHOT) < 0)
                log_error("Cannot schedule reconnecting to libvirt");
        c->backoff_usec = MIN(c->backoff_usec * 2, BACKOFF_MAX_USEC);
}

static void on_close(virConnectPtr conn, int reason, void *opaque) {
        LibvirtConnection *c = opaque;

        atomic_store(&c->close_reason, reason);
        (void) eventfd_write(c->close_fd, 1);
}

static int on_close_event(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        LibvirtConnection *c = userdata;
        eventfd_t v;
        int reason = atomic_load(&c->close_reason);

        (void) eventfd_read(fd, &v);
        if (!c->alive)
                return 0;
        c->alive = false;
        log_warning("Lost the connection to libvirt (%s); its domains are not managed until it is back.",
                    reason == VIR_CONNECT_CLOSE_REASON_EOF ? "libvirtd went away" :
                    reason == VIR_CONNECT_CLOSE_REASON_KEEPALIVE ? "keepalive timed out" : "error");
        c->cb->lost(c->userdata);
        /* Closed from the reconnect timer. */
        c->backoff_usec = BACKOFF_MIN_USEC;
        lc_schedule_reconnect(c);
        return 0;
}

static void close_connection(virConnectPtr conn, int event_ids[_EVENT_MAX], int qemu_event_id) {
        for (size_t i = 0; i < _EVENT_MAX; i++)
                if (event_ids[i] >= 0)
                        (void) sym_virConnectDomainEventDeregisterAny(conn, event_ids[i]);
        if (qemu_event_id >= 0)
                (void) sym_virConnectDomainQemuMonitorEventDeregister(conn, qemu_event_id);
        (void) sym_virConnectUnregisterCloseCallback(conn, on_close);
        (void) sym_virConnectClose(conn);
}

static void lc_disconnect(LibvirtConnection *c) {
        if (!c->conn)
                return;
        close_connection(c->conn, c->event_ids, c->qemu_event_id);
        c->conn = NULL;
        for (size_t i = 0; i < _EVENT_MAX; i++)
                c->event_ids[i] = -1;
        c->qemu_event_id = -1;
}

/* In the worker thread. */
static int connect_register_events(ConnectCall *cc) {
        const LibvirtCallbacks *cb = cc->cb;
        const struct {
                int id;
                virConnectDomainEventGenericCallback cb;
        } events[_EVENT_MAX] = {
                [EVENT_LIFECYCLE] = { VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(cb->lifecycle) },
                [EVENT_BALLOON_CHANGE] = { VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE,
                                           VIR_DOMAIN_EVENT_CALLBACK(cb->balloon_change) },
                [EVENT_METADATA_CHANGE] = { VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
                                            VIR_DOMAIN_EVENT_CALLBACK(cb->metadata_change) },
                [EVENT_JOB_COMPLETED] = { VIR_DOMAIN_EVENT_ID_JOB_COMPLETED,
                                          VIR_DOMAIN_EVENT_CALLBACK(cb->job_completed) },
        };

        for (size_t i = 0; i < _EVENT_MAX; i++) {
                cc->event_ids[i] = sym_virConnectDomainEventRegisterAny(cc->conn, NULL, events[i].id, events[i].cb,
                                                                    cc->userdata, NULL);
                if (cc->event_ids[i] < 0)
                        return -EIO;
        }
        cc->qemu_event_id = sym_virConnectDomainQemuMonitorEventRegister(cc->conn, NULL, "BALLOON_GUEST_PRESSURE",
                                                                     cb->guest_pressure, cc->userdata, NULL, 0);
        cc->no_qemu_events = cc->qemu_event_id < 0;
        return 0;
}

/* In the worker thread: open, keepalive, events, the running domains. */
static void connect_run(WorkerCall *wc) {
        ConnectCall *cc = (ConnectCall *) wc;
        const char *what;

        cc->conn = sym_virConnectOpen(cc->uri);
        if (!cc->conn) {
                (void) snprintf(cc->error, sizeof cc->error, "%s", sym_virGetLastErrorMessage());
                return;
        }
        what = "Cannot watch the libvirt connection";
        if (sym_virConnectRegisterCloseCallback(cc->conn, on_close, cc->c, NULL) >= 0 &&
            sym_virConnectSetKeepAlive(cc->conn, 5, 3) >= 0) {
                what = "Cannot follow libvirt's domain events";
                if (connect_register_events(cc) >= 0) {
                        what = "Cannot list libvirt's domains";
                        cc->n_doms = sym_virConnectListAllDomains(cc->conn, &cc->doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
                        if (cc->n_doms >= 0)
                                return;
                }
        }
        (void) snprintf(cc->error, sizeof cc->error, "%s: %s", what, sym_virGetLastErrorMessage());
        close_connection(cc->conn, cc->event_ids, cc->qemu_event_id);
        cc->conn = NULL;
}

static void connect_call_free(ConnectCall *cc) {
        for (int i = 0; i < cc->n_doms; i++)
                (void) sym_virDomainFree(cc->doms[i]);
        free(cc->doms);
        free(cc->uri);
        free(cc);
}

static void connect_done(WorkerCall *wc, void *owner) {
        ConnectCall *cc = (ConnectCall *) wc;
        LibvirtConnection *c = owner;

        if (!c) {
                /* The daemon stops: nobody wants it any more. */
                if (cc->conn)
                        close_connection(cc->conn, cc->event_ids, cc->qemu_event_id);
                connect_call_free(cc);
                return;
        }
        c->connecting = NULL;
        (void) sd_event_source_set_enabled(c->connect_slow, SD_EVENT_OFF);

        if (!cc->conn) {
                /* Said once: a host without libvirtd is a normal host. */
                if (!c->connect_failed_logged)
                        log_info("No libvirt at %s (%s); retrying, up to every %" PRIu64 " s.", cc->uri, cc->error,
                                 BACKOFF_MAX_USEC / USEC_PER_SEC);
                c->connect_failed_logged = true;
                connect_call_free(cc);
                lc_schedule_reconnect(c);
                return;
        }
        c->connect_failed_logged = false;
        c->conn = cc->conn;
        memcpy(c->event_ids, cc->event_ids, sizeof c->event_ids);
        c->qemu_event_id = cc->qemu_event_id;
        c->alive = true;
        c->backoff_usec = BACKOFF_MIN_USEC;
        if (cc->no_qemu_events)
                log_warning("Cannot follow QEMU's BALLOON_GUEST_PRESSURE through libvirt: guest pressure comes "
                            "from the balloon stats only.");
        log_info("Connected to libvirt at %s: %d running domain%s.", cc->uri, cc->n_doms, cc->n_doms == 1 ? "" : "s");
        c->cb->connected(cc->doms, cc->n_doms, c->userdata);
        connect_call_free(cc);
}

static int lc_connect(LibvirtConnection *c) {
        ConnectCall *cc;
        int r;

        cc = new0(ConnectCall, 1);
        if (!cc)
                return log_oom();
        *cc = (ConnectCall) {
                .call = { .run = connect_run, .done = connect_done, .owner = c },
                .cb = c->cb,
                .userdata = c->userdata,
                .c = c,
                .uri = strdup(c->cb->uri(c->userdata)),
                .qemu_event_id = -1,
        };
        for (size_t i = 0; i < _EVENT_MAX; i++)
                cc->event_ids[i] = -1;
        if (!cc->uri) {
                free(cc);
                return log_oom();
        }
        r = worker_call_start(c->workers, &cc->call);
        if (r < 0) {
                connect_call_free(cc);
                return log_warning_errno(r, "Cannot start a thread to connect to libvirt: %m");
        }
        c->connecting = cc;
        if (sd_event_source_set_time_relative(c->connect_slow, CONNECT_SLOW_USEC) < 0 ||
            sd_event_source_set_enabled(c->connect_slow, SD_EVENT_ONESHOT) < 0)
                log_warning("Cannot time connecting to libvirt");
        return 0;
}

static int on_connect_slow(sd_event_source *s, uint64_t usec, void *userdata) {
        LibvirtConnection *c = userdata;

        log_warning("Connecting to libvirt at %s has not finished after %" PRIu64 " s; waiting for it. Plain QEMU "
                    "VMs are managed meanwhile.", c->connecting ? c->connecting->uri : "?",
                    CONNECT_SLOW_USEC / USEC_PER_SEC);
        return 0;
}

static int on_reconnect(sd_event_source *s, uint64_t usec, void *userdata) {
        LibvirtConnection *c = userdata;

        if (c->connecting)
                return 0; /* its end schedules the next attempt if it fails */
        lc_disconnect(c);
        if (lc_connect(c) < 0)
                lc_schedule_reconnect(c);
        return 0;
}

/* libvirt prints every error to stderr by default; the daemon logs those it cares about itself. */
static void quiet_errors(void *userdata, virErrorPtr error) {
        log_debug("libvirt: %s", error && error->message ? error->message : "?");
}

int libvirt_connection_new(sd_event *event, const LibvirtCallbacks *callbacks, void *userdata,
                           LibvirtConnection **ret) {
        _cleanup_free_ LibvirtConnection *c = NULL;
        int r;

        c = new0(LibvirtConnection, 1);
        if (!c)
                return log_oom();
        c->cb = callbacks;
        c->userdata = userdata;
        c->backoff_usec = BACKOFF_MIN_USEC;
        for (size_t i = 0; i < _EVENT_MAX; i++)
                c->event_ids[i] = -1;
        c->qemu_event_id = -1;
        c->close_fd = -EBADF;

        r = virt_event_register(event);
        if (r < 0)
                return log_error_errno(r, "Cannot hook libvirt's events into the event loop: %m");
        sym_virSetErrorFunc(NULL, quiet_errors);

        r = sd_event_add_time_relative(event, &c->reconnect, CLOCK_MONOTONIC, 0, 0, on_reconnect, c);
        if (r < 0)
                return log_error_errno(r, "Cannot add the libvirt reconnection timer: %m");
        (void) sd_event_source_set_enabled(c->reconnect, SD_EVENT_OFF);
        r = sd_event_add_time_relative(event, &c->connect_slow, CLOCK_MONOTONIC, CONNECT_SLOW_USEC, 0,
                                       on_connect_slow, c);
        if (r < 0)
                return log_error_errno(r, "Cannot add the libvirt connection timer: %m");
        (void) sd_event_source_set_enabled(c->connect_slow, SD_EVENT_OFF);
        c->close_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (c->close_fd < 0)
                return log_error_errno(errno, "Cannot create an eventfd: %m");
        r = sd_event_add_io(event, &c->close_source, c->close_fd, EPOLLIN, on_close_event, c);
        if (r < 0)
                return log_error_errno(r, "Cannot watch the libvirt connection: %m");
        r = worker_queue_new(event, &c->workers);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the libvirt connection's thread: %m");

        *ret = TAKE_PTR(c);
        return 0;
}

void libvirt_connection_start(LibvirtConnection *c) {
        if (lc_connect(c) < 0)
                lc_schedule_reconnect(c);
}

bool libvirt_connection_alive(const LibvirtConnection *c) {
        return c->alive;
}

LibvirtConnection *libvirt_connection_free(LibvirtConnection *c) {
        if (!c)
                return NULL;
        if (c->connecting)
                worker_call_abandon(&c->connecting->call);
        worker_queue_free(c->workers);
        lc_disconnect(c);
        virt_event_flush();
        sd_event_source_disable_unref(c->reconnect);
        sd_event_source_disable_unref(c->connect_slow);
        sd_event_source_disable_unref(c->close_source);
        safe_close(c->close_fd);
        free(c);
        return NULL;
}
