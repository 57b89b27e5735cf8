/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "cgroup.h"

/* Single-value and key-value cgroup files are small; memory.stat is a few KiB. */
#define CG_VALUE_MAX 4096
#define CG_STAT_MAX (64 * 1024)

static void closedirp(DIR **d) {
        if (*d)
                (void) closedir(*d);
}

int cg_open_root(const char *path, int *ret_fd) {
        int fd;

        fd = open(path, O_RDONLY|O_DIRECTORY|O_CLOEXEC);
        if (fd < 0)
                return -errno;

        *ret_fd = fd;
        return 0;
}

int cg_check_cgroup2(int root_fd, bool allow_plain_dir) {
        struct statfs sfs;
        struct stat st;

        if (fstatfs(root_fd, &sfs) < 0)
                return -errno;
        if (sfs.f_type == CGROUP2_SUPER_MAGIC)
                return 0;
        if (!allow_plain_dir)
                return -ENOMEDIUM;

        if (fstat(root_fd, &st) < 0)
                return -errno;
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static bool vm_name_is_valid(const char *s) {
        size_t l = s ? strlen(s) : 0;
        return l > 0 && l <= VM_NAME_MAX &&
                strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") == l;
}

bool domain_vm_name_is_valid(const char *s) {
        size_t l = strlen(s);

        if (l == 0 || l > DOMAIN_VM_NAME_MAX || s[0] == ' ' || s[l - 1] == ' ')
                return false;
        for (; *s; s++)
                if ((unsigned char) *s < ' ' || *s == 0x7f || *s == '/')
                        return false;
        return true;
}

/* systemd's unit-name unescaping: "\xNN" is the byte NN ("instance\x2d0000002a" -> "instance-0000002a");
 * -EINVAL on a malformed escape. */
static int unit_name_unescape(const char *s, size_t len, char **ret) {
        _cleanup_free_ char *out = malloc(len + 1);
        size_t k = 0;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                unsigned v;

                if (s[i] != '\\') {
                        out[k++] = s[i];
                        continue;
                }
                if (i + 3 >= len + 0 || s[i + 1] != 'x' || !isxdigit((unsigned char) s[i + 2]) ||
                    !isxdigit((unsigned char) s[i + 3]) || sscanf(s + i + 2, "%2x", &v) != 1 || v == 0)
                        return -EINVAL;
                out[k++] = (char) v;
                i += 3;
        }
        out[k] = 0;
        *ret = TAKE_PTR(out);
        return 0;
}

/* "a.slice/balloon.slice" -> "balloon-": systemd names a child slice by its parent's unit name, a
 * dash and the child's own part. */
static int slice_child_prefix(const char *parent_slice, char **ret) {
        const char *base, *e;
        char *p;

        base = strrchr(parent_slice, '/');
        base = base ? base + 1 : parent_slice;
        e = strrchr(base, '.');
        if (!e || e == base || !streq(e, ".slice"))
                return -EINVAL;

        if (asprintf(&p, "%.*s-", (int) (e - base), base) < 0)
                return -ENOMEM;
        *ret = p;
        return 0;
}

static int cmp_strp(const void *a, const void *b) {
        return strcmp(*(char * const *) a, *(char * const *) b);
}

/* "balloon-web.slice" with prefix "balloon-" -> "web"; -EINVAL when it is no VM slice. 'domain': the
 * slice of a libvirt domain, whose name systemd escaped ("balloon-instance\x2d0000002a.slice");
 * otherwise a QMP VM's, named as autoballoon-run names it. */
static int slice_vm_name(const char *prefix, const char *component, size_t len, bool domain, char **ret) {
        const char *vm = startswith(component, prefix), *suffix = ".slice";
        _cleanup_free_ char *name = NULL;
        size_t sl = strlen(suffix);
        int r;

        if (!vm || len < (size_t) (vm - component) + sl || strncmp(component + len - sl, suffix, sl) != 0)
                return -EINVAL;
        if (domain) {
                r = unit_name_unescape(vm, component + len - sl - vm, &name);
                if (r < 0)
                        return r;
        } else {
                name = strndup(vm, component + len - sl - vm);
                if (!name)
                        return -ENOMEM;
        }
        /* A '-' left unescaped is a deeper slice to systemd. */
        if (domain ? !domain_vm_name_is_valid(name) || memchr(vm, '-', component + len - sl - vm) :
                     !vm_name_is_valid(name))
                return -EINVAL;
        *ret = TAKE_PTR(name);
        return 0;
}

int cg_list_vms(int root_fd, const char *parent_slice, char ***ret_names) {
        _cleanup_free_ char *prefix = NULL;
        _cleanup_strv_free_ char **names = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        size_t n = 0;
        int fd, r;

        r = slice_child_prefix(parent_slice, &prefix);
        if (r < 0)
                return r;

        fd = openat(root_fd, parent_slice, O_RDONLY|O_DIRECTORY|O_CLOEXEC);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d) {
                r = -errno;
                (void) safe_close(fd);
                return r;
        }

        names = new0(char *, 1);
        if (!names)
                return -ENOMEM;

        for (;;) {
                _cleanup_free_ char *name = NULL;
                struct dirent *de;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                return -errno;
                        break;
                }

                r = slice_vm_name(prefix, de->d_name, strlen(de->d_name), false, &name);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        continue;

                if (de->d_type == DT_UNKNOWN) {
                        struct stat st;
                        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                continue; /* gone meanwhile */
                        if (!S_ISDIR(st.st_mode))
                                continue;
                } else if (de->d_type != DT_DIR)
                        continue;

                char **l = reallocarray(names, n + 2, sizeof(char *));
                if (!l)
                        return -ENOMEM;
                names = l;
                names[n++] = TAKE_PTR(name);
                names[n] = NULL;
        }

        qsort(names, n, sizeof(char *), cmp_strp);
        *ret_names = TAKE_PTR(names);
        return (int) n;
}

int cg_vm_path(const char *parent_slice, const char *vm, char **ret) {
        _cleanup_free_ char *prefix = NULL;
        char *p;
        int r;

        if (!vm_name_is_valid(vm))
                return -EINVAL;
        r = slice_child_prefix(parent_slice, &prefix);
        if (r < 0)
                return r;

        if (asprintf(&p, "%s/%s%s.slice", parent_slice, prefix, vm) < 0)
                return -ENOMEM;
        *ret = p;
        return 0;
}

/* "cgpath/file" relative to the root fd, or just "file" for the root cgroup itself. */
static int cg_file_path(const char *cgpath, const char *file, char **ret) {
        char *p;

        if (!file || !*file || strchr(file, '/'))
                return -EINVAL;
        if (!cgpath || !*cgpath)
                p = strdup(file);
        else if (asprintf(&p, "%s/%s", cgpath, file) < 0)
                p = NULL;
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

static int cg_read_file(int root_fd, const char *cgpath, const char *file, size_t max_size, char **ret) {
        _cleanup_free_ char *p = NULL;
        int r;

        r = cg_file_path(cgpath, file, &p);
        if (r < 0)
                return r;
        return read_full_file_at(root_fd, p, max_size, ret, NULL);
}

int cg_read_u64(int root_fd, const char *cgpath, const char *file, uint64_t *ret) {
        _cleanup_free_ char *text = NULL;
        size_t l;
        int r;

        r = cg_read_file(root_fd, cgpath, file, CG_VALUE_MAX, &text);
        if (r < 0)
                return r;

        l = strlen(text);
        if (l > 0 && text[l - 1] == '\n')
                text[l - 1] = 0;

        if (streq(text, "max")) {
                *ret = SIZE_UNLIMITED;
                return 0;
        }
        return safe_atou64(text, ret) < 0 ? -EBADMSG : 0;
}

int cg_write_u64(int root_fd, const char *cgpath, const char *file, uint64_t value) {
        _cleanup_free_ char *p = NULL;
        char buf[32];
        int r;

        r = cg_file_path(cgpath, file, &p);
        if (r < 0)
                return r;

        if (value == SIZE_UNLIMITED)
                strcpy(buf, "max");
        else
                (void) snprintf(buf, sizeof buf, "%" PRIu64, value);

        return write_string_file_at(root_fd, p, buf);
}

typedef struct MemoryStatParse {
        CgMemoryStat stat;
        bool has_anon, has_file;
} MemoryStatParse;

static int memory_stat_item(const char *key, uint64_t value, void *userdata) {
        MemoryStatParse *m = userdata;

        if (streq(key, "anon")) {
                m->stat.anon = value;
                m->has_anon = true;
        } else if (streq(key, "file")) {
                m->stat.file = value;
                m->has_file = true;
        } else if (streq(key, "shmem"))
                m->stat.shmem = value;
        else if (streq(key, "workingset_refault_file"))
                m->stat.workingset_refault_file = value;
        else if (streq(key, "pgscan"))
                m->stat.pgscan = value;
        return 0;
}

int cg_read_memory_stat(int root_fd, const char *cgpath, CgMemoryStat *ret) {
        _cleanup_free_ char *text = NULL;
        MemoryStatParse m = {};
        int r;

        r = cg_read_file(root_fd, cgpath, "memory.stat", CG_STAT_MAX, &text);
        if (r < 0)
                return r;

        r = parse_key_values(text, memory_stat_item, &m);
        if (r < 0)
                return r;
        /* Every cgroup v2 kernel has these two; without them this is not a memory.stat. */
        if (!m.has_anon || !m.has_file)
                return -EBADMSG;

        *ret = m.stat;
        return 0;
}

static int events_item(const char *key, uint64_t value, void *userdata) {
        int *populated = userdata;

        if (streq(key, "populated")) {
                if (value > 1)
                        return -EBADMSG;
                *populated = (int) value;
        }
        return 0;
}

int cg_read_populated(int root_fd, const char *cgpath, bool *ret) {
        _cleanup_free_ char *text = NULL;
        int populated = -1, r;

        r = cg_read_file(root_fd, cgpath, "cgroup.events", CG_VALUE_MAX, &text);
        if (r < 0)
                return r;

        r = parse_key_values(text, events_item, &populated);
        if (r < 0)
                return r;
        if (populated < 0)
                return -EBADMSG;

        *ret = populated;
        return 0;
}

int cg_open_file(int root_fd, const char *cgpath, const char *file, int flags, int *ret_fd) {
        _cleanup_free_ char *p = NULL;
        int fd, r;

        r = cg_file_path(cgpath, file, &p);
        if (r < 0)
                return r;

        fd = openat(root_fd, p, flags|O_CLOEXEC|O_NOCTTY);
        if (fd < 0)
                return -errno;
        *ret_fd = fd;
        return 0;
}

int cg_hierarchy_path(const char *mountinfo, const char *dir, char **ret) {
        _cleanup_free_ char *text = strdup(mountinfo), *best_root = NULL;
        const char *rest = NULL;
        size_t best = 0;

        if (!text)
                return -ENOMEM;
        for (char *line = text, *next; line && *line; line = next) {
                char *dash, root[PATH_MAX], point[PATH_MAX], fstype[64];
                const char *below;

                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                dash = strstr(line, " - ");
                if (!dash || sscanf(line, "%*s %*s %*s %4095s %4095s", root, point) != 2 ||
                    sscanf(dash, " - %63s", fstype) != 1 || !streq(fstype, "cgroup2"))
                        continue;
                /* The longest mount point that is dir or a parent directory of it. */
                below = streq(point, "/") ? dir : startswith(dir, point);
                if (!below || (*below && *below != '/' && !streq(point, "/")) || strlen(point) < best)
                        continue;
                char *r = strdup(root);
                if (!r)
                        return -ENOMEM;
                free(best_root);
                best_root = r;
                best = strlen(point);
                rest = dir + (streq(point, "/") ? 0 : best);
        }
        if (!best_root)
                return -ENOENT;

        rest += strspn(rest, "/");
        char *p;
        if (asprintf(&p, "%s%s%s", best_root, streq(best_root, "/") || !*rest ? "" : "/", rest) < 0)
                return -ENOMEM;
        *ret = p;
        return 0;
}

int cg_proc_cgroup_path(const char *text, char **ret) {
        for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
                const char *p = startswith(line, "0::");
                if (!p)
                        continue;
                char *s = strndup(p, strcspn(p, "\n"));
                if (!s)
                        return -ENOMEM;
                *ret = s;
                return 0;
        }
        return -ENOENT;
}

int cg_path_below(const char *root, const char *path, char **ret) {
        const char *rest = streq(root, "/") ? path : startswith(path, root);

        if (!rest || (*rest && *rest != '/'))
                return -EXDEV;
        char *s = strdup(rest + strspn(rest, "/"));
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* The longest unit name systemd accepts (its UNIT_NAME_MAX less the NUL). */
#define UNIT_NAME_MAX 255

/* systemd's unit-name escaping of one name, as libvirt applies it to <partition> components: letters,
 * digits, ':', '_' and '.' (not leading) stay, every other byte is "\xNN". */
static int unit_name_escape(const char *s, size_t len, char **ret) {
        char *out = malloc(len * 4 + 1), *o = out;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) s[i];
                if ((isascii(c) && isalnum(c)) || c == ':' || c == '_' || (c == '.' && i > 0))
                        *o++ = (char) c;
                else
                        o += sprintf(o, "\\x%02x", c);
        }
        *o = 0;
        *ret = out;
        return 0;
}

int cg_partition_path(const char *partition, char **ret) {
        _cleanup_free_ char *out = NULL, *unit = NULL;
        size_t n = 0;
        int r;

        if (partition[0] != '/')
                return -EINVAL;
        for (const char *p = partition + 1; *p; ) {
                _cleanup_free_ char *name = NULL, *escaped = NULL;
                size_t l = strcspn(p, "/");
                char *u, *o;

                name = strndup(p, l);
                if (!name)
                        return -ENOMEM;
                if (!domain_vm_name_is_valid(name) || streq(name, ".") || streq(name, ".."))
                        return -EINVAL;
                r = unit_name_escape(p, l, &escaped);
                if (r < 0)
                        return r;
                /* systemd's slice of "/a/b" is a.slice/a-b.slice: each name carries its parents'. A
                 * name systemd refuses cannot exist, and without this bound a few KiB of <partition>
                 * cost megabytes and seconds (the path grows with the square of the components). */
                if ((unit ? strlen(unit) + 1 : 0) + strlen(escaped) + STRLEN(".slice") > UNIT_NAME_MAX)
                        return -EINVAL;
                if (asprintf(&u, "%s%s%s", unit ?: "", unit ? "-" : "", escaped) < 0)
                        return -ENOMEM;
                free(unit);
                unit = u;
                if (asprintf(&o, "%s%s%s.slice", out ?: "", out ? "/" : "", unit) < 0)
                        return -ENOMEM;
                free(out);
                out = o;
                n++;
                p += l;
                p += strspn(p, "/");
        }
        if (n == 0)
                return -EINVAL;
        *ret = TAKE_PTR(out);
        return 0;
}

#define MACHINE_QEMU_PREFIX "machine-qemu\\x2d"
#define strneq(s, prefix) (strncmp((s), (prefix), STRLEN(prefix)) == 0)

int cg_vm_from_path(const char *parent_slice, const char *path, char **ret_cgpath, char **ret_vm) {
        _cleanup_free_ char *prefix = NULL, *cgpath = NULL, *vm = NULL;
        const char *rest = startswith(path, parent_slice);
        int r;

        r = slice_child_prefix(parent_slice, &prefix);
        if (r < 0)
                return r;

        if (rest && *rest == '/') {
                rest++;
                size_t l = strcspn(rest, "/");
                r = slice_vm_name(prefix, rest, l, true, &vm);
                if (r == -ENOMEM)
                        return r;
                if (r >= 0) {
                        cgpath = strndup(path, rest + l - path);
                        if (!cgpath)
                                return -ENOMEM;
                }
        }

        /* A VM of its own elsewhere: the scope systemd-machined gives a libvirt QEMU domain
         * (machine-qemu\x2d1\x2dweb.scope), or libvirt's qemu-1-web.libvirt-qemu without systemd.
         * QEMU's threads live in children of it. Any other scope is not a VM's: a session libvirtd's
         * domain may sit in the user's login session, whose memory.high is not ours to set. */
        for (const char *p = path; !cgpath && *p; ) {
                size_t l = strcspn(p, "/");
                if ((l > STRLEN(MACHINE_QEMU_PREFIX ".scope") && strneq(p, MACHINE_QEMU_PREFIX) &&
                     strncmp(p + l - 6, ".scope", 6) == 0) ||
                    (l > 13 && strncmp(p + l - 13, ".libvirt-qemu", 13) == 0)) {
                        cgpath = strndup(path, p + l - path);
                        if (!cgpath)
                                return -ENOMEM;
                }
                p += l;
                p += strspn(p, "/");
        }
        if (!cgpath)
                return -ENXIO;

        *ret_cgpath = TAKE_PTR(cgpath);
        if (ret_vm)
                *ret_vm = TAKE_PTR(vm);
        return 0;
}
