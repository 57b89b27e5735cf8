/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* One line of a --record trace, as ab-replay reads it back. */

#include "fuzz.h"
#include "macro.h"
#include "trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = fuzz_string(data, size);
        TraceRecord r;

        fuzz_setup_logging();
        if (s && trace_parse(s, &r) >= 0)
                trace_record_done(&r);
        return 0;
}
