/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Bytes from a QMP socket through the message splitter, cut into reads of one size, under a message
 * cap small enough to be reached. The first two bytes choose the read size and the cap; the messages
 * that come out go through the reply and event parsers as the client would pass them. */

#include "fuzz.h"
#include "guest-stats.h"
#include "json-util.h"
#include "qmp.h"

static void parser_freep(QmpParser **p) {
        qmp_parser_free(*p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(parser_freep) QmpParser *p = NULL;
        json_object *o;

        fuzz_setup_logging();
        if (size < 2)
                return 0;
        size_t read_size = 1 + data[0], max_message = 64 + (size_t) data[1] * 64;
        data += 2;
        size -= 2;

        if (qmp_parser_new(max_message, &p) < 0)
                return 0;
        for (size_t i = 0; i < size; i += read_size) {
                int r = qmp_parser_feed(p, (const char *) data + i, MIN(read_size, size - i));

                while (qmp_parser_next(p, &o) > 0) {
                        _cleanup_json_ json_object *m = o;
                        GuestPressureEvent e;
                        GuestStats st;
                        json_object *v;
                        uint64_t u;

                        if (json_object_object_get_ex(m, "return", &v)) {
                                (void) qmp_parse_query_balloon(v, &u);
                                (void) guest_stats_parse(v, &st);
                        }
                        if (json_object_object_get_ex(m, "data", &v)) {
                                (void) qmp_parse_query_balloon(v, &u); /* BALLOON_CHANGE */
                                if (guest_pressure_parse(v, &e) >= 0 && !guest_pressure_level_to_string(e.level))
                                        abort();
                        }
                }
                if (r < 0)
                        break;
        }
        return 0;
}
