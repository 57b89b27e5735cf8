/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The state file: a round trip, and every way a file can be wrong is refused as a whole. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "macro.h"
#include "state.h"

#define BOOT "3f2c9a4e-1b7d-4c55-9e0a-6d8b2f1c7e90"
#define NOW (UINT64_C(1000) * USEC_PER_SEC)
#define AHEAD (UINT64_C(60) * USEC_PER_SEC)

static int parse(const char *text, State *ret, const char **why) {
        return state_parse(text, strlen(text), BOOT, NOW, AHEAD, ret, why);
}

static void test_round_trip(void **state) {
        StateVM vms[] = {
                { .name = (char *) "web", .carry = { NOW + 5, NOW + 7, NOW - 3, 2, NOW - 2 } },
                { .name = (char *) "idle", .carry = {} },       /* nothing to carry: left out */
                { .name = (char *) "db_2", .carry = { 0, 0, NOW - 1, 0, 0 } },
                { .name = (char *) "given", .carry = { .last_refill_usec = NOW - 4 } },
        };
        State in = { .paused = true, .vms = vms, .n_vms = ELEMENTSOF(vms) }, out;
        _cleanup_free_ char *text = NULL;
        const char *why = NULL;

        assert_int_equal(state_format(&in, BOOT, &text), 0);
        assert_string_equal(text, "autoballoon-state 2\nboot " BOOT "\npaused 1\n"
                                  "vm web 1000000005 1000000007 999999997 2 999999998\n"
                                  "vm db_2 0 0 999999999 0 0\n"
                                  "vm given 0 0 0 0 999999996\n");
        assert_int_equal(parse(text, &out, &why), 0);
        assert_true(out.paused);
        assert_int_equal(out.n_vms, 3);
        const PolicyCarry *c = state_find_vm(&out, "web");
        assert_non_null(c);
        assert_int_equal(c->hysteresis_until_usec, NOW + 5);
        assert_int_equal(c->backoff_until_usec, NOW + 7);
        assert_int_equal(c->last_inflate_usec, NOW - 3);
        assert_int_equal(c->stall_count, 2);
        assert_int_equal(c->last_refill_usec, NOW - 2);
        assert_non_null(state_find_vm(&out, "db_2"));
        assert_int_equal(state_find_vm(&out, "given")->last_refill_usec, NOW - 4);
        assert_null(state_find_vm(&out, "idle"));
        state_done(&out);
}

static void check_bad(const char *text, int error, const char *reason) {
        State s = { .paused = true };
        const char *why = NULL;

        assert_int_equal(parse(text, &s, &why), error);
        assert_non_null(why);
        if (!strstr(why, reason))
                fail_msg("\"%s\": expected \"%s\", got \"%s\"", text, reason, why);
        assert_true(s.paused); /* untouched */
}

/* A file of version 1, written before give-back, still reads: no give-back carried. */
static void test_version_1(void **state) {
        State out;
        const char *why = NULL;

        assert_int_equal(parse("autoballoon-state 1\nboot " BOOT "\npaused 0\nvm web 1000000005 0 999999997 2\n",
                               &out, &why), 0);
        const PolicyCarry *c = state_find_vm(&out, "web");
        assert_non_null(c);
        assert_int_equal(c->hysteresis_until_usec, NOW + 5);
        assert_int_equal(c->last_inflate_usec, NOW - 3);
        assert_int_equal(c->stall_count, 2);
        assert_int_equal(c->last_refill_usec, 0);
        state_done(&out);

        check_bad("autoballoon-state 1\nboot " BOOT "\npaused 0\nvm web 0 0 0 0 0\n", -EBADMSG, "4 numbers");
}

static void test_corrupt(void **state) {
        const char *head = "autoballoon-state 2\nboot " BOOT "\npaused 0\n";
        char buf[512];

        check_bad("", -EBADMSG, "truncated");
        check_bad("autoballoon-state 1\nboot " BOOT "\n", -EBADMSG, "truncated");
        check_bad("autoballoon-state 1\nboot " BOOT "\npaused 0", -EBADMSG, "truncated");
        check_bad("autoballoon-state 3\n", -EBADMSG, "version 1 or 2");
        check_bad("autoballoon-state 1\nboot xyz\npaused 0\n", -EBADMSG, "no boot id");
        check_bad("autoballoon-state 1\nboot 00000000-1b7d-4c55-9e0a-6d8b2f1c7e90\npaused 0\n", -ESTALE,
                  "earlier boot");
        check_bad("autoballoon-state 1\nboot " BOOT "\npaused yes\n", -EBADMSG, "paused");

#define BAD_VM(line, reason)                                            \
        do {                                                            \
                (void) snprintf(buf, sizeof buf, "%s%s\n", head, line); \
                check_bad(buf, -EBADMSG, reason);                       \
        } while (0)
        BAD_VM("vm web 1 2 3 4", "5 numbers");
        BAD_VM("vm web 1 2 3 4 5 6", "5 numbers");
        BAD_VM("vm  web 1 2 3 4 5", "5 numbers");
        BAD_VM("vm web\t1 2 3 4 5", "5 numbers");
        BAD_VM("vm web -1 2 3 4 0", "out of range");
        BAD_VM("vm web 1061000001 0 0 0 0", "out of range");      /* hysteresis further than allowed */
        BAD_VM("vm web 0 0 1000000001 0 0", "out of range");      /* an inflation in the future */
        BAD_VM("vm web 0 0 0 65 0", "stall count");
        BAD_VM("vm web 0 0 0 99999999999999999999 0", "stall count");
        BAD_VM("vm w\x01 0 0 0 1 0", "invalid VM name");
        BAD_VM("vm web 0 0 0 1 0\nvm web 0 0 0 2 0", "twice");
        BAD_VM("vm web 0 0 0 0 1000000001", "out of range");   /* a give-back in the future */
#undef BAD_VM

        /* A NUL byte anywhere. */
        State s;
        const char *why = NULL;
        assert_int_equal(state_parse("autoballoon-state 1\n\0", 21, BOOT, NOW, AHEAD, &s, &why), -EBADMSG);
        assert_string_equal(why, "NUL byte");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_corrupt),
                cmocka_unit_test(test_version_1),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
