/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* libFuzzer calls this with each input; the target returns 0 whatever the parser said. A crash, a
 * sanitizer report or a leak is the finding. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The parsers log what they reject; that would drown libFuzzer's output. AUTOBALLOON_FUZZ_LOG=1 keeps
 * it, to see why an input is refused. */
static inline void fuzz_setup_logging(void) {
        log_setup(LOG_TARGET_STDERR, getenv("AUTOBALLOON_FUZZ_LOG") ? LOG_DEBUG : LOG_CRIT);
}

/* The input as a C string, as the parsers of text take it; NULL when out of memory. */
static inline char *fuzz_string(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);

        if (s) {
                memcpy(s, data, size);
                s[size] = 0;
        }
        return s;
}
