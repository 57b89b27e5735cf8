/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Calls that can block without bound (libvirt's calls that wait for a domain's QEMU monitor or a job
 * on the domain, connecting to libvirtd) run in a thread of their own, one per call, and the event
 * loop gets the result through an eventfd: the loop never waits on them. The caller keeps at most
 * one call in flight per peer and bounds how long it waits with a timer of its own; a call that never
 * returns costs a parked thread, never the loop.
 */

#include <stdbool.h>
#include <systemd/sd-event.h>

typedef struct WorkerQueue WorkerQueue;
typedef struct WorkerCall WorkerCall;

struct WorkerCall {
        /* In the call's thread: the blocking work, storing its result in the caller's struct. */
        void (*run)(WorkerCall *c);
        /* In the loop's thread, once run() returned: 'owner' is NULL if the caller abandoned the call.
         * Frees the call. */
        void (*done)(WorkerCall *c, void *owner);
        void *owner;
        WorkerQueue *queue;
        WorkerCall *next;
};

int worker_queue_new(sd_event *e, WorkerQueue **ret);
/* Calls still running are abandoned; their threads finish on their own and free them. */
WorkerQueue *worker_queue_free(WorkerQueue *q);

/* Starts c->run(c) in a new thread. On failure nothing runs and c is the caller's. */
int worker_call_start(WorkerQueue *q, WorkerCall *c);

/* The owner goes away: done() will see owner NULL. From the loop's thread. */
void worker_call_abandon(WorkerCall *c);
