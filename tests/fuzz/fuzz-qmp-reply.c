/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* One JSON document through json_parse_untrusted() (libvirt's event details take that path), then
 * through each parser of what QEMU and the guest say: query-balloon, the guest stats, the
 * BALLOON_GUEST_PRESSURE and BALLOON_CHANGE events. Each gets the document itself and its "return" and
 * "data" members, as the QMP client hands them over. */

#include "fuzz.h"
#include "guest-stats.h"
#include "json-util.h"
#include "qmp.h"

static void parse_all(json_object *o) {
        GuestPressureEvent e;
        GuestStats st;
        uint64_t u;

        (void) qmp_parse_query_balloon(o, &u); /* BALLOON_CHANGE's data too */
        (void) guest_stats_parse(o, &st);
        /* An accepted level is one the policy knows. */
        if (guest_pressure_parse(o, &e) >= 0 && !guest_pressure_level_to_string(e.level))
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = fuzz_string(data, size);
        _cleanup_json_ json_object *o = NULL;
        json_object *v;

        fuzz_setup_logging();
        if (!s || json_parse_untrusted(s, &o) < 0)
                return 0;
        parse_all(o);
        if (json_object_object_get_ex(o, "return", &v))
                parse_all(v);
        if (json_object_object_get_ex(o, "data", &v))
                parse_all(v);
        return 0;
}
