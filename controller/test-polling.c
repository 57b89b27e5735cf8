/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* When the host and a guest count as busy, so that they are read every StatsIntervalSec= rather than
 * every StatsIdleIntervalSec= (polling.h). */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "polling.h"
#include "util.h"

static const PolicyParams params = {
        .host_reserve = GIB,
        .guest_swapin_rate = MIB,
        .guest_major_fault_rate = 100,
};

/* A calm guest: 1G available of 2G, at its target, no pressure signal. */
static PolicyVM calm_vm(void) {
        return (PolicyVM) {
                .name = "calm",
                .actual = 2 * GIB,
                .target = 2 * GIB,
                .has_stats = true,
                .guest_available = GIB,
                .guest_reserve = 64 * MIB,
                .guest_min_available = 32 * MIB,
        };
}

static void test_host(void **state) {
        PolicyHost h = { .total = 16 * GIB, .available = 2 * GIB };

        /* Twice the reserve available is calm; less is approaching it. */
        assert_false(poll_host_busy(&params, &h));
        h.available = 2 * GIB - 1;
        assert_true(poll_host_busy(&params, &h));
        h.available = 8 * GIB;
        h.pressure = true;
        assert_true(poll_host_busy(&params, &h));
}

static void test_vm(void **state) {
        PolicyVM vm = calm_vm();

        assert_false(poll_vm_busy(&params, &vm, 10));

        /* Available memory within twice reserve + floor (192M) of its report. */
        vm.guest_available = 192 * MIB;
        assert_false(poll_vm_busy(&params, &vm, 10));
        vm.guest_available = 192 * MIB - 2;
        assert_true(poll_vm_busy(&params, &vm, 10));

        /* Half the pressure rates, any stall, reclaim or OOM kill. */
        vm = calm_vm();
        vm.swap_in_rate = MIB / 2 - 1;
        assert_false(poll_vm_busy(&params, &vm, 10));
        vm.swap_in_rate = MIB / 2;
        assert_true(poll_vm_busy(&params, &vm, 10));
        vm = calm_vm();
        vm.major_fault_rate = 50;
        assert_true(poll_vm_busy(&params, &vm, 10));
        vm = calm_vm();
        vm.alloc_stalls = 1;
        assert_true(poll_vm_busy(&params, &vm, 10));
        vm = calm_vm();
        vm.oom_kills = 1;
        assert_true(poll_vm_busy(&params, &vm, 10));

        /* A balloon on its way, a trigger or event waiting, hysteresis still running. */
        vm = calm_vm();
        vm.target = GIB;
        assert_true(poll_vm_busy(&params, &vm, 10));
        vm = calm_vm();
        vm.slice_pressure = true;
        assert_true(poll_vm_busy(&params, &vm, 10));
        vm = calm_vm();
        vm.carry.hysteresis_until_usec = 11;
        assert_true(poll_vm_busy(&params, &vm, 10));
        assert_false(poll_vm_busy(&params, &vm, 11));

        /* Without stats (or with stale ones) only what the daemon itself knows counts. */
        vm = calm_vm();
        vm.has_stats = false;
        vm.guest_available = 0;
        assert_false(poll_vm_busy(&params, &vm, 10));

        /* A signal switched off (rate 0) never makes a guest busy. */
        PolicyParams off = params;
        off.guest_swapin_rate = 0;
        vm = calm_vm();
        vm.swap_in_rate = 10 * MIB;
        assert_false(poll_vm_busy(&off, &vm, 10));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_host),
                cmocka_unit_test(test_vm),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
