/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

#include "vm.h"

/* Where VMs come from: the slice scan for plain QEMUs with a QMP socket (backend-qmp.c), a libvirt
 * daemon's domains (backend-libvirt.c). The manager creates every source of its list, starts them,
 * ticks them and frees them; it knows nothing else of them. A source creates its VMs with vm_new()
 * and its own backend, keeps its own list of them, and hands them to the manager and takes them back
 * through the DiscoveryContext. A new backend (crosvm, cloud-hypervisor) adds its source to
 * discovery_sources[] in discovery.c and touches no manager code. */

typedef struct Discovery Discovery;
typedef struct DiscoveryContext DiscoveryContext;

/* What a source sees of the manager. */
struct DiscoveryContext {
        const VMContext *vm;          /* for vm_new() */
        const char *cgroup_root;      /* the paths the daemon was given, and the QMP sockets' directory */
        const char *proc_root;
        const char *runtime_dir;
        /* Any source's VM, by name; NULL if none. */
        VM *(*find_vm)(const DiscoveryContext *ctx, const char *name);
        /* Takes a new VM into the decisions: -ENOMEM. Its source still owns it. */
        int (*add_vm)(const DiscoveryContext *ctx, VM *vm);
        /* Takes a VM out of the decisions, before its source frees it. */
        void (*remove_vm)(const DiscoveryContext *ctx, VM *vm);
        void *userdata;               /* the callbacks' */
};

typedef struct DiscoveryOps {
        const char *name;
        /* Finds the VMs there are now, or starts connecting. */
        int (*start)(Discovery *d);
        /* The slow tick, before the VMs are refreshed: looks again. NULL: the source follows events. */
        void (*tick)(Discovery *d);
        /* Another source found 'vm', one of this source's, as its own (a libvirt domain in a slice the
         * scan found): returns true when this source lets it go, having removed and freed it. NULL:
         * never. */
        bool (*release)(Discovery *d, VM *vm);
        /* Frees the source and its VMs. */
        void (*free)(Discovery *d);
} DiscoveryOps;

/* Each source's own struct starts with this. */
struct Discovery {
        const DiscoveryOps *ops;
        const DiscoveryContext *ctx;
        VMList vms;                   /* the source's own VMs */
};

/* Creates a source; *ret is NULL when the configuration disables it. */
typedef int (*discovery_new_t)(const DiscoveryContext *ctx, Discovery **ret);

/* The daemon's sources, in the order they start, NULL-terminated (discovery.c). */
extern const discovery_new_t discovery_sources[];

/* A new VM of source 'd': into its list and to the manager. -ENOMEM (logged), and the VM is left
 * to the caller. */
int discovery_add_vm(Discovery *d, VM *vm);
/* Takes the VM back from the manager and out of the source's list, and frees it. */
void discovery_remove_vm(Discovery *d, VM *vm);
/* Removes and frees all of the source's VMs (the source is being freed). */
void discovery_done(Discovery *d);

/* Asks the source of 'vm' to let it go to another source; true when it did (vm is freed). */
static inline bool discovery_release(VM *vm) {
        Discovery *d = vm->source;

        return d->ops->release && d->ops->release(d, vm);
}

static inline void discovery_free(Discovery *d) {
        if (d)
                d->ops->free(d);
}
