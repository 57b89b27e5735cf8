/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "metrics.h"
#include "util.h"

static void test_format_vms(void **state) {
        MetricsHost host = {
                .total = 8 * GIB,
                .available = 3 * GIB,
                .pressure_known = true,
                .pressure_some_avg10 = 12.5,
                .paused = true,
                .policy = "rfc",
        };
        MetricsVM vms[2] = {
                {
                        .name = "web",
                        .managed = true,
                        .weight = 300,
                        .boot_memory = 512 * MIB,
                        .actual = 384 * MIB,
                        .target = 256 * MIB,
                        .memory_high_known = true,
                        .memory_high = SIZE_UNLIMITED,
                        .slice_pressure_known = true,
                        .slice_pressure_some_avg10 = 0.25,
                },
                {
                        /* Not adopted yet: no sizes; a name that needs escaping (the daemon's names
                         * never do, the format must hold anyway). */
                        .name = "a\"b\\c\nd",
                        .weight = 100,
                        .actual = 1,
                        .memory_high_known = true,
                        .memory_high = 5,
                },
        };
        _cleanup_free_ char *text = NULL;

        vms[0].decisions[POLICY_INFLATE] = 3;
        vms[0].decisions[POLICY_SET_HIGH] = 1;
        vms[0].decisions[POLICY_NONE] = 99; /* never written */
        vms[1].decisions[POLICY_HOLD] = 2;

        assert_int_equal(metrics_format(&host, vms, 2, &text), 0);
        assert_string_equal(text,
                "# TYPE autoballoon_policy info\n"
                "# HELP autoballoon_policy The policy deciding (Policy= in autoballoon.conf).\n"
                "autoballoon_policy_info{policy=\"rfc\"} 1\n"
                "# TYPE autoballoon_paused gauge\n"
                "# HELP autoballoon_paused 1 while the controller is paused (autoballoonctl pause): nothing is changed.\n"
                "autoballoon_paused 1\n"
                "# TYPE autoballoon_host_total_bytes gauge\n"
                "# UNIT autoballoon_host_total_bytes bytes\n"
                "# HELP autoballoon_host_total_bytes Host memory, or the parent slice's limit with HostPressure=slice.\n"
                "autoballoon_host_total_bytes 8589934592\n"
                "# TYPE autoballoon_host_available_bytes gauge\n"
                "# UNIT autoballoon_host_available_bytes bytes\n"
                "# HELP autoballoon_host_available_bytes Host available memory, or the parent slice's limit minus its usage.\n"
                "autoballoon_host_available_bytes 3221225472\n"
                "# TYPE autoballoon_host_pressure_some_avg10 gauge\n"
                "# HELP autoballoon_host_pressure_some_avg10 Host (or parent slice) memory pressure: some, avg10, percent.\n"
                "autoballoon_host_pressure_some_avg10 12.50\n"
                "# TYPE autoballoon_vm_managed gauge\n"
                "# HELP autoballoon_vm_managed 1 if the VM is adopted and answers QMP, 0 while connecting or without a balloon.\n"
                "autoballoon_vm_managed{vm=\"web\"} 1\n"
                "autoballoon_vm_managed{vm=\"a\\\"b\\\\c\\nd\"} 0\n"
                "# TYPE autoballoon_vm_weight gauge\n"
                "# HELP autoballoon_vm_weight Weight of the VM in the split of host memory.\n"
                "autoballoon_vm_weight{vm=\"web\"} 300\n"
                "autoballoon_vm_weight{vm=\"a\\\"b\\\\c\\nd\"} 100\n"
                "# TYPE autoballoon_vm_boot_memory_bytes gauge\n"
                "# UNIT autoballoon_vm_boot_memory_bytes bytes\n"
                "# HELP autoballoon_vm_boot_memory_bytes Guest memory at boot.\n"
                "autoballoon_vm_boot_memory_bytes{vm=\"web\"} 536870912\n"
                "# TYPE autoballoon_vm_actual_bytes gauge\n"
                "# UNIT autoballoon_vm_actual_bytes bytes\n"
                "# HELP autoballoon_vm_actual_bytes Guest memory left by the balloon, as QEMU last reported it.\n"
                "autoballoon_vm_actual_bytes{vm=\"web\"} 402653184\n"
                "# TYPE autoballoon_vm_target_bytes gauge\n"
                "# UNIT autoballoon_vm_target_bytes bytes\n"
                "# HELP autoballoon_vm_target_bytes Balloon target last requested.\n"
                "autoballoon_vm_target_bytes{vm=\"web\"} 268435456\n"
                "# TYPE autoballoon_vm_memory_high_bytes gauge\n"
                "# UNIT autoballoon_vm_memory_high_bytes bytes\n"
                "# HELP autoballoon_vm_memory_high_bytes memory.high of the VM's slice.\n"
                "autoballoon_vm_memory_high_bytes{vm=\"web\"} +Inf\n"
                "# TYPE autoballoon_vm_slice_pressure_some_avg10 gauge\n"
                "# HELP autoballoon_vm_slice_pressure_some_avg10 Memory pressure of the VM's slice: some, avg10, percent.\n"
                "autoballoon_vm_slice_pressure_some_avg10{vm=\"web\"} 0.25\n"
                "# TYPE autoballoon_decisions counter\n"
                "# HELP autoballoon_decisions Decisions logged, by action; a hold is counted once when it starts.\n"
                "autoballoon_decisions_total{vm=\"web\",action=\"inflate\"} 3\n"
                "autoballoon_decisions_total{vm=\"web\",action=\"deflate\"} 0\n"
                "autoballoon_decisions_total{vm=\"web\",action=\"cancel\"} 0\n"
                "autoballoon_decisions_total{vm=\"web\",action=\"hold\"} 0\n"
                "autoballoon_decisions_total{vm=\"web\",action=\"stall\"} 0\n"
                "autoballoon_decisions_total{vm=\"web\",action=\"set-high\"} 1\n"
                "autoballoon_decisions_total{vm=\"a\\\"b\\\\c\\nd\",action=\"inflate\"} 0\n"
                "autoballoon_decisions_total{vm=\"a\\\"b\\\\c\\nd\",action=\"deflate\"} 0\n"
                "autoballoon_decisions_total{vm=\"a\\\"b\\\\c\\nd\",action=\"cancel\"} 0\n"
                "autoballoon_decisions_total{vm=\"a\\\"b\\\\c\\nd\",action=\"hold\"} 2\n"
                "autoballoon_decisions_total{vm=\"a\\\"b\\\\c\\nd\",action=\"stall\"} 0\n"
                "autoballoon_decisions_total{vm=\"a\\\"b\\\\c\\nd\",action=\"set-high\"} 0\n"
                "# EOF\n");
}

static void test_format_no_vms(void **state) {
        MetricsHost host = { .total = 1024, .available = 0, .policy = "autoballoon" };
        _cleanup_free_ char *text = NULL;

        /* No VM: no family without samples, no host pressure when it cannot be read. */
        assert_int_equal(metrics_format(&host, NULL, 0, &text), 0);
        assert_string_equal(text,
                "# TYPE autoballoon_policy info\n"
                "# HELP autoballoon_policy The policy deciding (Policy= in autoballoon.conf).\n"
                "autoballoon_policy_info{policy=\"autoballoon\"} 1\n"
                "# TYPE autoballoon_paused gauge\n"
                "# HELP autoballoon_paused 1 while the controller is paused (autoballoonctl pause): nothing is changed.\n"
                "autoballoon_paused 0\n"
                "# TYPE autoballoon_host_total_bytes gauge\n"
                "# UNIT autoballoon_host_total_bytes bytes\n"
                "# HELP autoballoon_host_total_bytes Host memory, or the parent slice's limit with HostPressure=slice.\n"
                "autoballoon_host_total_bytes 1024\n"
                "# TYPE autoballoon_host_available_bytes gauge\n"
                "# UNIT autoballoon_host_available_bytes bytes\n"
                "# HELP autoballoon_host_available_bytes Host available memory, or the parent slice's limit minus its usage.\n"
                "autoballoon_host_available_bytes 0\n"
                "# EOF\n");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_format_vms),
                cmocka_unit_test(test_format_no_vms),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
