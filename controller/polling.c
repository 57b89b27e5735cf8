/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "polling.h"

bool poll_host_busy(const PolicyParams *p, const PolicyHost *host) {
        return host->pressure || host->available / 2 < p->host_reserve;
}

bool poll_vm_busy(const PolicyParams *p, const PolicyVM *vm, uint64_t now_usec) {
        if (vm->target != vm->actual || vm->pressure_event || vm->slice_pressure ||
            vm->carry.hysteresis_until_usec > now_usec)
                return true;
        /* Without stats there is nothing to be close to: the VM is not inflated, and a busy host
         * makes every VM busy anyway. */
        if (!vm->has_stats)
                return false;
        if (vm->guest_available / 2 < vm->guest_reserve + vm->guest_min_available)
                return true;
        if (p->guest_swapin_rate > 0 && vm->swap_in_rate >= p->guest_swapin_rate / 2 && vm->swap_in_rate > 0)
                return true;
        if (p->guest_major_fault_rate > 0 && vm->major_fault_rate >= p->guest_major_fault_rate / 2 &&
            vm->major_fault_rate > 0)
                return true;
        return vm->alloc_stalls > 0 || vm->direct_reclaims > 0 || vm->oom_kills > 0;
}
