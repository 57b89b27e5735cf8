/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "macro.h"
#include "trace.h"

static void trace_record_donep(TraceRecord *r) {
        trace_record_done(r);
}

/* Every field set, and set apart from the others, so a field dropped or swapped shows. */
static PolicyParams sample_params(void) {
        return (PolicyParams) {
                .mode = POLICY_MODE_PROXMOX,
                .host_reserve = 1,
                .reclaim_step = 2,
                .reclaim_settle_usec = 3,
                .tax_rate = 0.1,
                .hysteresis_usec = 4,
                .max_step = 5,
                .max_rate = 6,
                .deflate_step = 7,
                .guest_swapin_rate = 8,
                .guest_major_fault_rate = 9,
                .memory_high_overhead = 10,
                .stall_usec = 11,
                .stall_backoff_usec = 12,
                .refill_margin = 13,
                .refill_settle_usec = 14,
                .refill_delay_usec = 15,
                .refill_rate = 16,
        };
}

static PolicyVM sample_vm(const char *name, uint64_t base) {
        return (PolicyVM) {
                .name = name,
                .weight = base + 1,
                .min = base + 2,
                .max = base + 3,
                .actual = base + 4,
                .target = base + 5,
                .memory_high_known = true,
                .memory_high = SIZE_UNLIMITED,
                .memory_current = base + 6,
                .has_stats = true,
                .guest_available = base + 7,
                .guest_free = base + 8,
                .guest_reserve = base + 9,
                .guest_min_available = base + 10,
                .swap_in_rate = base + 11,
                .major_fault_rate = base + 12,
                .alloc_stalls = base + 13,
                .direct_reclaims = base + 14,
                .oom_kills = base + 15,
                .pressure_event = true,
                .pressure_event_level = 2,
                .pressure_event_size = base + 21,
                .pressure_event_count = base + 22,
                .slice_pressure = true,
                .carry = {
                        .hysteresis_until_usec = base + 16,
                        .backoff_until_usec = base + 17,
                        .stall_count = 18,
                        .last_inflate_usec = base + 20,
                        .last_refill_usec = base + 21,
                },
                .last_progress_usec = base + 19,
                .slice_cache = base + 31,
                .guest_free_recent = base + 32,
                .guest_growth = base + 33,
        };
}

static void assert_vm_equal(const PolicyVM *a, const PolicyVM *b) {
        assert_string_equal(a->name, b->name);
        assert_int_equal(a->weight, b->weight);
        assert_int_equal(a->min, b->min);
        assert_int_equal(a->max, b->max);
        assert_int_equal(a->actual, b->actual);
        assert_int_equal(a->target, b->target);
        assert_int_equal(a->memory_high_known, b->memory_high_known);
        assert_true(a->memory_high == b->memory_high);
        assert_int_equal(a->memory_current, b->memory_current);
        assert_int_equal(a->has_stats, b->has_stats);
        assert_int_equal(a->guest_available, b->guest_available);
        assert_int_equal(a->guest_free, b->guest_free);
        assert_int_equal(a->guest_reserve, b->guest_reserve);
        assert_int_equal(a->guest_min_available, b->guest_min_available);
        assert_int_equal(a->swap_in_rate, b->swap_in_rate);
        assert_int_equal(a->major_fault_rate, b->major_fault_rate);
        assert_int_equal(a->alloc_stalls, b->alloc_stalls);
        assert_int_equal(a->direct_reclaims, b->direct_reclaims);
        assert_int_equal(a->oom_kills, b->oom_kills);
        assert_int_equal(a->pressure_event, b->pressure_event);
        assert_int_equal(a->pressure_event_level, b->pressure_event_level);
        assert_int_equal(a->pressure_event_size, b->pressure_event_size);
        assert_int_equal(a->pressure_event_count, b->pressure_event_count);
        assert_int_equal(a->slice_pressure, b->slice_pressure);
        assert_int_equal(a->carry.hysteresis_until_usec, b->carry.hysteresis_until_usec);
        assert_int_equal(a->carry.backoff_until_usec, b->carry.backoff_until_usec);
        assert_int_equal(a->carry.stall_count, b->carry.stall_count);
        assert_int_equal(a->last_progress_usec, b->last_progress_usec);
        assert_int_equal(a->carry.last_inflate_usec, b->carry.last_inflate_usec);
        assert_int_equal(a->carry.last_refill_usec, b->carry.last_refill_usec);
        assert_int_equal(a->slice_cache, b->slice_cache);
        assert_int_equal(a->guest_free_recent, b->guest_free_recent);
        assert_int_equal(a->guest_growth, b->guest_growth);
}

static void test_round_trip(void **state) {
        _cleanup_(trace_record_donep) TraceRecord r = {};
        _cleanup_free_ char *line = NULL, *again = NULL;
        PolicyParams p = sample_params();
        PolicyHost host = {
                .now_usec = 100,
                .total = 101,
                .available = 102,
                .pressure = true,
                .last_reclaim_usec = 103,
                .last_cycle_usec = 104,
                .last_pressure_usec = 105,
                .scanned = 106,
        };
        PolicyVM vms[] = { sample_vm("web", 1000), sample_vm("db \"1\"\n", UINT64_MAX - 100) };

        vms[1].pressure_event_level = -1;
        vms[1].memory_high_known = false;

        assert_int_equal(trace_format(&p, &host, vms, ELEMENTSOF(vms), &line), 0);
        assert_null(strchr(line, '\n'));

        assert_int_equal(trace_parse(line, &r), 0);
        assert_int_equal(r.params.mode, p.mode);
        assert_int_equal(r.params.host_reserve, p.host_reserve);
        assert_int_equal(r.params.reclaim_step, p.reclaim_step);
        assert_int_equal(r.params.reclaim_settle_usec, p.reclaim_settle_usec);
        assert_true(r.params.tax_rate == p.tax_rate);
        assert_int_equal(r.params.hysteresis_usec, p.hysteresis_usec);
        assert_int_equal(r.params.max_step, p.max_step);
        assert_int_equal(r.params.max_rate, p.max_rate);
        assert_int_equal(r.params.deflate_step, p.deflate_step);
        assert_int_equal(r.params.guest_swapin_rate, p.guest_swapin_rate);
        assert_int_equal(r.params.guest_major_fault_rate, p.guest_major_fault_rate);
        assert_int_equal(r.params.memory_high_overhead, p.memory_high_overhead);
        assert_int_equal(r.params.stall_usec, p.stall_usec);
        assert_int_equal(r.params.stall_backoff_usec, p.stall_backoff_usec);
        assert_int_equal(r.params.refill_margin, p.refill_margin);
        assert_int_equal(r.params.refill_settle_usec, p.refill_settle_usec);
        assert_int_equal(r.params.refill_delay_usec, p.refill_delay_usec);
        assert_int_equal(r.params.refill_rate, p.refill_rate);

        assert_int_equal(r.host.now_usec, host.now_usec);
        assert_int_equal(r.host.total, host.total);
        assert_int_equal(r.host.available, host.available);
        assert_int_equal(r.host.pressure, host.pressure);
        assert_int_equal(r.host.last_reclaim_usec, host.last_reclaim_usec);
        assert_int_equal(r.host.last_cycle_usec, host.last_cycle_usec);
        assert_int_equal(r.host.last_pressure_usec, host.last_pressure_usec);
        assert_int_equal(r.host.scanned, host.scanned);

        assert_int_equal(r.n_vms, ELEMENTSOF(vms));
        for (size_t i = 0; i < ELEMENTSOF(vms); i++)
                assert_vm_equal(&r.vms[i], &vms[i]);

        /* Written again, byte for byte the same line. */
        assert_int_equal(trace_format(&r.params, &r.host, r.vms, r.n_vms, &again), 0);
        assert_string_equal(again, line);
}

static void test_write_appends_lines(void **state) {
        PolicyParams p = sample_params();
        PolicyHost host = { .now_usec = 1 };
        PolicyVM vm = sample_vm("a", 0);
        char buf[64 * 1024] = "";
        FILE *f;

        f = fmemopen(buf, sizeof buf - 1, "w");
        assert_non_null(f);
        assert_int_equal(trace_write(f, &p, &host, &vm, 1), 0);
        host.now_usec = 2;
        assert_int_equal(trace_write(f, &p, &host, NULL, 0), 0);
        assert_int_equal(fclose(f), 0);

        char *second = strchr(buf, '\n');
        assert_non_null(second);
        *second++ = 0;
        assert_non_null(strchr(second, '\n'));

        _cleanup_(trace_record_donep) TraceRecord a = {};
        _cleanup_(trace_record_donep) TraceRecord b = {};
        assert_int_equal(trace_parse(buf, &a), 0);
        assert_int_equal(a.n_vms, 1);
        assert_int_equal(trace_parse(second, &b), 0); /* with its newline */
        assert_int_equal(b.host.now_usec, 2);
        assert_int_equal(b.n_vms, 0);
}

/* Fields added later are 0 in old traces; fields a reader does not know are skipped. */
static void test_missing_and_unknown_fields(void **state) {
        _cleanup_(trace_record_donep) TraceRecord r = {};

        assert_int_equal(trace_parse("{\"version\":1,\"params\":{\"mode\":\"rfc\",\"future\":[1]},"
                                     "\"host\":{\"total\":5},\"vms\":[{\"name\":\"x\",\"actual\":7}]}", &r), 0);
        assert_int_equal(r.params.mode, POLICY_MODE_RFC);
        assert_int_equal(r.params.max_step, 0);
        assert_int_equal(r.host.total, 5);
        assert_int_equal(r.n_vms, 1);
        assert_string_equal(r.vms[0].name, "x");
        assert_int_equal(r.vms[0].actual, 7);
        assert_false(r.vms[0].has_stats);
}

/* The carried state is flat in the VM's object, as in traces recorded before PolicyCarry. */
static void test_carry_is_flat(void **state) {
        static const char *const old =
                "{\"version\":1,\"params\":{},\"host\":{},\"vms\":[{\"name\":\"x\",\"hysteresis_until_usec\":5,"
                "\"backoff_until_usec\":6,\"stall_count\":7,\"last_progress_usec\":8,\"last_inflate_usec\":9}]}";
        _cleanup_(trace_record_donep) TraceRecord r = {};
        _cleanup_free_ char *line = NULL;

        assert_int_equal(trace_parse(old, &r), 0);
        assert_int_equal(r.vms[0].carry.hysteresis_until_usec, 5);
        assert_int_equal(r.vms[0].carry.backoff_until_usec, 6);
        assert_int_equal(r.vms[0].carry.stall_count, 7);
        assert_int_equal(r.vms[0].last_progress_usec, 8);
        assert_int_equal(r.vms[0].carry.last_inflate_usec, 9);

        assert_int_equal(trace_format(&r.params, &r.host, r.vms, r.n_vms, &line), 0);
        assert_non_null(strstr(line, "\"hysteresis_until_usec\":5,\"backoff_until_usec\":6,\"stall_count\":7,"
                                     "\"last_progress_usec\":8,\"last_inflate_usec\":9,\"last_refill_usec\":0}"));
        assert_null(strstr(line, "carry"));
}

static void test_bad_records(void **state) {
        static const char *const bad[] = {
                "",
                "{",
                "[]",
                "{\"version\":1,\"params\":{},\"host\":{},\"vms\":[]} x",
                "{\"version\":1,\"params\":{},\"host\":{},\"vms\":[]}{}",
                "{\"params\":{},\"host\":{},\"vms\":[]}",
                "{\"version\":2,\"params\":{},\"host\":{},\"vms\":[]}",
                "{\"version\":1,\"host\":{},\"vms\":[]}",
                "{\"version\":1,\"params\":{},\"host\":{},\"vms\":{}}",
                "{\"version\":1,\"params\":[],\"host\":{},\"vms\":[]}",
                "{\"version\":1,\"params\":{\"mode\":\"fair\"},\"host\":{},\"vms\":[]}",
                "{\"version\":1,\"params\":{\"max_step\":-1},\"host\":{},\"vms\":[]}",
                "{\"version\":1,\"params\":{\"max_step\":\"1G\"},\"host\":{},\"vms\":[]}",
                "{\"version\":1,\"params\":{\"tax_rate\":null},\"host\":{},\"vms\":[]}",
                "{\"version\":1,\"params\":{},\"host\":{\"pressure\":1},\"vms\":[]}",
                "{\"version\":1,\"params\":{},\"host\":{},\"vms\":[1]}",
                "{\"version\":1,\"params\":{},\"host\":{},\"vms\":[{\"name\":5}]}",
                "{\"version\":1,\"params\":{},\"host\":{},\"vms\":[{\"stall_count\":4294967296}]}",
                "{\"version\":1,\"params\":{},\"host\":{},\"vms\":[{\"pressure_event_level\":2147483648}]}",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                TraceRecord r = { .n_vms = 42 };
                assert_int_equal(trace_parse(bad[i], &r), -EBADMSG);
                assert_int_equal(r.n_vms, 42); /* untouched */
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_write_appends_lines),
                cmocka_unit_test(test_missing_and_unknown_fields),
                cmocka_unit_test(test_carry_is_flat),
                cmocka_unit_test(test_bad_records),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
