/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <inttypes.h>
#include <libvirt/virterror.h>
#include <stdlib.h>

#include "libvirt-connection.h"
#include "log.h"
#include "macro.h"
#include "virt-event.h"

#define BACKOFF_MIN_USEC (1 * USEC_PER_SEC)
#define BACKOFF_MAX_USEC (30 * USEC_PER_SEC)

enum {
        EVENT_LIFECYCLE,
        EVENT_BALLOON_CHANGE,
        EVENT_METADATA_CHANGE,
        EVENT_JOB_COMPLETED,
        _EVENT_MAX,
};

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
};

static void lc_schedule_reconnect(LibvirtConnection *c) {
        if (sd_event_source_set_time_relative(c->reconnect, c->backoff_usec) < 0 ||
            sd_event_source_set_enabled(c->reconnect, SD_EVENT_ONESHOT) < 0)
                log_error("Cannot schedule reconnecting to libvirt");
        c->backoff_usec = MIN(c->backoff_usec * 2, BACKOFF_MAX_USEC);
}

static void on_close(virConnectPtr conn, int reason, void *opaque) {
        LibvirtConnection *c = opaque;

        c->alive = false;
        log_warning("Lost the connection to libvirt (%s); its domains are not managed until it is back.",
                    reason == VIR_CONNECT_CLOSE_REASON_EOF ? "libvirtd went away" :
                    reason == VIR_CONNECT_CLOSE_REASON_KEEPALIVE ? "keepalive timed out" : "error");
        c->cb->lost(c->userdata);
        /* Closed from the reconnect timer, not from inside libvirt's dispatch of this callback. */
        c->backoff_usec = BACKOFF_MIN_USEC;
        lc_schedule_reconnect(c);
}

static void lc_disconnect(LibvirtConnection *c) {
        if (!c->conn)
                return;
        for (size_t i = 0; i < _EVENT_MAX; i++)
                if (c->event_ids[i] >= 0)
                        (void) virConnectDomainEventDeregisterAny(c->conn, c->event_ids[i]);
        if (c->qemu_event_id >= 0)
                (void) virConnectDomainQemuMonitorEventDeregister(c->conn, c->qemu_event_id);
        (void) virConnectUnregisterCloseCallback(c->conn, on_close);
        (void) virConnectClose(c->conn);
        c->conn = NULL;
        for (size_t i = 0; i < _EVENT_MAX; i++)
                c->event_ids[i] = -1;
        c->qemu_event_id = -1;
}

static int lc_register_events(LibvirtConnection *c) {
        const struct {
                int id;
                virConnectDomainEventGenericCallback cb;
        } events[_EVENT_MAX] = {
                [EVENT_LIFECYCLE] = { VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(c->cb->lifecycle) },
                [EVENT_BALLOON_CHANGE] = { VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE,
                                           VIR_DOMAIN_EVENT_CALLBACK(c->cb->balloon_change) },
                [EVENT_METADATA_CHANGE] = { VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
                                            VIR_DOMAIN_EVENT_CALLBACK(c->cb->metadata_change) },
                [EVENT_JOB_COMPLETED] = { VIR_DOMAIN_EVENT_ID_JOB_COMPLETED,
                                          VIR_DOMAIN_EVENT_CALLBACK(c->cb->job_completed) },
        };

        for (size_t i = 0; i < _EVENT_MAX; i++) {
                c->event_ids[i] = virConnectDomainEventRegisterAny(c->conn, NULL, events[i].id, events[i].cb,
                                                                   c->userdata, NULL);
                if (c->event_ids[i] < 0)
                        return log_error_errno(EIO, "Cannot follow libvirt's domain events: %s",
                                               virGetLastErrorMessage());
        }
        c->qemu_event_id = virConnectDomainQemuMonitorEventRegister(c->conn, NULL, "BALLOON_GUEST_PRESSURE",
                                                                    c->cb->guest_pressure, c->userdata, NULL, 0);
        if (c->qemu_event_id < 0)
                log_warning("Cannot follow QEMU's BALLOON_GUEST_PRESSURE through libvirt (%s): guest pressure "
                            "comes from the balloon stats only.", virGetLastErrorMessage());
        return 0;
}

static int lc_connect(LibvirtConnection *c) {
        const char *uri = c->cb->uri(c->userdata);
        virDomainPtr *doms = NULL;
        int n, r;

        c->conn = virConnectOpen(uri);
        if (!c->conn) {
                /* Said once: a host without libvirtd is a normal host. */
                if (!c->connect_failed_logged)
                        log_info("No libvirt at %s (%s); retrying, up to every %" PRIu64 " s.", uri,
                                 virGetLastErrorMessage(), BACKOFF_MAX_USEC / USEC_PER_SEC);
                c->connect_failed_logged = true;
                return -ECONNREFUSED;
        }
        c->connect_failed_logged = false;

        if (virConnectRegisterCloseCallback(c->conn, on_close, c, NULL) < 0 ||
            virConnectSetKeepAlive(c->conn, 5, 3) < 0) {
                log_warning("Cannot watch the libvirt connection: %s", virGetLastErrorMessage());
                lc_disconnect(c);
                return -EIO;
        }
        r = lc_register_events(c);
        if (r < 0) {
                lc_disconnect(c);
                return r;
        }

        n = virConnectListAllDomains(c->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (n < 0) {
                log_warning("Cannot list libvirt's domains: %s", virGetLastErrorMessage());
                lc_disconnect(c);
                return -EIO;
        }
        c->alive = true;
        log_info("Connected to libvirt at %s: %d running domain%s.", uri, n, n == 1 ? "" : "s");

        c->cb->connected(doms, n, c->userdata);
        for (int i = 0; i < n; i++)
                (void) virDomainFree(doms[i]);
        free(doms);
        return 0;
}

static int on_reconnect(sd_event_source *s, uint64_t usec, void *userdata) {
        LibvirtConnection *c = userdata;

        lc_disconnect(c);
        if (lc_connect(c) < 0)
                lc_schedule_reconnect(c);
        else
                c->backoff_usec = BACKOFF_MIN_USEC;
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

        r = virt_event_register(event);
        if (r < 0)
                return log_error_errno(r, "Cannot hook libvirt's events into the event loop: %m");
        virSetErrorFunc(NULL, quiet_errors);

        r = sd_event_add_time_relative(event, &c->reconnect, CLOCK_MONOTONIC, 0, 0, on_reconnect, c);
        if (r < 0)
                return log_error_errno(r, "Cannot add the libvirt reconnection timer: %m");
        (void) sd_event_source_set_enabled(c->reconnect, SD_EVENT_OFF);

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
        lc_disconnect(c);
        virt_event_flush();
        sd_event_source_disable_unref(c->reconnect);
        free(c);
        return NULL;
}
