/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <getopt.h>
#include <stdio.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>

#include "config-paths.h"
#include "log.h"
#include "manager.h"

static void help(void) {
        printf("autoballoond [OPTIONS...]\n\n"
               "Automatic, pressure-driven memory ballooning for QEMU/KVM guests in balloon slices\n"
               "and for libvirt domains.\n\n"
               "  -h --help                 Show this help\n"
               "     --version              Show the version\n"
               "     --config-dir=DIR       Configuration directory (default: %s)\n"
               "     --cgroup-root=DIR      cgroup2 mount or directory holding the parent slice\n"
               "                            (default: /sys/fs/cgroup)\n"
               "     --proc-root=DIR        procfs (default: /proc)\n"
               "     --runtime-dir=DIR      Overrides RuntimeDir= (QMP sockets are in DIR/qmp/)\n"
               "     --dry-run              Decide and log, but send no balloon command and write no\n"
               "                            cgroup file\n"
               "     --record=FILE          Append the policy's input at every decision to FILE, one\n"
               "                            JSON line each, for tests/bench/ab-replay\n"
               "     --bus=BUS              Where to offer the D-Bus API: system, session or none\n"
               "                            (default: the system bus if there is one)\n"
               "     --log-target=TARGET    auto, journal or stderr (default: auto)\n"
               "     --log-level=LEVEL      err, warning, notice, info or debug (default: info)\n"
               "\nSee autoballoond(8) and autoballoon.conf(5).\n", CONFIG_DIR);
}

static int parse_log_level(const char *s) {
        static const struct { const char *name; int level; } levels[] = {
                { "err", LOG_ERR }, { "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
                { "info", LOG_INFO }, { "debug", LOG_DEBUG },
        };
        for (size_t i = 0; i < ELEMENTSOF(levels); i++)
                if (streq(s, levels[i].name))
                        return levels[i].level;
        return -EINVAL;
}

/* About two fds per VM (its QMP socket, its slice trigger): the soft limit of 1024 systemd gives
 * services would stop a host at some 500 VMs. Only select() needs the low soft limit, and sd-event
 * uses epoll; the hard limit stays the operator's. */
static void raise_nofile_limit(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
                return;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                log_debug_errno(errno, "Cannot raise the open files limit: %m");
}

int main(int argc, char *argv[]) {
        enum {
                ARG_VERSION = 0x100, ARG_CONFIG_DIR, ARG_CGROUP_ROOT, ARG_PROC_ROOT, ARG_RUNTIME_DIR,
                ARG_DRY_RUN, ARG_LOG_TARGET, ARG_LOG_LEVEL, ARG_ALLOW_PLAIN_CGROUP_DIR, ARG_BUS, ARG_RECORD,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "config-dir", required_argument, NULL, ARG_CONFIG_DIR },
                { "cgroup-root", required_argument, NULL, ARG_CGROUP_ROOT },
                { "proc-root", required_argument, NULL, ARG_PROC_ROOT },
                { "runtime-dir", required_argument, NULL, ARG_RUNTIME_DIR },
                { "dry-run", no_argument, NULL, ARG_DRY_RUN },
                { "record", required_argument, NULL, ARG_RECORD },
                { "bus", required_argument, NULL, ARG_BUS },
                { "log-target", required_argument, NULL, ARG_LOG_TARGET },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                /* For tests that point the daemon at a plain directory tree. */
                { "allow-plain-cgroup-dir", no_argument, NULL, ARG_ALLOW_PLAIN_CGROUP_DIR },
                {}
        };
        ManagerOptions o = {
                .sources = discovery_sources,
                .config_dir = CONFIG_DIR,
                .cgroup_root = "/sys/fs/cgroup",
                .proc_root = "/proc",
        };
        LogTarget target = LOG_TARGET_AUTO;
        int level = LOG_INFO, c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        /* As systemd lists its compile-time features. */
                        printf("autoballoond %s %slibvirt\n", PACKAGE_VERSION, HAVE_LIBVIRT ? "+" : "-");
                        return 0;
                case ARG_CONFIG_DIR:
                        o.config_dir = optarg;
                        break;
                case ARG_CGROUP_ROOT:
                        o.cgroup_root = optarg;
                        break;
                case ARG_PROC_ROOT:
                        o.proc_root = optarg;
                        break;
                case ARG_RUNTIME_DIR:
                        o.runtime_dir = optarg;
                        break;
                case ARG_DRY_RUN:
                        o.dry_run = true;
                        break;
                case ARG_RECORD:
                        o.record_path = optarg;
                        break;
                case ARG_BUS:
                        if (bus_type_from_string(optarg, &o.bus_type) < 0) {
                                fprintf(stderr, "Unknown bus: %s (system, session or none)\n", optarg);
                                return 2;
                        }
                        break;
                case ARG_LOG_TARGET:
                        if (streq(optarg, "auto"))
                                target = LOG_TARGET_AUTO;
                        else if (streq(optarg, "journal"))
                                target = LOG_TARGET_JOURNAL;
                        else if (streq(optarg, "stderr"))
                                target = LOG_TARGET_STDERR;
                        else {
                                fprintf(stderr, "Unknown log target: %s\n", optarg);
                                return 2;
                        }
                        break;
                case ARG_LOG_LEVEL:
                        level = parse_log_level(optarg);
                        if (level < 0) {
                                fprintf(stderr, "Unknown log level: %s\n", optarg);
                                return 2;
                        }
                        break;
                case ARG_ALLOW_PLAIN_CGROUP_DIR:
                        o.allow_plain_cgroup_dir = true;
                        break;
                case '?':
                        return 2;
                default:
                        return 2;
                }
        if (optind < argc) {
                fprintf(stderr, "%s takes no arguments.\n", argv[0]);
                return 2;
        }

        log_setup(target, level);

        _cleanup_(manager_freep) Manager *m = NULL;
        raise_nofile_limit();
        r = manager_new(&o, &m);
        if (r < 0)
                return 1;

        r = manager_start(m);
        if (r < 0) {
                (void) sd_notifyf(false, "STATUS=Failed to start: %s\nERRNO=%i", strerror(-r), -r);
                return 1;
        }

        r = manager_run(m);
        if (r < 0) {
                log_error_errno(r, "Event loop failed: %m");
                return 1;
        }
        return 0;
}
