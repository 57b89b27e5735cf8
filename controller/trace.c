/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <limits.h>
#include <stddef.h>

#include "macro.h"
#include "json-util.h"
#include "trace.h"

/* One table per struct, read by both directions, so the format has a single definition. */

typedef enum FieldType {
        FIELD_U64,
        FIELD_UNSIGNED,
        FIELD_INT,
        FIELD_BOOL,
        FIELD_DOUBLE,
        FIELD_STRING, /* const char *, may be NULL (JSON null) */
        FIELD_MODE,   /* PolicyMode, by name */
} FieldType;

typedef struct Field {
        const char *name;
        FieldType type;
        size_t offset;
} Field;

#define FIELD(s, f, t) { #f, t, offsetof(s, f) }
/* PolicyVM.carry's fields, flat in the VM's object as they were before they had a struct of their
 * own: traces recorded then still read. */
#define CARRY_FIELD(f, t) { #f, t, offsetof(PolicyVM, carry.f) }

static const Field params_fields[] = {
        FIELD(PolicyParams, mode, FIELD_MODE),
        FIELD(PolicyParams, host_reserve, FIELD_U64),
        FIELD(PolicyParams, reclaim_step, FIELD_U64),
        FIELD(PolicyParams, reclaim_settle_usec, FIELD_U64),
        FIELD(PolicyParams, tax_rate, FIELD_DOUBLE),
        FIELD(PolicyParams, hysteresis_usec, FIELD_U64),
        FIELD(PolicyParams, max_step, FIELD_U64),
        FIELD(PolicyParams, max_rate, FIELD_U64),
        FIELD(PolicyParams, deflate_step, FIELD_U64),
        FIELD(PolicyParams, guest_swapin_rate, FIELD_U64),
        FIELD(PolicyParams, guest_major_fault_rate, FIELD_U64),
        FIELD(PolicyParams, memory_high_overhead, FIELD_U64),
        FIELD(PolicyParams, stall_usec, FIELD_U64),
        FIELD(PolicyParams, stall_backoff_usec, FIELD_U64),
        FIELD(PolicyParams, refill_margin, FIELD_U64),
        FIELD(PolicyParams, refill_settle_usec, FIELD_U64),
        FIELD(PolicyParams, refill_delay_usec, FIELD_U64),
        FIELD(PolicyParams, refill_rate, FIELD_U64),
        FIELD(PolicyParams, idle_reclaim_rate, FIELD_U64),
};

static const Field host_fields[] = {
        FIELD(PolicyHost, now_usec, FIELD_U64),
        FIELD(PolicyHost, total, FIELD_U64),
        FIELD(PolicyHost, available, FIELD_U64),
        FIELD(PolicyHost, pressure, FIELD_BOOL),
        FIELD(PolicyHost, last_reclaim_usec, FIELD_U64),
        FIELD(PolicyHost, last_cycle_usec, FIELD_U64),
        FIELD(PolicyHost, last_pressure_usec, FIELD_U64),
        FIELD(PolicyHost, scanned, FIELD_U64),
};

static const Field vm_fields[] = {
        FIELD(PolicyVM, name, FIELD_STRING),
        FIELD(PolicyVM, weight, FIELD_U64),
        FIELD(PolicyVM, min, FIELD_U64),
        FIELD(PolicyVM, max, FIELD_U64),
        FIELD(PolicyVM, actual, FIELD_U64),
        FIELD(PolicyVM, target, FIELD_U64),
        FIELD(PolicyVM, memory_high_known, FIELD_BOOL),
        FIELD(PolicyVM, memory_high, FIELD_U64),
        FIELD(PolicyVM, memory_current, FIELD_U64),
        FIELD(PolicyVM, slice_cache, FIELD_U64),
        FIELD(PolicyVM, has_stats, FIELD_BOOL),
        FIELD(PolicyVM, guest_available, FIELD_U64),
        FIELD(PolicyVM, guest_free, FIELD_U64),
        FIELD(PolicyVM, guest_free_recent, FIELD_U64),
        FIELD(PolicyVM, guest_growth, FIELD_U64),
        FIELD(PolicyVM, guest_reserve, FIELD_U64),
        FIELD(PolicyVM, guest_min_available, FIELD_U64),
        FIELD(PolicyVM, swap_in_rate, FIELD_U64),
        FIELD(PolicyVM, major_fault_rate, FIELD_U64),
        FIELD(PolicyVM, alloc_stalls, FIELD_U64),
        FIELD(PolicyVM, direct_reclaims, FIELD_U64),
        FIELD(PolicyVM, oom_kills, FIELD_U64),
        FIELD(PolicyVM, pressure_event, FIELD_BOOL),
        FIELD(PolicyVM, pressure_event_level, FIELD_INT),
        FIELD(PolicyVM, pressure_event_size, FIELD_U64),
        FIELD(PolicyVM, pressure_event_count, FIELD_U64),
        FIELD(PolicyVM, slice_pressure, FIELD_BOOL),
        CARRY_FIELD(hysteresis_until_usec, FIELD_U64),
        CARRY_FIELD(backoff_until_usec, FIELD_U64),
        CARRY_FIELD(stall_count, FIELD_UNSIGNED),
        FIELD(PolicyVM, last_progress_usec, FIELD_U64),
        CARRY_FIELD(last_inflate_usec, FIELD_U64),
        CARRY_FIELD(last_refill_usec, FIELD_U64),
};

static int add_field(json_object *o, const Field *f, const void *base) {
        const void *p = (const uint8_t *) base + f->offset;
        json_object *v = NULL;

        switch (f->type) {
        case FIELD_U64:
                v = json_object_new_uint64(*(const uint64_t *) p);
                break;
        case FIELD_UNSIGNED:
                v = json_object_new_uint64(*(const unsigned *) p);
                break;
        case FIELD_INT:
                v = json_object_new_int(*(const int *) p);
                break;
        case FIELD_BOOL:
                v = json_object_new_boolean(*(const bool *) p);
                break;
        case FIELD_DOUBLE:
                v = json_object_new_double(*(const double *) p);
                break;
        case FIELD_STRING:
                if (!*(const char * const *) p)
                        return json_object_object_add(o, f->name, NULL) < 0 ? -ENOMEM : 0;
                v = json_object_new_string(*(const char * const *) p);
                break;
        case FIELD_MODE:
                v = json_object_new_string(policy_mode_to_string(*(const PolicyMode *) p) ?: "unknown");
                break;
        }
        if (!v || json_object_object_add(o, f->name, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int new_struct(const Field *fields, size_t n, const void *base, json_object **ret) {
        _cleanup_json_ json_object *o = json_object_new_object();
        int r;

        if (!o)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                r = add_field(o, fields + i, base);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(o);
        return 0;
}

/* Adds a new object under 'key' (NULL: its allocation failed), consuming it even on failure. */
static int add_object(json_object *o, const char *key, json_object *v) {
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int trace_build(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n,
                       json_object **ret) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *v, *a;
        int r;

        if (!o)
                return -ENOMEM;
        r = add_object(o, "version", json_object_new_int(TRACE_VERSION));
        if (r < 0)
                return r;
        r = new_struct(params_fields, ELEMENTSOF(params_fields), p, &v);
        if (r < 0 || (r = add_object(o, "params", v)) < 0)
                return r;
        r = new_struct(host_fields, ELEMENTSOF(host_fields), host, &v);
        if (r < 0 || (r = add_object(o, "host", v)) < 0)
                return r;

        a = json_object_new_array_ext((int) MIN(n, (size_t) INT_MAX));
        r = add_object(o, "vms", a);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                r = new_struct(vm_fields, ELEMENTSOF(vm_fields), vms + i, &v);
                if (r < 0)
                        return r;
                if (json_object_array_add(a, v) < 0) {
                        json_object_put(v);
                        return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(o);
        return 0;
}

int trace_format(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n, char **ret) {
        _cleanup_json_ json_object *o = NULL;
        char *s;
        int r;

        r = trace_build(p, host, vms, n, &o);
        if (r < 0)
                return r;
        s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int trace_write(FILE *f, const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n) {
        _cleanup_json_ json_object *o = NULL;
        const char *s;
        int r;

        r = trace_build(p, host, vms, n, &o);
        if (r < 0)
                return r;
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        if (!s)
                return -ENOMEM;
        if (fputs(s, f) < 0 || fputc('\n', f) < 0 || fflush(f) != 0)
                return negative_errno();
        return 0;
}

static bool get_u64(json_object *v, uint64_t max, uint64_t *ret) {
        if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
                return false;
        uint64_t u = json_object_get_uint64(v);
        if (u > max)
                return false;
        *ret = u;
        return true;
}

static int parse_field(json_object *v, const Field *f, void *base) {
        void *p = (uint8_t *) base + f->offset;
        PolicyMode mode;
        uint64_t u;

        switch (f->type) {
        case FIELD_U64:
                if (!get_u64(v, UINT64_MAX, &u))
                        return -EBADMSG;
                *(uint64_t *) p = u;
                return 0;
        case FIELD_UNSIGNED:
                if (!get_u64(v, UINT_MAX, &u))
                        return -EBADMSG;
                *(unsigned *) p = (unsigned) u;
                return 0;
        case FIELD_INT:
                if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < INT_MIN ||
                    json_object_get_int64(v) > INT_MAX)
                        return -EBADMSG;
                *(int *) p = (int) json_object_get_int64(v);
                return 0;
        case FIELD_BOOL:
                if (!json_object_is_type(v, json_type_boolean))
                        return -EBADMSG;
                *(bool *) p = json_object_get_boolean(v);
                return 0;
        case FIELD_DOUBLE:
                if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
                        return -EBADMSG;
                *(double *) p = json_object_get_double(v);
                return 0;
        case FIELD_STRING:
                if (!v) {
                        *(const char **) p = NULL;
                        return 0;
                }
                if (!json_object_is_type(v, json_type_string))
                        return -EBADMSG;
                *(const char **) p = json_object_get_string(v);
                return 0;
        case FIELD_MODE:
                if (!json_object_is_type(v, json_type_string) ||
                    policy_mode_from_string(json_object_get_string(v), &mode) < 0)
                        return -EBADMSG;
                *(PolicyMode *) p = mode;
                return 0;
        }
        return -EINVAL;
}

static int parse_struct(json_object *o, const Field *fields, size_t n, void *base) {
        json_object *v;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                if (!json_object_object_get_ex(o, fields[i].name, &v))
                        continue;
                if (!v && fields[i].type != FIELD_STRING)
                        return -EBADMSG;
                r = parse_field(v, fields + i, base);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void json_tokener_freep(json_tokener **t) {
        if (*t)
                json_tokener_free(*t);
}

int trace_parse(const char *line, TraceRecord *ret) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ PolicyVM *vms = NULL;
        json_object *version, *params, *host, *a;
        PolicyParams p = {};
        PolicyHost h = {};
        size_t n;
        int r;

        size_t l = strlen(line);
        if (l > INT_MAX)
                return -EBADMSG;
        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
        o = json_tokener_parse_ex(tok, line, (int) l);
        /* One object, then at most the newline. */
        if (!o || strspn(line + json_tokener_get_parse_end(tok), "\r\n") != l - json_tokener_get_parse_end(tok) ||
            !json_object_object_get_ex(o, "version", &version) ||
            !json_object_is_type(version, json_type_int) || json_object_get_int(version) != TRACE_VERSION ||
            !json_object_object_get_ex(o, "params", &params) || !json_object_object_get_ex(o, "host", &host) ||
            !json_object_object_get_ex(o, "vms", &a) || !json_object_is_type(a, json_type_array))
                return -EBADMSG;

        r = parse_struct(params, params_fields, ELEMENTSOF(params_fields), &p);
        if (r < 0)
                return r;
        r = parse_struct(host, host_fields, ELEMENTSOF(host_fields), &h);
        if (r < 0)
                return r;

        n = json_object_array_length(a);
        vms = new0(PolicyVM, n);
        if (!vms)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                r = parse_struct(json_object_array_get_idx(a, i), vm_fields, ELEMENTSOF(vm_fields), vms + i);
                if (r < 0)
                        return r;
        }

        *ret = (TraceRecord) {
                .params = p,
                .host = h,
                .vms = TAKE_PTR(vms),
                .n_vms = n,
                .json = TAKE_PTR(o),
        };
        return 0;
}

void trace_record_done(TraceRecord *r) {
        free(r->vms);
        json_object_put(r->json);
        *r = (TraceRecord) {};
}
