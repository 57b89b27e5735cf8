/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The cgroup paths the daemon takes from outside: /proc/self/mountinfo and /proc/<pid>/cgroup text, a
 * libvirt <partition> (domain XML, so whoever defines the domain) and the process cgroup of a domain's
 * QEMU. The input is also split at its first newline into two hierarchy paths for cg_path_below(). */

#include "cgroup.h"
#include "fuzz.h"
#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = fuzz_string(data, size);
        char *path, *vm, *nl;

        fuzz_setup_logging();
        if (!s)
                return 0;

        if (cg_hierarchy_path(s, "/sys/fs/cgroup", &path) >= 0)
                free(path);
        if (cg_proc_cgroup_path(s, &path) >= 0)
                free(path);
        if (cg_partition_path(s, &path) >= 0)
                free(path);
        if (cg_vm_from_path("balloon.slice", s, &path, &vm) >= 0) {
                free(path);
                free(vm);
        }

        nl = strchr(s, '\n');
        if (nl) {
                *nl = 0;
                if (cg_path_below(s, nl + 1, &path) >= 0)
                        free(path);
        }
        return 0;
}
