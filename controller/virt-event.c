/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* libvirt's event loop on sd-event: libvirt's client library asks its registered implementation to
 * watch its socket and to run its keepalive and event-dispatch timers; this one turns each into an
 * sd-event source of the daemon's loop, so libvirt's events are dispatched from that loop with no
 * thread of their own.
 *
 * The semantics follow libvirt's own (GLib based) implementation: handles and timers have positive
 * ids; a handle with no events and a timer of -1 ms are disabled; a timer of 0 ms fires on every
 * iteration of the loop until changed; free callbacks run later from the loop, never from inside
 * the remove call, whose caller may hold a lock the free callback takes.
 *
 * Calls that may block on a QEMU monitor run in worker threads (backend-libvirt.c), and libvirt
 * updates its watches from whichever thread makes a call. sd-event is not thread-safe, so a change
 * made from another thread is recorded under the lock and applied by the loop's thread, woken
 * through an eventfd, as libvirt's own implementation does with its poll loop. */

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "libvirt-dl.h"
#include "log.h"
#include "virt-event.h"

typedef struct VirtWatch {
        int id;
        bool timer;
        int fd, events;            /* handles: what libvirt asked for */
        int interval_ms;           /* timers */
        bool removed;
        bool dirty;                /* changed from another thread: the loop applies it */
        bool interval_changed;     /* a timer is re-armed from now only when its interval is set */
        sd_event_source *source;   /* NULL until the loop's thread created it */
        union {
                virEventHandleCallback handle_cb;
                virEventTimeoutCallback timeout_cb;
        };
        void *opaque;
        virFreeCallback ff;
} VirtWatch;

static struct {
        pthread_mutex_t lock;
        pthread_t loop_thread;
        sd_event *event;
        sd_event_source *reaper;   /* runs the free callbacks of removed watches */
        sd_event_source *waker;    /* the eventfd other threads write to */
        int wake_fd;
        VirtWatch **watches;       /* live handles and timers */
        size_t n_watches;
        VirtWatch **removed;       /* waiting for the reaper */
        size_t n_removed;
        int last_id;
} ve = {
        .lock = PTHREAD_MUTEX_INITIALIZER,
        .wake_fd = -EBADF,
};

static void lock(void) {
        (void) pthread_mutex_lock(&ve.lock);
}

static void unlock(void) {
        (void) pthread_mutex_unlock(&ve.lock);
}

static bool in_loop_thread(void) {
        return pthread_equal(pthread_self(), ve.loop_thread);
}

static VirtWatch *watch_find(int id) {
        for (size_t i = 0; i < ve.n_watches; i++)
                if (ve.watches[i]->id == id && !ve.watches[i]->removed)
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
        VirtWatch **l;
        size_t n;

        /* A free callback may remove more watches: take the list as it is now, and call them
         * without the lock, which they may need. */
        lock();
        l = ve.removed;
        n = ve.n_removed;
        ve.removed = NULL;
        ve.n_removed = 0;
        /* One removed from another thread since the loop last applied changes still has its source:
         * it waits for the next wake-up. */
        for (size_t i = 0; i < n;) {
                if (l[i]->source) {
                        VirtWatch **m = reallocarray(ve.removed, ve.n_removed + 1, sizeof *m);
                        if (m) {
                                ve.removed = m;
                                ve.removed[ve.n_removed++] = l[i];
                        }
                        l[i] = l[--n];
                        continue;
                }
                i++;
        }
        unlock();

        for (size_t i = 0; i < n; i++) {
                if (l[i]->ff)
                        l[i]->ff(l[i]->opaque);
                free(l[i]);
        }
        free(l);
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

static int on_handle(sd_event_source *s, int fd, uint32_t revents, void *userdata);
static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* In the loop's thread, with the lock: makes w's source what libvirt last asked for. */
static void watch_apply(VirtWatch *w) {
        int r = 0;

        w->dirty = false;
        if (w->removed) {
                /* Off the epoll set now (also from inside its own callback): libvirt closes the fd next. */
                w->source = sd_event_source_disable_unref(w->source);
                return;
        }

        if (!w->source) {
                if (w->timer)
                        /* libvirt's timers count milliseconds: sd-event's default accuracy (250 ms) would
                         * coarsen them. */
                        r = sd_event_add_time(ve.event, &w->source, CLOCK_MONOTONIC, 0, USEC_PER_MSEC, on_timer, w);
                else
                        r = sd_event_add_io(ve.event, &w->source, w->fd, to_epoll(w->events), on_handle, w);
                if (r < 0) {
                        log_warning_errno(r, "Cannot watch libvirt's %s: %m", w->timer ? "timer" : "fd");
                        return;
                }
                w->interval_changed = true;
        }

        if (w->timer) {
                if (w->interval_changed)
                        timer_arm(w);
                w->interval_changed = false;
        } else {
                if (w->events)
                        (void) sd_event_source_set_io_events(w->source, to_epoll(w->events));
                (void) sd_event_source_set_enabled(w->source, w->events ? SD_EVENT_ON : SD_EVENT_OFF);
        }
}

/* With the lock: applies the change now in the loop's thread, else leaves it to the loop. */
static void watch_changed(VirtWatch *w) {
        if (in_loop_thread()) {
                watch_apply(w);
                return;
        }
        w->dirty = true;
        if (eventfd_write(ve.wake_fd, 1) < 0)
                log_warning_errno(errno, "Cannot wake the event loop for libvirt: %m");
}

static int on_wake(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        eventfd_t v;

        (void) eventfd_read(fd, &v);
        lock();
        for (size_t i = 0; i < ve.n_watches;) {
                VirtWatch *w = ve.watches[i];
                if (w->dirty)
                        watch_apply(w);
                if (w->removed && !w->source) {
                        ve.watches[i] = ve.watches[--ve.n_watches];
                        continue;
                }
                i++;
        }
        unlock();
        return 0;
}

static int on_handle(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        VirtWatch *w = userdata;
        virEventHandleCallback cb;
        void *opaque;
        int id;

        /* Called without the lock: the callback calls into libvirt, which may update watches. w lives
         * until the reaper, which runs after this dispatch. */
        lock();
        cb = w->removed ? NULL : w->handle_cb;
        opaque = w->opaque;
        id = w->id;
        unlock();
        if (cb)
                cb(id, fd, from_epoll(revents), opaque);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        VirtWatch *w = userdata;
        virEventTimeoutCallback cb;
        void *opaque;
        int id;

        /* Periodic: armed for the next period first, so that the callback may change or remove it. */
        lock();
        timer_arm(w);
        cb = w->removed ? NULL : w->timeout_cb;
        opaque = w->opaque;
        id = w->id;
        unlock();
        if (cb)
                cb(id, opaque);
        return 0;
}

static int watch_new(VirtWatch *template) {
        VirtWatch *w;
        int id;

        w = new0(VirtWatch, 1);
        if (!w)
                return -1;
        *w = *template;
        lock();
        if (watch_add(w) < 0) {
                unlock();
                free(w);
                return -1;
        }
        id = w->id;
        watch_changed(w);
        unlock();
        return id;
}

static int virt_add_handle(int fd, int events, virEventHandleCallback cb, void *opaque, virFreeCallback ff) {
        return watch_new(&(VirtWatch) { .fd = fd, .events = events, .handle_cb = cb, .opaque = opaque, .ff = ff });
}

static int virt_add_timeout(int interval_ms, virEventTimeoutCallback cb, void *opaque, virFreeCallback ff) {
        return watch_new(&(VirtWatch) { .timer = true, .interval_ms = interval_ms, .timeout_cb = cb,
                                        .opaque = opaque, .ff = ff });
}

static void virt_update_handle(int id, int events) {
        VirtWatch *w;

        lock();
        w = watch_find(id);
        if (w && !w->timer) {
                w->events = events;
                watch_changed(w);
        }
        unlock();
}

static void virt_update_timeout(int id, int interval_ms) {
        VirtWatch *w;

        lock();
        w = watch_find(id);
        if (w && w->timer) {
                w->interval_ms = interval_ms;
                w->interval_changed = true;
                watch_changed(w);
        }
        unlock();
}

static int virt_remove(int id) {
        VirtWatch *w;

        lock();
        w = watch_find(id);
        if (!w) {
                unlock();
                return -1;
        }
        VirtWatch **l = reallocarray(ve.removed, ve.n_removed + 1, sizeof *l);
        if (!l) {
                /* Better a leak than calling ff() where the caller may hold its lock. */
                unlock();
                log_oom();
                return 0;
        }
        w->removed = true;
        ve.removed = l;
        ve.removed[ve.n_removed++] = w;
        watch_changed(w);
        if (in_loop_thread())
                /* Dropped from the list now; from another thread, by on_wake() once its source is gone. */
                for (size_t i = 0; i < ve.n_watches; i++)
                        if (ve.watches[i] == w) {
                                ve.watches[i] = ve.watches[--ve.n_watches];
                                break;
                        }
        unlock();
        /* The reaper is the loop's own source: enabled from its thread only, else by on_wake(). */
        if (in_loop_thread())
                (void) sd_event_source_set_enabled(ve.reaper, SD_EVENT_ONESHOT);
        return 0;
}

static int virt_remove_handle(int id) {
        return virt_remove(id);
}

static int virt_remove_timeout(int id) {
        return virt_remove(id);
}

static int on_wake_reap(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        (void) on_wake(s, fd, revents, userdata);
        return on_reap(NULL, NULL);
}

int virt_event_register(sd_event *e) {
        int r;

        if (ve.event)
                return ve.event == e ? 0 : -EBUSY;

        ve.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (ve.wake_fd < 0)
                return -errno;
        r = sd_event_add_io(e, &ve.waker, ve.wake_fd, EPOLLIN, on_wake_reap, NULL);
        if (r < 0)
                return r;
        r = sd_event_add_defer(e, &ve.reaper, on_reap, NULL);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(ve.reaper, SD_EVENT_OFF);
        ve.event = sd_event_ref(e);
        ve.loop_thread = pthread_self();

        sym_virEventRegisterImpl(virt_add_handle, virt_update_handle, virt_remove_handle,
                             virt_add_timeout, virt_update_timeout, virt_remove_timeout);
        return 0;
}

void virt_event_flush(void) {
        (void) on_reap(NULL, NULL);
}
