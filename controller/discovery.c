/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "backend-qmp.h"
#include "config-paths.h"
#include "discovery.h"
#include "log.h"
#if HAVE_LIBVIRT
#include "backend-libvirt.h"
#endif

/* libvirt first: a slice that holds a libvirt domain is managed through libvirt, not waited on for a
 * QMP socket libvirt never offers. */
const discovery_new_t discovery_sources[] = {
#if HAVE_LIBVIRT
        libvirt_discovery_new,
#endif
        qmp_discovery_new,
        NULL,
};

int discovery_add_vm(Discovery *d, VM *vm) {
        int r;

        r = vm_list_add(&d->vms, vm);
        if (r >= 0) {
                vm->source = d;
                r = d->ctx->add_vm(d->ctx, vm);
                if (r < 0)
                        vm_list_remove(&d->vms, vm);
        }
        if (r < 0)
                return log_oom();
        return 0;
}

void discovery_remove_vm(Discovery *d, VM *vm) {
        /* Out of the lists first: freeing cancels its queries, whose callbacks may decide. */
        d->ctx->remove_vm(d->ctx, vm);
        vm_list_remove(&d->vms, vm);
        vm_free(vm);
}

void discovery_done(Discovery *d) {
        while (d->vms.n > 0)
                discovery_remove_vm(d, d->vms.items[0]);
        vm_list_done(&d->vms);
}
