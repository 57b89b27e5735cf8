/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);
#define _cleanup_json_ _cleanup_(json_object_putp)

/* JSON integers that fit in 0..UINT64_MAX, exactly (json-c keeps values above INT64_MAX as uint64);
 * -EBADMSG for anything else. */
int json_get_u64(json_object *v, uint64_t *ret);
/* The same for the member 'key' of object 'o'; -EBADMSG when it is missing. */
int json_member_u64(json_object *o, const char *key, uint64_t *ret);

/* What a JSON document from an untrusted peer (QEMU, libvirt's relay of its events) may cost. json-c
 * spends up to a few hundred bytes on each value (an object's hash table, an array's slots): a 1 MiB
 * QMP message of "[{},{},..." held 270 MiB while incomplete. What the daemon reads holds a few dozen
 * values (the greeting, guest stats, events) at a depth of at most 4. */
#define JSON_MAX_DEPTH 16
#define JSON_MAX_VALUES 1024

/* A cheap pre-scan of a document fed in pieces, before json_tokener sees them: it tracks strings and
 * brackets and counts '{', '[' and ',' outside strings, an upper bound on the values json-c allocates
 * (each value but a container's first is preceded by one of them). Zero-initialise; reset after each
 * document. */
typedef struct JsonScan {
        unsigned depth;
        size_t values;
        bool in_string, escape;
} JsonScan;

/* Scans up to n bytes. Returns 1 with *ret_used the bytes up to and including the bracket closing the
 * top-level container, 0 with *ret_used = n when it does not close within them, -E2BIG when the
 * document nests deeper than JSON_MAX_DEPTH or holds more than JSON_MAX_VALUES values. Anything else
 * wrong with the JSON is left to json_tokener. */
int json_scan(JsonScan *s, const char *buf, size_t n, size_t *ret_used);

/* Parses one whole document from an untrusted peer within the bounds above: -E2BIG beyond them,
 * -EBADMSG when it is not exactly one JSON value (surrounding whitespace is fine), -ENOMEM. "null" gives
 * *ret = NULL. */
int json_parse_untrusted(const char *s, json_object **ret);
