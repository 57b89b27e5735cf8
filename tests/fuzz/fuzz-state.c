/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The state file in RuntimeDir, read back at start as untrusted. What parses must format and parse
 * back to the same text: a state the daemon writes it must be able to read again. */

#include "fuzz.h"
#include "macro.h"
#include "state.h"

#define BOOT "3f2c9a4e-1b7d-4c55-9e0a-6d8b2f1c7e90"
#define NOW (UINT64_C(1000) * USEC_PER_SEC)
#define AHEAD (UINT64_C(60) * USEC_PER_SEC)

static void state_donep(State *s) {
        state_done(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(state_donep) State s = {}, again = {};
        _cleanup_free_ char *text = NULL, *text_again = NULL;
        const char *why;

        fuzz_setup_logging();
        if (state_parse((const char *) data, size, BOOT, NOW, AHEAD, &s, &why) < 0)
                return 0;
        if (state_format(&s, BOOT, &text) < 0)
                return 0;
        if (state_parse(text, strlen(text), BOOT, NOW, AHEAD, &again, &why) < 0 ||
            state_format(&again, BOOT, &text_again) < 0 || !streq(text, text_again))
                abort();
        return 0;
}
