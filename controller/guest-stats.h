/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

#include "policy.h"

/* What a guest tells of its memory, whichever way it comes (QMP, libvirt): the virtio-balloon stats
 * and the guest pressure messages the patched device forwards, with their JSON parsers. The guest is untrusted: the
 * parsers take only well-formed values and vm.c bounds what it derives from them. */

/* Guest statistics as reported by the virtio-balloon stats queue, in bytes where the stat is an
 * amount of memory. A stat the guest does not report is absent from 'valid'. */
typedef enum GuestStat {
        GUEST_STAT_SWAP_IN,
        GUEST_STAT_SWAP_OUT,
        GUEST_STAT_MAJOR_FAULTS,
        GUEST_STAT_MINOR_FAULTS,
        GUEST_STAT_FREE_MEMORY,
        GUEST_STAT_TOTAL_MEMORY,
        GUEST_STAT_AVAILABLE_MEMORY,
        GUEST_STAT_DISK_CACHES,
        GUEST_STAT_HTLB_PGALLOC,
        GUEST_STAT_HTLB_PGFAIL,
        /* Linux >= 6.12 guests, QEMU >= 9.1 */
        GUEST_STAT_OOM_KILLS,
        GUEST_STAT_ALLOC_STALLS,
        GUEST_STAT_ASYNC_SCANS,
        GUEST_STAT_DIRECT_SCANS,
        GUEST_STAT_ASYNC_RECLAIMS,
        GUEST_STAT_DIRECT_RECLAIMS,
        _GUEST_STAT_MAX,
} GuestStat;

typedef struct GuestStats {
        uint64_t value[_GUEST_STAT_MAX];
        uint32_t valid;        /* bit (1 << GuestStat) */
        uint64_t last_update;  /* seconds since the epoch, from QEMU; 0 when the guest never reported */
} GuestStats;

static inline bool guest_stat_valid(const GuestStats *s, GuestStat i) {
        return s->valid & (UINT32_C(1) << i);
}

/* "stat-free-memory" -> GUEST_STAT_FREE_MEMORY; -1 for unknown names. */
int guest_stat_from_name(const char *name);
const char *guest_stat_to_name(GuestStat i);

/* Parses the result of "qom-get <balloon> guest-stats": {"stats": {...}, "last-update": N}. QEMU's
 * 18446744073709551615 means "not reported" and leaves the stat invalid. -EBADMSG when malformed. */
int guest_stats_parse(json_object *result, GuestStats *ret);

/* A guest pressure message, as the device forwards it. The device decides nothing and the event says
 * nothing of the balloon: the policy decides. */
typedef struct GuestPressureEvent {
        GuestPressureLevel level;
        uint64_t size;          /* bytes the guest estimates it lacks; 0: no estimate. A hint only */
} GuestPressureEvent;

/* Parses the data of the BALLOON_GUEST_PRESSURE event, as QEMU sends it and libvirt relays it:
 * {"level": "low"|"medium"|"critical", "size": N}. -EOPNOTSUPP for a level this daemon does not know
 * (a newer QEMU's), -EBADMSG when malformed. */
int guest_pressure_parse(json_object *data, GuestPressureEvent *ret);
