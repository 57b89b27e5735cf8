/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* A configuration file: [Daemon] and [VM] sections, then the cross-key checks. The file is written by
 * root, but a parser that crashes on a typo takes the daemon down with it. config_parse_file() reads a
 * path: the input goes through a memfd. */

#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_close_ int fd = -EBADF;
        char path[64];

        fuzz_setup_logging();
        fd = memfd_create("fuzz-config", MFD_CLOEXEC);
        if (fd < 0 || write(fd, data, size) != (ssize_t) size || config_new(&c) < 0)
                return 0;
        (void) snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        if (config_parse_file(c, path) >= 0)
                (void) config_validate(c, "fuzz");
        return 0;
}
