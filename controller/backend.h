/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>

#include "config.h"
#include "guest-stats.h"

/* How a VM's balloon is driven and its guest stats read: over QEMU's QMP socket (backend-qmp.c) or
 * through libvirt (backend-libvirt.c). vm.c and the manager only see this interface; a backend
 * decides nothing, it reports what it sees through the vm_backend_*() callbacks below.
 *
 * Callbacks run from the event loop, never from inside start() or free(); refresh() and
 * set_target() may call vm_backend_balloon_moved(), vm_backend_stats() and vm_backend_lost()
 * before they return (a synchronous backend), but never vm_backend_refresh_done(). */

typedef struct VM VM;
typedef struct Backend Backend;

typedef struct BackendOps {
        const char *name;                       /* "QMP", "libvirt": for messages */
        int (*start)(Backend *b);
        void (*free)(Backend *b);
        /* Asks for the balloon size and the guest stats. Returns how many answers are still to come,
         * each of which calls vm_backend_refresh_done() later. */
        unsigned (*refresh)(Backend *b);
        /* The balloon target: the guest's memory size it should end up with, in bytes. */
        int (*set_target)(Backend *b, uint64_t bytes);
        /* How often the guest should report its stats from now on; a shorter interval asks for a
         * report at once. NULL: the backend keeps the one it set at adoption. */
        void (*set_stats_interval)(Backend *b, uint64_t usec);
} BackendOps;

/* Each backend's own struct starts with this. */
struct Backend {
        const BackendOps *ops;
        VM *vm;
};

/* Callbacks into vm.c. */
void vm_backend_probing(VM *vm);                                   /* connected, finding the balloon */
void vm_backend_ready(VM *vm, uint64_t boot_memory, uint64_t actual, const char *device);
void vm_backend_unsupported(VM *vm, const char *why);              /* reported once, not retried */
void vm_backend_lost(VM *vm, int error);                           /* not managed until ready again */
/* The balloon's size as reported (the guest's word: vm.c bounds it). */
void vm_backend_balloon_moved(VM *vm, uint64_t actual);
void vm_backend_target_refused(VM *vm);                              /* the last set_target() did not go out */
/* A balloon size that is no size (negative, not an integer), from 'what' ("BALLOON_CHANGE"). */
void vm_backend_balloon_invalid(VM *vm, const char *what);
void vm_backend_stats(VM *vm, const GuestStats *s);                /* NULL: a malformed report */
void vm_backend_guest_pressure(VM *vm, const GuestPressureEvent *e);
/* A BALLOON_GUEST_PRESSURE event guest_pressure_parse() refused with 'error': warned at a bounded rate. */
void vm_backend_guest_pressure_invalid(VM *vm, int error);
void vm_backend_refresh_done(VM *vm);
/* The VM's Weight/MinMemory/MaxMemory as the backend finds them (libvirt's domain metadata): the
 * config file's [VM] keys win, these fill in what it does not set. */
void vm_backend_metadata(VM *vm, const VMConfig *c);
/* The VM's cgroup moved, became reachable, or went out of reach (NULL): follow it. */
void vm_backend_cgroup(VM *vm, const char *cgpath);

static inline void backend_free(Backend *b) {
        if (b)
                b->ops->free(b);
}
