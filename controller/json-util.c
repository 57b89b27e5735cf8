/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "json-util.h"

int json_get_u64(json_object *v, uint64_t *ret) {
        if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
                return -EBADMSG;
        *ret = json_object_get_uint64(v);
        return 0;
}

int json_member_u64(json_object *o, const char *key, uint64_t *ret) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v))
                return -EBADMSG;
        return json_get_u64(v, ret);
}

int json_scan(JsonScan *s, const char *buf, size_t n, size_t *ret_used) {
        for (size_t i = 0; i < n; i++) {
                char c = buf[i];

                if (s->in_string) {
                        if (s->escape)
                                s->escape = false;
                        else if (c == '\\')
                                s->escape = true;
                        else if (c == '"')
                                s->in_string = false;
                        continue;
                }

                switch (c) {
                case '"':
                        s->in_string = true;
                        break;
                case '{':
                case '[':
                        if (++s->depth > JSON_MAX_DEPTH || ++s->values > JSON_MAX_VALUES)
                                return -E2BIG;
                        break;
                case ',':
                        if (++s->values > JSON_MAX_VALUES)
                                return -E2BIG;
                        break;
                case '}':
                case ']':
                        /* A stray bracket at the top is the tokener's error to report. */
                        if (s->depth > 0 && --s->depth == 0) {
                                *ret_used = i + 1;
                                return 1;
                        }
                        break;
                }
        }
        *ret_used = n;
        return 0;
}

static void json_tokener_freep(json_tokener **t) {
        if (*t)
                json_tokener_free(*t);
}

int json_parse_untrusted(const char *s, json_object **ret) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        JsonScan scan = {};
        size_t n = strlen(s), used;
        int r;

        if (n > INT_MAX)
                return -E2BIG;
        r = json_scan(&scan, s, n, &used);
        if (r < 0)
                return r;

        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                               JSON_TOKENER_VALIDATE_UTF8);
        /* -1: up to and including the NUL, which ends a top-level number or literal. */
        json_object *o = json_tokener_parse_ex(tok, s, -1);
        if (json_tokener_get_error(tok) != json_tokener_success) {
                json_object_put(o);
                return -EBADMSG;
        }
        /* Whitespace may follow the value; a second value may not. */
        used = MIN(json_tokener_get_parse_end(tok), n);
        if (strspn(s + used, " \t\r\n") != n - used) {
                json_object_put(o);
                return -EBADMSG;
        }
        *ret = o;
        return 0;
}
