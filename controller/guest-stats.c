/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <string.h>

#include "guest-stats.h"
#include "json-util.h"
#include "macro.h"

static const char *const guest_stat_names[_GUEST_STAT_MAX] = {
        [GUEST_STAT_SWAP_IN]          = "stat-swap-in",
        [GUEST_STAT_SWAP_OUT]         = "stat-swap-out",
        [GUEST_STAT_MAJOR_FAULTS]     = "stat-major-faults",
        [GUEST_STAT_MINOR_FAULTS]     = "stat-minor-faults",
        [GUEST_STAT_FREE_MEMORY]      = "stat-free-memory",
        [GUEST_STAT_TOTAL_MEMORY]     = "stat-total-memory",
        [GUEST_STAT_AVAILABLE_MEMORY] = "stat-available-memory",
        [GUEST_STAT_DISK_CACHES]      = "stat-disk-caches",
        [GUEST_STAT_HTLB_PGALLOC]     = "stat-htlb-pgalloc",
        [GUEST_STAT_HTLB_PGFAIL]      = "stat-htlb-pgfail",
        [GUEST_STAT_OOM_KILLS]        = "stat-oom-kills",
        [GUEST_STAT_ALLOC_STALLS]     = "stat-alloc-stalls",
        [GUEST_STAT_ASYNC_SCANS]      = "stat-async-scans",
        [GUEST_STAT_DIRECT_SCANS]     = "stat-direct-scans",
        [GUEST_STAT_ASYNC_RECLAIMS]   = "stat-async-reclaims",
        [GUEST_STAT_DIRECT_RECLAIMS]  = "stat-direct-reclaims",
};

int guest_stat_from_name(const char *name) {
        for (size_t i = 0; i < _GUEST_STAT_MAX; i++)
                if (streq_ptr(guest_stat_names[i], name))
                        return (int) i;
        return -1;
}

const char *guest_stat_to_name(GuestStat i) {
        if ((unsigned) i >= _GUEST_STAT_MAX)
                return NULL;
        return guest_stat_names[i];
}

int guest_stats_parse(json_object *result, GuestStats *ret) {
        GuestStats s = {};
        json_object *stats, *v;
        int r;

        if (!json_object_is_type(result, json_type_object) ||
            !json_object_object_get_ex(result, "stats", &stats) ||
            !json_object_is_type(stats, json_type_object) ||
            !json_object_object_get_ex(result, "last-update", &v))
                return -EBADMSG;
        r = json_get_u64(v, &s.last_update);
        if (r < 0)
                return r;

        json_object_object_foreach(stats, name, value) {
                int i = guest_stat_from_name(name);
                uint64_t x;

                if (i < 0)
                        continue; /* a stat from a newer QEMU */
                r = json_get_u64(value, &x);
                if (r < 0)
                        return r;
                if (x == UINT64_MAX)
                        continue; /* the guest does not report it */
                s.value[i] = x;
                s.valid |= UINT32_C(1) << i;
        }

        *ret = s;
        return 0;
}

int guest_pressure_parse(json_object *data, GuestPressureEvent *ret) {
        GuestPressureEvent e = {};
        json_object *level;
        const char *name;
        int i;

        if (json_member_u64(data, "size", &e.size) < 0 ||
            !json_object_object_get_ex(data, "level", &level) || !json_object_is_type(level, json_type_string))
                return -EBADMSG;
        name = json_object_get_string(level);
        if (strlen(name) != (size_t) json_object_get_string_len(level))
                return -EBADMSG;
        i = guest_pressure_level_from_string(name);
        if (i < 0)
                return -EOPNOTSUPP;
        e.level = (GuestPressureLevel) i;
        *ret = e;
        return 0;
}
