/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

/* The cgroup v2 tree is always reached through a root directory fd with openat(); no absolute
 * paths are built, so tests can point the daemon at any directory. "max" reads as SIZE_UNLIMITED. */

/* The longest slice-named VM: its QMP socket path must fit in sun_path (see config.c's RuntimeDir=). */
#define VM_NAME_MAX 32
/* libvirt domain names: anything but '/' and control characters, as libvirt allows. */
#define DOMAIN_VM_NAME_MAX 255

/* Whether 's' can name a VM at all (a libvirt domain, a [VM] section): 1 to 255 bytes, no '/', no
 * control character, no leading or trailing blank. */
bool domain_vm_name_is_valid(const char *s);

typedef struct CgMemoryStat {
        uint64_t anon;
        uint64_t file;
        uint64_t shmem;
        uint64_t workingset_refault_file;
        uint64_t pgscan;              /* pages scanned by reclaim, cumulative */
} CgMemoryStat;

/* Opens 'path' as an O_DIRECTORY|O_PATH-less read dir fd. */
int cg_open_root(const char *path, int *ret_fd);

/* Checks that 'root_fd' is a cgroup2 mount (or a directory inside one); -ENOMEDIUM if not. Test trees
 * on tmpfs are accepted when 'allow_plain_dir' is set. */
int cg_check_cgroup2(int root_fd, bool allow_plain_dir);

/* Lists VM names under the parent slice: for parent "balloon.slice", the directories
 * "balloon.slice/balloon-<vm>.slice" give "<vm>". Names must match [A-Za-z0-9_]+ (a '-' would mean a
 * deeper slice to systemd) and be at most VM_NAME_MAX long; others, and anything that is not a
 * directory, are skipped. Returns the number
 * of VMs and a NULL-terminated, sorted array of strings (free with strv_free()); -ENOENT if the parent
 * slice does not exist, -EINVAL if 'parent_slice' does not end in ".slice". */
int cg_list_vms(int root_fd, const char *parent_slice, char ***ret_names);

/* "balloon.slice" + "web" -> "balloon.slice/balloon-web.slice". */
int cg_vm_path(const char *parent_slice, const char *vm, char **ret);

/* Reads a single-value file (memory.current, memory.high, memory.max, ...): a decimal number or "max".
 * -ENOENT when the file does not exist (for example memory controller not enabled), -EBADMSG when it
 * holds anything else. */
int cg_read_u64(int root_fd, const char *cgpath, const char *file, uint64_t *ret);
/* Writes a decimal number, or "max" for SIZE_UNLIMITED. */
int cg_write_u64(int root_fd, const char *cgpath, const char *file, uint64_t value);

/* memory.stat: "key value" lines; keys not in CgMemoryStat are ignored, missing optional ones read 0.
 * -EBADMSG on a malformed line or without "anon" and "file". */
int cg_read_memory_stat(int root_fd, const char *cgpath, CgMemoryStat *ret);
/* "populated" from cgroup.events; -EBADMSG if missing or not 0/1. */
int cg_read_populated(int root_fd, const char *cgpath, bool *ret);

/* Opens a file of the cgroup at 'cgpath' ("" is the root itself). */
int cg_open_file(int root_fd, const char *cgpath, const char *file, int flags, int *ret_fd);

/* Finding a process' VM cgroup (libvirt domains):
 *
 * cg_hierarchy_path(): where directory 'dir' (a real path, e.g. the cgroup root) is in the cgroup2
 * hierarchy, from the text of /proc/self/mountinfo: "/sys/fs/cgroup" -> "/",
 * "/sys/fs/cgroup/unified/user.slice/x" -> "/user.slice/x". -ENOENT when no cgroup2 mount holds it.
 *
 * cg_proc_cgroup_path(): the path of the "0::" line of /proc/<pid>/cgroup. -ENOENT without one.
 *
 * cg_path_below(): 'path' relative to 'root' (both hierarchy paths): "" for root itself, -EXDEV when
 * it is not below.
 *
 * cg_partition_path(): a libvirt <partition> as systemd places it: "/balloon/web" ->
 * "balloon.slice/balloon-web.slice", each component escaped as a unit name ("/balloon/db-1" ->
 * "balloon.slice/balloon-db\x2d1.slice"). -EINVAL unless it is absolute with valid VM names.
 *
 * cg_vm_from_path(): the VM's cgroup for a process cgroup 'path' relative to the root: below the
 * parent slice, its balloon-<vm>.slice (and *ret_vm = "<vm>", unescaped); elsewhere the first
 * "machine-qemu\x2d*.scope" (systemd-machined's scope of a libvirt domain) or "*.libvirt-qemu" (libvirt
 * without systemd) component (*ret_vm = NULL). -ENXIO when the process has no cgroup of its own (libvirt's cgroups disabled). */
int cg_hierarchy_path(const char *mountinfo, const char *dir, char **ret);
int cg_proc_cgroup_path(const char *text, char **ret);
int cg_path_below(const char *root, const char *path, char **ret);
int cg_partition_path(const char *partition, char **ret);
int cg_vm_from_path(const char *parent_slice, const char *path, char **ret_cgpath, char **ret_vm);
