/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* libvirt's event loop on sd-event: libvirt's client library asks its registered implementation to
 * watch its socket and to run its keepalive and event-dispatch timers; this one turns each into an
 * sd-event source of the daemon's loop, so libvirt's events are dispatched from that loop with no
 * thread of their own.
 *
 * The semantics follow libvirt's own (GLib based) implementation: handles and timers have positive
 * ids; a handle with no events and a timer of -1 ms are disabled; a timer of 0 ms fires on every
 * iteration of the loop until changed; free callbacks run later from the loop, never from inside
 * the remove call, whose caller may hold a lock the free callback takes. The daemon is single
 * threaded, so no locking. */

#include <libvirt/libvirt.h>
#include <sys/epoll.h>
#include <time.h>

#include "log.h"
#include "virt-event.h"

typedef struct VirtWatch {
        int id;
        int interval_ms;           /* timers only */
        sd_event_source *source;
        union {
                virEventHandleCallback handle_cb;
                virEventTimeoutCallback timeout_cb;
        };
        void *opaque;
        virFreeCallback ff;
} VirtWatch;

static struct {
        sd_event *event;
        sd_event_source *reaper;   /* runs the free callbacks of removed watches */
        VirtWatch **watches;       /* live handles and timers */
        size_t n_watches;
        VirtWatch **removed;       /* waiting for the reaper */
        size_t n_removed;
        int last_id;
} ve;

static VirtWatch *watch_find(int id) {
        for (size_t i = 0; i < ve.n_watches; i++)
                if (ve.watches[i]->id == id)
                        return ve.watches[i];
        return NULL;
}

static int watch_add(VirtWatch *w) {
        VirtWatch **l = reallocarray(ve.watches, ve.n_watches + 1, sizeof *l);
        if (!l)
                return -ENOMEM;
        ve.watches = l;
        /* Ids are never reused: libvirt may still hold a removed one. */
        w->id = ++ve.last_id;
        ve.watches[ve.n_watches++] = w;
        return 0;
}

static int on_reap(sd_event_source *s, void *userdata) {
        /* A free callback may remove more watches: take the list as it is now. */
        VirtWatch **l = ve.removed;
        size_t n = ve.n_removed;

        ve.removed = NULL;
        ve.n_removed = 0;
        for (size_t i = 0; i < n; i++) {
                if (l[i]->ff)
                        l[i]->ff(l[i]->opaque);
                free(l[i]);
        }
        free(l);
        return 0;
}

static int watch_remove(int id) {
        VirtWatch *w = NULL;

        for (size_t i = 0; i < ve.n_watches && !w; i++)
                if (ve.watches[i]->id == id) {
                        w = ve.watches[i];
                        ve.watches[i] = ve.watches[--ve.n_watches];
                }
        if (!w)
                return -1;

        /* Off the epoll set now (also from inside its own callback): libvirt closes the fd next. */
        w->source = sd_event_source_disable_unref(w->source);

        VirtWatch **l = reallocarray(ve.removed, ve.n_removed + 1, sizeof *l);
        if (!l) {
                /* Better a leak than calling ff() where the caller may hold its lock. */
                log_oom();
                return 0;
        }
        ve.removed = l;
        ve.removed[ve.n_removed++] = w;
        (void) sd_event_source_set_enabled(ve.reaper, SD_EVENT_ONESHOT);
        return 0;
}

static uint32_t to_epoll(int events) {
        return (events & VIR_EVENT_HANDLE_READABLE ? EPOLLIN : 0) |
               (events & VIR_EVENT_HANDLE_WRITABLE ? EPOLLOUT : 0);
}

static int from_epoll(uint32_t revents) {
        return (revents & EPOLLIN ? VIR_EVENT_HANDLE_READABLE : 0) |
               (revents & EPOLLOUT ? VIR_EVENT_HANDLE_WRITABLE : 0) |
               (revents & EPOLLERR ? VIR_EVENT_HANDLE_ERROR : 0) |
               (revents & EPOLLHUP ? VIR_EVENT_HANDLE_HANGUP : 0);
}

static int on_handle(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        VirtWatch *w = userdata;

        w->handle_cb(w->id, fd, from_epoll(revents), w->opaque);
        return 0;
}

static int virt_add_handle(int fd, int events, virEventHandleCallback cb, void *opaque, virFreeCallback ff) {
        _cleanup_free_ VirtWatch *w = NULL;
        int r;

        w = new0(VirtWatch, 1);
        if (!w)
                return -1;
        *w = (VirtWatch) { .handle_cb = cb, .opaque = opaque, .ff = ff };

        r = sd_event_add_io(ve.event, &w->source, fd, to_epoll(events), on_handle, w);
        if (r >= 0)
                r = sd_event_source_set_enabled(w->source, events ? SD_EVENT_ON : SD_EVENT_OFF);
        if (r >= 0)
                r = watch_add(w);
        if (r < 0) {
                log_warning_errno(r, "Cannot watch libvirt's fd %d: %m", fd);
                sd_event_source_disable_unref(w->source);
                return -1;
        }
        return TAKE_PTR(w)->id;
}

static void virt_update_handle(int id, int events) {
        VirtWatch *w = watch_find(id);

        if (!w || !w->source)
                return;
        if (events)
                (void) sd_event_source_set_io_events(w->source, to_epoll(events));
        (void) sd_event_source_set_enabled(w->source, events ? SD_EVENT_ON : SD_EVENT_OFF);
}

static int virt_remove_handle(int id) {
        return watch_remove(id);
}

static void timer_arm(VirtWatch *w) {
        uint64_t now = 0;

        if (w->interval_ms < 0) {
                (void) sd_event_source_set_enabled(w->source, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_now(ve.event, CLOCK_MONOTONIC, &now);
        (void) sd_event_source_set_time(w->source, now + (uint64_t) w->interval_ms * USEC_PER_MSEC);
        (void) sd_event_source_set_enabled(w->source, SD_EVENT_ON);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        VirtWatch *w = userdata;

        /* Periodic: armed for the next period first, so that the callback may change or remove it. */
        timer_arm(w);
        w->timeout_cb(w->id, w->opaque);
        return 0;
}

static int virt_add_timeout(int interval_ms, virEventTimeoutCallback cb, void *opaque, virFreeCallback ff) {
        _cleanup_free_ VirtWatch *w = NULL;
        int r;

        w = new0(VirtWatch, 1);
        if (!w)
                return -1;
        *w = (VirtWatch) { .interval_ms = interval_ms, .timeout_cb = cb, .opaque = opaque, .ff = ff };

        /* libvirt's timers count milliseconds: sd-event's default accuracy (250 ms) would coarsen them. */
        r = sd_event_add_time(ve.event, &w->source, CLOCK_MONOTONIC, 0, USEC_PER_MSEC, on_timer, w);
        if (r >= 0)
                r = watch_add(w);
        if (r < 0) {
                log_warning_errno(r, "Cannot add a libvirt timer: %m");
                sd_event_source_disable_unref(w->source);
                return -1;
        }
        timer_arm(w);
        return TAKE_PTR(w)->id;
}

static void virt_update_timeout(int id, int interval_ms) {
        VirtWatch *w = watch_find(id);

        if (!w || !w->source)
                return;
        w->interval_ms = interval_ms;
        timer_arm(w);
}

static int virt_remove_timeout(int id) {
        return watch_remove(id);
}

int virt_event_register(sd_event *e) {
        int r;

        if (ve.event)
                return ve.event == e ? 0 : -EBUSY;

        r = sd_event_add_defer(e, &ve.reaper, on_reap, NULL);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(ve.reaper, SD_EVENT_OFF);
        ve.event = sd_event_ref(e);

        virEventRegisterImpl(virt_add_handle, virt_update_handle, virt_remove_handle,
                             virt_add_timeout, virt_update_timeout, virt_remove_timeout);
        return 0;
}

void virt_event_flush(void) {
        (void) on_reap(NULL, NULL);
}
