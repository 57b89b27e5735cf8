/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

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
