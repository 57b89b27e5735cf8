/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>

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
