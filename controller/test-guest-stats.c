/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "guest-stats.h"
#include "json-util.h"
#include "macro.h"

static json_object *parse(const char *s) {
        json_object *o = json_tokener_parse(s);
        assert_non_null(o);
        return o;
}

static void test_guest_stat_names(void **state) {
        for (int i = 0; i < _GUEST_STAT_MAX; i++) {
                const char *name = guest_stat_to_name(i);
                assert_non_null(name);
                assert_int_equal(guest_stat_from_name(name), i);
        }
        assert_int_equal(guest_stat_from_name("stat-free-memory"), GUEST_STAT_FREE_MEMORY);
        assert_int_equal(guest_stat_from_name("stat-direct-reclaims"), GUEST_STAT_DIRECT_RECLAIMS);
        assert_int_equal(guest_stat_from_name("stat-nonsense"), -1);
        assert_int_equal(guest_stat_from_name(NULL), -1);
        assert_null(guest_stat_to_name(_GUEST_STAT_MAX));
        assert_null(guest_stat_to_name(-1));
}

static void test_guest_stats_all(void **state) {
        _cleanup_json_ json_object *o = parse(
                "{\"stats\": {\"stat-swap-in\": 1, \"stat-swap-out\": 2, \"stat-major-faults\": 3,"
                " \"stat-minor-faults\": 4, \"stat-free-memory\": 5, \"stat-total-memory\": 6,"
                " \"stat-available-memory\": 7, \"stat-disk-caches\": 8, \"stat-htlb-pgalloc\": 9,"
                " \"stat-htlb-pgfail\": 10, \"stat-oom-kills\": 11, \"stat-alloc-stalls\": 12,"
                " \"stat-async-scans\": 13, \"stat-direct-scans\": 14, \"stat-async-reclaims\": 15,"
                " \"stat-direct-reclaims\": 18446744073709551614, \"stat-from-the-future\": 99},"
                " \"last-update\": 1700000000}");
        GuestStats s;

        assert_int_equal(guest_stats_parse(o, &s), 0);
        assert_int_equal(s.valid, (UINT32_C(1) << _GUEST_STAT_MAX) - 1);
        for (int i = 0; i < GUEST_STAT_DIRECT_RECLAIMS; i++) {
                assert_true(guest_stat_valid(&s, i));
                assert_int_equal(s.value[i], i + 1);
        }
        assert_true(s.value[GUEST_STAT_DIRECT_RECLAIMS] == UINT64_MAX - 1);
        assert_int_equal(s.last_update, 1700000000);
}

static void test_guest_stats_none(void **state) {
        /* What QEMU returns before the guest's first report. */
        _cleanup_json_ json_object *o = parse(
                "{\"stats\": {\"stat-swap-in\": 18446744073709551615, \"stat-swap-out\": 18446744073709551615,"
                " \"stat-free-memory\": 18446744073709551615, \"stat-available-memory\": 18446744073709551615},"
                " \"last-update\": 0}");
        _cleanup_json_ json_object *empty = parse("{\"stats\": {}, \"last-update\": 0}");
        GuestStats s;

        memset(&s, 0xff, sizeof s);
        assert_int_equal(guest_stats_parse(o, &s), 0);
        assert_int_equal(s.valid, 0);
        assert_int_equal(s.last_update, 0);
        for (int i = 0; i < _GUEST_STAT_MAX; i++)
                assert_false(guest_stat_valid(&s, i));

        memset(&s, 0xff, sizeof s);
        assert_int_equal(guest_stats_parse(empty, &s), 0);
        assert_int_equal(s.valid, 0);
}

static void test_guest_stats_partial(void **state) {
        /* A QEMU 7.2 answer from a 6.1 guest without hugetlb. */
        _cleanup_json_ json_object *o = parse(
                "{\"stats\": {\"stat-swap-out\": 0, \"stat-available-memory\": 398168064,"
                " \"stat-free-memory\": 425291776, \"stat-minor-faults\": 80374, \"stat-major-faults\": 121,"
                " \"stat-total-memory\": 497557504, \"stat-swap-in\": 0, \"stat-disk-caches\": 17100800,"
                " \"stat-htlb-pgalloc\": 18446744073709551615, \"stat-htlb-pgfail\": 18446744073709551615},"
                " \"last-update\": 1712345678}");
        GuestStats s;

        assert_int_equal(guest_stats_parse(o, &s), 0);
        assert_true(guest_stat_valid(&s, GUEST_STAT_AVAILABLE_MEMORY));
        assert_int_equal(s.value[GUEST_STAT_AVAILABLE_MEMORY], 398168064);
        assert_int_equal(s.value[GUEST_STAT_FREE_MEMORY], 425291776);
        assert_int_equal(s.value[GUEST_STAT_MAJOR_FAULTS], 121);
        assert_true(guest_stat_valid(&s, GUEST_STAT_SWAP_IN));
        assert_int_equal(s.value[GUEST_STAT_SWAP_IN], 0);
        assert_false(guest_stat_valid(&s, GUEST_STAT_HTLB_PGALLOC));
        assert_false(guest_stat_valid(&s, GUEST_STAT_HTLB_PGFAIL));
        assert_false(guest_stat_valid(&s, GUEST_STAT_OOM_KILLS));
        assert_false(guest_stat_valid(&s, GUEST_STAT_DIRECT_RECLAIMS));
        assert_int_equal(__builtin_popcount(s.valid), 8);
        assert_int_equal(s.last_update, 1712345678);
}

static void test_guest_stats_invalid(void **state) {
        static const char *const bad[] = {
                "{\"stats\": {\"stat-free-memory\": -1}, \"last-update\": 1}",
                "{\"stats\": {\"stat-free-memory\": 1.5}, \"last-update\": 1}",
                "{\"stats\": {\"stat-free-memory\": \"1024\"}, \"last-update\": 1}",
                "{\"stats\": {\"stat-free-memory\": null}, \"last-update\": 1}",
                "{\"stats\": {\"stat-free-memory\": true}, \"last-update\": 1}",
                "{\"stats\": {\"stat-free-memory\": {}}, \"last-update\": 1}",
                "{\"stats\": {\"stat-swap-in\": 1}, \"last-update\": -5}",
                "{\"stats\": {\"stat-swap-in\": 1}, \"last-update\": \"now\"}",
                "{\"stats\": {\"stat-swap-in\": 1}}",
                "{\"last-update\": 1}",
                "{\"stats\": [1, 2], \"last-update\": 1}",
                "[]",
        };
        GuestStats s, sentinel;

        memset(&sentinel, 0x5a, sizeof sentinel);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_json_ json_object *o = parse(bad[i]);

                s = sentinel;
                assert_int_equal(guest_stats_parse(o, &s), -EBADMSG);
                /* Outputs are written only on success. */
                assert_memory_equal(&s, &sentinel, sizeof s);
        }
        assert_int_equal(guest_stats_parse(NULL, &s), -EBADMSG);
}

static void test_guest_pressure(void **state) {
        static const char *const bad[] = {
                "{}",
                "[]",
                "\"critical\"",
                /* The RFC's format, that the device filled in itself. */
                "{\"actual\": 1, \"target\": 2, \"level\": 1, \"action\": \"deflate\"}",
                "{\"level\": \"low\"}",
                "{\"size\": 0}",
                "{\"level\": 1, \"size\": 0}",
                "{\"level\": \"low\", \"size\": -1}",
                "{\"level\": \"low\", \"size\": 1.5}",
                "{\"level\": \"low\", \"size\": \"1\"}",
                "{\"level\": null, \"size\": 1}",
                "{\"level\": \"low\\u0000x\", \"size\": 1}",
        };
        static const char *const unknown[] = {
                "{\"level\": \"severe\", \"size\": 1}",
                "{\"level\": \"LOW\", \"size\": 1}",
                "{\"level\": \"\", \"size\": 1}",
        };
        static const struct {
                const char *json;
                GuestPressureLevel level;
                uint64_t size;
        } good[] = {
                { "{\"level\": \"low\", \"size\": 0}", GUEST_PRESSURE_LEVEL_LOW, 0 },
                { "{\"level\": \"medium\", \"size\": 4194304}", GUEST_PRESSURE_LEVEL_MEDIUM, 4 * MIB },
                /* Bounded by vm.c, not here: the parser knows no boot memory. */
                { "{\"level\": \"critical\", \"size\": 18446744073709551615, \"more\": [1]}",
                  GUEST_PRESSURE_LEVEL_CRITICAL, UINT64_MAX },
        };
        GuestPressureEvent e;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_json_ json_object *o = parse(good[i].json);

                assert_int_equal(guest_pressure_parse(o, &e), 0);
                assert_int_equal(e.level, good[i].level);
                assert_true(e.size == good[i].size);
        }

        for (size_t i = 0; i < ELEMENTSOF(bad) + ELEMENTSOF(unknown); i++) {
                bool u = i >= ELEMENTSOF(bad);
                _cleanup_json_ json_object *o = parse(u ? unknown[i - ELEMENTSOF(bad)] : bad[i]);

                e = (GuestPressureEvent) { .level = 42, .size = 42 };
                assert_int_equal(guest_pressure_parse(o, &e), u ? -EOPNOTSUPP : -EBADMSG);
                /* Outputs are written only on success. */
                assert_int_equal(e.level, 42);
                assert_int_equal(e.size, 42);
        }
        assert_int_equal(guest_pressure_parse(NULL, &e), -EBADMSG);
}

static void test_guest_pressure_levels(void **state) {
        assert_string_equal(guest_pressure_level_to_string(GUEST_PRESSURE_LEVEL_LOW), "low");
        assert_string_equal(guest_pressure_level_to_string(GUEST_PRESSURE_LEVEL_CRITICAL), "critical");
        assert_null(guest_pressure_level_to_string(-1));
        assert_null(guest_pressure_level_to_string(_GUEST_PRESSURE_LEVEL_MAX));
        for (int l = 0; l < _GUEST_PRESSURE_LEVEL_MAX; l++)
                assert_int_equal(guest_pressure_level_from_string(guest_pressure_level_to_string(l)), l);
        assert_int_equal(guest_pressure_level_from_string(NULL), -1);
        /* The order is the urgency the policy compares. */
        assert_true(GUEST_PRESSURE_LEVEL_LOW < GUEST_PRESSURE_LEVEL_MEDIUM &&
                    GUEST_PRESSURE_LEVEL_MEDIUM < GUEST_PRESSURE_LEVEL_CRITICAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_guest_stat_names),
                cmocka_unit_test(test_guest_stats_all),
                cmocka_unit_test(test_guest_stats_none),
                cmocka_unit_test(test_guest_stats_partial),
                cmocka_unit_test(test_guest_stats_invalid),
                cmocka_unit_test(test_guest_pressure),
                cmocka_unit_test(test_guest_pressure_levels),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
