/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The text of a pressure file, as the kernel writes it (a cgroup's memory.pressure, /proc/pressure/memory). */

#include "fuzz.h"
#include "macro.h"
#include "psi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = fuzz_string(data, size);
        PsiStats st;

        fuzz_setup_logging();
        if (s)
                (void) psi_parse(s, &st);
        return 0;
}
