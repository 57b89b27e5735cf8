/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "worker.h"

struct WorkerQueue {
        pthread_mutex_t lock;
        int wake_fd;
        sd_event_source *source;
        WorkerCall *finished;          /* returned, waiting for the loop */
        unsigned running;              /* threads not finished yet */
        bool freed;                    /* the loop let go: the last thread frees it */
};

static void queue_destroy(WorkerQueue *q) {
        safe_close(q->wake_fd);
        (void) pthread_mutex_destroy(&q->lock);
        free(q);
}

static int on_finished(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        WorkerQueue *q = userdata;
        WorkerCall *l;
        eventfd_t v;

        (void) eventfd_read(fd, &v);
        (void) pthread_mutex_lock(&q->lock);
        l = q->finished;
        q->finished = NULL;
        (void) pthread_mutex_unlock(&q->lock);

        while (l) {
                WorkerCall *c = l;
                l = l->next;
                c->done(c, c->owner);
        }
        return 0;
}

static void *call_thread(void *userdata) {
        WorkerCall *c = userdata;
        WorkerQueue *q = c->queue;
        bool last;

        c->run(c);

        (void) pthread_mutex_lock(&q->lock);
        q->running--;
        if (q->freed) {
                /* Nobody to hand it to. */
                last = q->running == 0;
                (void) pthread_mutex_unlock(&q->lock);
                c->done(c, NULL);
                if (last)
                        queue_destroy(q);
                return NULL;
        }
        c->next = q->finished;
        q->finished = c;
        if (eventfd_write(q->wake_fd, 1) < 0)
                log_warning_errno(errno, "Cannot wake the event loop: %m");
        (void) pthread_mutex_unlock(&q->lock);
        return NULL;
}

int worker_queue_new(sd_event *e, WorkerQueue **ret) {
        WorkerQueue *q;
        int r;

        q = new0(WorkerQueue, 1);
        if (!q)
                return -ENOMEM;
        (void) pthread_mutex_init(&q->lock, NULL);
        q->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (q->wake_fd < 0) {
                r = -errno;
                queue_destroy(q);
                return r;
        }
        r = sd_event_add_io(e, &q->source, q->wake_fd, EPOLLIN, on_finished, q);
        if (r < 0) {
                queue_destroy(q);
                return r;
        }
        *ret = q;
        return 0;
}

WorkerQueue *worker_queue_free(WorkerQueue *q) {
        bool idle;

        if (!q)
                return NULL;
        q->source = sd_event_source_disable_unref(q->source);
        /* Those that finished already get their done() now, those still running from their thread. */
        (void) on_finished(NULL, q->wake_fd, 0, q);
        (void) pthread_mutex_lock(&q->lock);
        q->freed = true;
        idle = q->running == 0;
        (void) pthread_mutex_unlock(&q->lock);
        if (idle)
                queue_destroy(q);
        return NULL;
}

int worker_call_start(WorkerQueue *q, WorkerCall *c) {
        pthread_attr_t attr;
        pthread_t t;
        int r;

        c->queue = q;
        c->next = NULL;
        (void) pthread_attr_init(&attr);
        (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* libvirt's client calls need little stack. */
        (void) pthread_attr_setstacksize(&attr, 256 * 1024);

        (void) pthread_mutex_lock(&q->lock);
        q->running++;
        r = -pthread_create(&t, &attr, call_thread, c);
        if (r < 0)
                q->running--;
        (void) pthread_mutex_unlock(&q->lock);
        (void) pthread_attr_destroy(&attr);
        return r;
}

void worker_call_abandon(WorkerCall *c) {
        WorkerQueue *q = c->queue;

        (void) pthread_mutex_lock(&q->lock);
        c->owner = NULL;
        (void) pthread_mutex_unlock(&q->lock);
}
