/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "json-util.h"

static void test_scan(void **state) {
        static const char doc[] = "{\"a\": [1, 2, {\"b\": \"},]\\\\\\\"[{,\"}], \"c\": 3} {";
        JsonScan s = {};
        size_t used;

        /* Strings, escaped quotes included, hide their brackets and commas; the top-level bracket ends
         * the document. */
        assert_int_equal(json_scan(&s, doc, strlen(doc), &used), 1);
        assert_int_equal(used, strlen(doc) - 2);
        assert_int_equal(s.values, 6);
        assert_int_equal(s.depth, 0);

        /* Fed in pieces, cut inside a string and after a backslash. */
        s = (JsonScan) {};
        for (size_t i = 0; i < strlen(doc) - 2; i++) {
                int r = json_scan(&s, doc + i, 1, &used);
                assert_int_equal(r, i == strlen(doc) - 3);
                assert_int_equal(used, 1);
        }
        assert_int_equal(s.values, 6);

        /* A stray closing bracket is the tokener's business. */
        s = (JsonScan) {};
        assert_int_equal(json_scan(&s, "]}", 2, &used), 0);
        assert_int_equal(used, 2);
}

static char *repeat(const char *head, const char *unit, size_t count) {
        size_t h = strlen(head), l = strlen(unit);
        char *s = malloc(h + count * l + 1);

        assert_non_null(s);
        memcpy(s, head, h);
        for (size_t i = 0; i < count; i++)
                memcpy(s + h + i * l, unit, l);
        s[h + count * l] = 0;
        return s;
}

static void test_parse_untrusted(void **state) {
        static const char *const bad[] = { "", "{", "{} {}", "{} x", "[1,]", "{\"a\" 1}", "\"\xff\"" };
        json_object *o = NULL;

        assert_int_equal(json_parse_untrusted(" {\"actual\": 1}\r\n", &o), 0);
        assert_true(json_object_is_type(o, json_type_object));
        json_object_put(o);
        assert_int_equal(json_parse_untrusted("null", &o), 0);
        assert_null(o);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                o = (json_object *) 1;
                assert_int_equal(json_parse_untrusted(bad[i], &o), -EBADMSG);
                assert_ptr_equal(o, (json_object *) 1);
        }

        /* As many values as allowed, then one more; as deep as allowed, then one more. */
        {
                _cleanup_free_ char *s = repeat("[0", ",0", JSON_MAX_VALUES - 1);
                _cleanup_free_ char *t = NULL;
                assert_non_null(t = repeat(s, "]", 1));
                assert_int_equal(json_parse_untrusted(t, &o), 0);
                assert_int_equal(json_object_array_length(o), JSON_MAX_VALUES);
                json_object_put(o);
                free(t);
                assert_non_null(t = repeat(s, ",0]", 1));
                assert_int_equal(json_parse_untrusted(t, &o), -E2BIG);
        }
        for (unsigned depth = JSON_MAX_DEPTH; depth <= JSON_MAX_DEPTH + 1; depth++) {
                _cleanup_free_ char *s = repeat("", "[", depth);
                _cleanup_free_ char *t = repeat(s, "]", depth);
                assert_int_equal(json_parse_untrusted(t, &o), depth > JSON_MAX_DEPTH ? -E2BIG : 0);
                if (depth <= JSON_MAX_DEPTH)
                        json_object_put(o);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_scan),
                cmocka_unit_test(test_parse_untrusted),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
