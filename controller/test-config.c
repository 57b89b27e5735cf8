/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <ctype.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "config-paths.h"
#include "config.h"
#include "log.h"
#include "util.h"

/* A config directory per test: <dir>/autoballoon.conf and <dir>/autoballoon.conf.d/. */
static char dir[64];

static int dir_setup(void **state) {
        strcpy(dir, "/tmp/test-config-XXXXXX");
        return mkdtemp(dir) ? 0 : -1;
}

static int dir_teardown(void **state) {
        char cmd[128];

        (void) snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : -1;
}

/* Writes <dir>/<name> (creating autoballoon.conf.d/ as needed) and returns its path. */
static char *put(const char *name, const char *text) {
        char *p;
        FILE *f;

        assert_true(asprintf(&p, "%s/autoballoon.conf.d", dir) > 0);
        (void) mkdir(p, 0755);
        free(p);

        assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
        f = fopen(p, "we");
        assert_non_null(f);
        assert_true(fputs(text, f) >= 0);
        assert_int_equal(fclose(f), 0);
        return p;
}

/* Runs config_load() with stderr captured; returns the log text. ret_config may be NULL. */
static char *load_capture(int *ret, Config **ret_config) {
        FILE *f = tmpfile();
        int saved;
        char *text;

        assert_non_null(f);
        fflush(stderr);
        saved = dup(STDERR_FILENO);
        assert_true(saved >= 0);
        assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);

        Config *c = NULL;
        *ret = config_load(dir, ret_config ?: &c);
        config_free(c);

        fflush(stderr);
        assert_true(dup2(saved, STDERR_FILENO) >= 0);
        assert_int_equal(close(saved), 0);
        assert_int_equal(fseek(f, 0, SEEK_SET), 0);
        text = calloc(1, 64 * 1024);
        assert_non_null(text);
        (void) fread(text, 1, 64 * 1024 - 1, f);
        assert_int_equal(fclose(f), 0);
        return text;
}

/* The defaults' values are checked against the man page and the shipped file below. */
static void test_defaults(void **state) {
        _cleanup_(config_freep) Config *c = NULL;
        VMConfig vm;

        assert_int_equal(config_new(&c), 0);
        assert_int_equal(c->n_vms, 0);
        for (size_t i = 0; config_key_name(false, i); i++)
                assert_null(config_find_origin(c, NULL, config_key_name(false, i)));
        assert_int_equal(config_validate(c, "defaults"), 0);

        memset(&vm, 0xff, sizeof vm);
        vm_config_defaults(&vm);
        assert_null(vm.name);
        assert_false(vm.weight_set || vm.min_set || vm.max_set);
        assert_null(config_find_vm(c, "web"));

        /* A missing directory gives the defaults. */
        Config *d = NULL;
        assert_int_equal(config_load("/nonexistent/autoballoon", &d), 0);
        for (size_t i = 0; config_key_name(false, i); i++)
                assert_true(config_key_equal(false, config_key_name(false, i), c, d));
        config_free(d);
}

static void test_full_file(void **state) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *log = NULL, *path = NULL;
        int r;

        path = put("autoballoon.conf",
                   "# comment\n"
                   "; another comment\n"
                   "\n"
                   "[Daemon]\n"
                   "ParentSlice=machine.slice/machine-vms.slice\n"
                   "HostPressure=slice\n"
                   "  HostReserve = 10.5%\n"            /* indented, spaces around '=' */
                   "HysteresisSec=2min\r\n"
                   "TaxRate=0.5\n"
                   "ReclaimStep=64M\n"
                   "MaxStep=1.5G\n"
                   "MaxRate=1GiB\n"
                   "DeflateStep=32MB\n"
                   "GuestReserve=10%\n"
                   "GuestMinAvailable=5%\n"
                   "GuestSwapInRate=0\n"
                   "GuestMajorFaultRate=1000\n"
                   "MemoryHighOverhead=0\n"
                   "HostTriggerStallSec=500ms\n"
                   "SliceTriggerStallSec=0.25\n"
                   "TriggerWindowSec=4s\n"
                   "StatsIntervalSec=3\n"
                   "StatsIdleIntervalSec=30\n"
                   "BalloonStallSec=5\n"
                   "BalloonBackoffSec=1min\n"
                   "RuntimeDir=/tmp/ab\n"
                   "Libvirt=no\n"
                   "LibvirtURI=qemu:///system?socket=/tmp/ab/libvirt-sock\n"
                   "LibvirtPidDir=/tmp/ab/qemu\n"
                   "Policy=proxmox\n"
                   "\n"
                   "[VM web]\n"
                   "Weight=200\n"
                   "MinMemory=1G\n"
                   "MaxMemory=4G\n"
                   "[VM db_2]\n"
                   "[VM web]\n"
                   "MaxMemory=8G\n"
                   "[VM instance-0000002a]\n"                 /* libvirt domain names as they are */
                   "Weight=300\n"
                   "[VM ubuntu22.04]\n");
        log = load_capture(&r, &c);
        assert_int_equal(r, 0);
        assert_string_equal(log, "");

        assert_int_equal(c->policy, POLICY_MODE_PROXMOX);
        assert_string_equal(c->parent_slice, "machine.slice/machine-vms.slice");
        assert_int_equal(c->host_pressure, HOST_PRESSURE_SLICE);
        assert_true(c->host_reserve.bytes == 0 && c->host_reserve.permyriad == 1050);
        assert_true(c->hysteresis_usec == 120 * USEC_PER_SEC);
        assert_true(c->tax_rate == 0.5);
        assert_true(c->reclaim_step == 64 * MIB);
        assert_true(c->max_step == 3 * GIB / 2);
        assert_true(c->max_rate == GIB);
        assert_true(c->deflate_step == 32 * MIB);
        assert_true(c->guest_reserve.permyriad == 1000);
        assert_true(c->guest_min_available.permyriad == 500);
        assert_true(c->guest_swapin_rate == 0);
        assert_true(c->guest_major_fault_rate == 1000);
        assert_true(c->memory_high_overhead == 0);
        assert_true(c->host_trigger_stall_usec == 500 * USEC_PER_MSEC);
        assert_true(c->slice_trigger_stall_usec == 250 * USEC_PER_MSEC);
        assert_true(c->trigger_window_usec == 4 * USEC_PER_SEC);
        assert_true(c->stats_interval_usec == 3 * USEC_PER_SEC);
        assert_true(c->stats_idle_interval_usec == 30 * USEC_PER_SEC);
        assert_true(c->stall_usec == 5 * USEC_PER_SEC);
        assert_true(c->stall_backoff_usec == 60 * USEC_PER_SEC);
        assert_string_equal(c->runtime_dir, "/tmp/ab");
        assert_false(c->libvirt);
        assert_string_equal(c->libvirt_uri, "qemu:///system?socket=/tmp/ab/libvirt-sock");
        assert_string_equal(c->libvirt_pid_dir, "/tmp/ab/qemu");

        /* VMs in order of first appearance; the second [VM web] adds to the first; an empty section
         * still declares its VM. */
        assert_non_null(config_find_vm(c, "instance-0000002a"));
        assert_non_null(config_find_vm(c, "ubuntu22.04"));
        assert_int_equal(c->n_vms, 4);
        assert_string_equal(c->vms[0].name, "web");
        assert_string_equal(c->vms[1].name, "db_2");
        const VMConfig *web = config_find_vm(c, "web");
        assert_ptr_equal(web, c->vms);
        assert_true(web->weight == 200 && web->weight_set);
        assert_true(web->min_memory.bytes == GIB && web->min_set);
        assert_true(web->max_memory.bytes == 8 * GIB && web->max_set);
        const VMConfig *db = config_find_vm(c, "db_2");
        assert_non_null(db);
        assert_true(db->weight == 100 && !db->weight_set);
        assert_true(db->min_memory.permyriad == 2500 && !db->min_set);
        assert_true(db->max_memory.permyriad == 10000 && !db->max_set);
        assert_null(config_find_vm(c, "db"));

        /* Where each value came from. */
        const ConfigOrigin *o = config_find_origin(c, NULL, "HostReserve");
        assert_non_null(o);
        assert_string_equal(o->file, path);
        assert_int_equal(o->line, 7);
        assert_string_equal(o->value, "10.5%");
        o = config_find_origin(c, "web", "MaxMemory");
        assert_non_null(o);
        assert_int_equal(o->line, 38);
        assert_string_equal(o->value, "8G");
        assert_null(config_find_origin(c, NULL, "MaxMemory"));
        assert_null(config_find_origin(c, "db_2", "Weight"));
}

static void test_dropins(void **state) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *log = NULL, *main_path = NULL, *b = NULL;
        int r;

        main_path = put("autoballoon.conf",
                        "[Daemon]\n"
                        "MaxStep=512M\n"
                        "TaxRate=0.25\n"
                        "[VM web]\n"
                        "Weight=300\n"
                        "MinMemory=1G\n");
        /* strcmp() order: "10-a" < "20-b" < "9-c". */
        free(put("autoballoon.conf.d/20-b.conf", "[Daemon]\nMaxStep=1G\nDeflateStep=16M\nPolicy=rfc\n"));
        free(put("autoballoon.conf.d/10-a.conf", "[Daemon]\nMaxStep=64M\nTaxRate=0.5\nDeflateStep=8M\n"));
        b = put("autoballoon.conf.d/9-c.conf", "[Daemon]\n\nDeflateStep=4M\n[VM web]\nWeight=\n[VM new]\nWeight=7\n");
        /* Not drop-ins: wrong suffix, hidden, a directory. */
        free(put("autoballoon.conf.d/README", "garbage\n"));
        free(put("autoballoon.conf.d/30-x.conf.disabled", "garbage\n"));
        free(put("autoballoon.conf.d/.40-hidden.conf", "garbage\n"));
        char *d;
        assert_true(asprintf(&d, "%s/autoballoon.conf.d/50-dir.conf", dir) > 0);
        assert_int_equal(mkdir(d, 0755), 0);
        free(d);

        log = load_capture(&r, &c);
        assert_int_equal(r, 0);
        assert_string_equal(log, "");

        assert_true(c->max_step == GIB);            /* 20-b after 10-a after the main file */
        assert_true(c->tax_rate == 0.5);            /* 10-a */
        assert_true(c->deflate_step == 4 * MIB);    /* 9-c is last */
        assert_int_equal(c->policy, POLICY_MODE_RFC); /* 20-b */

        const VMConfig *web = config_find_vm(c, "web");
        assert_non_null(web);
        assert_true(web->weight == 100 && !web->weight_set); /* "Weight=" restores the default */
        assert_true(web->min_memory.bytes == GIB && web->min_set);
        assert_non_null(config_find_vm(c, "new"));
        assert_true(config_find_vm(c, "new")->weight == 7);

        const ConfigOrigin *o = config_find_origin(c, NULL, "DeflateStep");
        assert_string_equal(o->file, b);
        assert_int_equal(o->line, 3);
        o = config_find_origin(c, NULL, "TaxRate");
        assert_non_null(strstr(o->file, "/autoballoon.conf.d/10-a.conf"));
        assert_int_equal(o->line, 3);
        o = config_find_origin(c, NULL, "MaxStep");
        assert_non_null(strstr(o->file, "/autoballoon.conf.d/20-b.conf"));
        o = config_find_origin(c, "web", "MinMemory");
        assert_string_equal(o->file, main_path);
        assert_int_equal(o->line, 6);

        /* Drop-ins without a main file. */
        assert_int_equal(unlink(main_path), 0);
        config_free(c);
        free(log);
        log = load_capture(&r, &c);
        assert_int_equal(r, 0);
        assert_true(c->max_step == GIB);
        assert_non_null(config_find_vm(c, "web")); /* declared by 9-c.conf only now */
        assert_false(config_find_vm(c, "web")->min_set);
}

/* Loads the config and checks that it fails with a message that starts with "<dir>/<blamed>:<line>: "
 * and contains 'what'. */
static void check_load_error(const char *blamed, unsigned line, const char *what) {
        _cleanup_free_ char *log = NULL, *prefix = NULL;
        Config *c = (Config *) 1;
        int r;

        log = load_capture(&r, &c);
        if (r != -EINVAL)
                fail_msg("%s:%u (%s): gave %d, log: %s", blamed, line, what, r, log);
        assert_ptr_equal(c, (Config *) 1); /* untouched on failure */
        assert_true(asprintf(&prefix, "%s/%s:%u: ", dir, blamed, line) > 0);
        if (!strstr(log, prefix) || !strstr(log, what))
                fail_msg("expected \"%s...%s\" in log: %s", prefix, what, log);
}

/* The same with 'text' as the file 'name', which is removed afterwards. */
static void check_error(const char *name, const char *text, unsigned line, const char *what) {
        _cleanup_free_ char *path = put(name, text);

        check_load_error(name, line, what);
        assert_int_equal(unlink(path), 0);
}

static void test_errors(void **state) {
        const char *f = "autoballoon.conf";

        check_error(f, "[Daemon]\n\n[Foo]\nX=1\n", 3, "[Foo]: unknown section");
        check_error(f, "[Daemon]\n[Foo]\n", 2, "unknown section");
        check_error(f, "[VM a/b]\n", 1, "[VM a/b]: invalid VM name");
        check_error(f, "[VM a\x01]\n", 1, "invalid VM name");
        check_error(f, "[VM ]\n", 1, "invalid VM name");
        check_error(f, "[VM web\n", 1, "expected \"[Section]\"");
        check_error(f, "[Daemon] # x\n", 1, "expected \"[Section]\"");
        check_error(f, "MaxStep=1G\n", 1, "MaxStep=1G: assignment outside of a section");
        check_error(f, "[Daemon]\nFoo=1\n", 2, "Foo=1: unknown key in [Daemon]");
        check_error(f, "[Daemon]\nWeight=5\n", 2, "Weight=5: unknown key in [Daemon]");
        check_error(f, "[VM web]\nMaxStep=1G\n", 2, "MaxStep=1G: unknown key in [VM web]");
        check_error(f, "[Daemon]\nmaxstep=1G\n", 2, "unknown key");
        check_error(f, "[Daemon]\nGarbage\n", 2, "Garbage: syntax error");
        check_error(f, "[Daemon]\nMaxStep:1G\n", 2, "syntax error");
        check_error(f, "[Daemon]\n=1G\n", 2, "syntax error");
        check_error(f, "[Daemon]\nMax-Step=1G\n", 2, "syntax error");
        check_error(f, "[VM web]\nWeight=0\n", 2, "Weight=0: must be between 1 and 10000");
        check_error(f, "[VM web]\nWeight=10001\n", 2, "Weight=10001: must be between 1 and 10000");
        check_error(f, "[VM web]\nWeight=1.5\n", 2, "Weight=1.5: not a non-negative integer");
        check_error(f, "[VM web]\nWeight=-1\n", 2, "Weight=-1: not a non-negative integer");
        check_error(f, "[VM web]\nWeight=99999999999999999999\n", 2, "number too large");
        check_error(f, "[VM web]\nMaxMemory=0\n", 2, "MaxMemory=0: must be greater than 0");
        check_error(f, "[VM web]\nMaxMemory=0%\n", 2, "MaxMemory=0%: must be greater than 0");
        check_error(f, "[VM web]\nMinMemory=101%\n", 2, "MinMemory=101%: too large");
        check_error(f, "[VM web]\nMinMemory=1X\n", 2, "MinMemory=1X: not a size or percentage");
        check_error(f, "[Daemon]\nTaxRate=1\n", 2, "TaxRate=1: must be at least 0 and below 1");
        check_error(f, "[Daemon]\nTaxRate=1.0\n", 2, "TaxRate=1.0: must be at least 0 and below 1");
        check_error(f, "[Daemon]\nTaxRate=-0.1\n", 2, "TaxRate=-0.1: not a decimal number");
        check_error(f, "[Daemon]\nTaxRate=nan\n", 2, "not a decimal number");
        check_error(f, "[Daemon]\nTaxRate=0.5x\n", 2, "not a decimal number");
        check_error(f, "[Daemon]\nTaxRate=.5\n", 2, "not a decimal number");
        check_error(f, "[Daemon]\nMaxStep=0\n", 2, "MaxStep=0: must be greater than 0");
        check_error(f, "[Daemon]\nMaxStep=10%\n", 2, "MaxStep=10%: not a size");
        check_error(f, "[Daemon]\nMaxRate=12Q\n", 2, "MaxRate=12Q: not a size");
        check_error(f, "[Daemon]\nReclaimStep=16777216T\n", 2, "size too large");
        check_error(f, "[Daemon]\nHostReserve=100.5%\n", 2, "HostReserve=100.5%: too large");
        check_error(f, "[Daemon]\nHostPressure=proc\n", 2, "HostPressure=proc: must be \"system\" or \"slice\"");
        check_error(f, "[Daemon]\nPolicy=pve\n", 2,
                    "Policy=pve: must be \"autoballoon\", \"none\", \"rfc\" or \"proxmox\"");
        check_error(f, "# rfc\n[Daemon]\nPolicy=RFC\n", 3, "Policy=RFC: must be");
        check_error(f, "[Daemon]\nRuntimeDir=run/ab\n", 2, "RuntimeDir=run/ab: must be an absolute path of at most 64 characters");
        check_error(f, "[Daemon]\nLibvirt=maybe\n", 2, "Libvirt=maybe: must be yes or no");
#if !HAVE_LIBVIRT
        check_error(f, "[Daemon]\nLibvirt=on\n", 2, "Libvirt=on: this autoballoond is built without libvirt");
#endif
        check_error(f, "[Daemon]\nLibvirtPidDir=qemu\n", 2, "LibvirtPidDir=qemu: must be an absolute path");
        check_error(f, "[Daemon]\nParentSlice=/balloon.slice\n", 2, "ParentSlice=/balloon.slice: not a slice path");
        check_error(f, "[Daemon]\nParentSlice=balloon\n", 2, "not a slice path");
        check_error(f, "[Daemon]\nParentSlice=a.slice//b.slice\n", 2, "not a slice path");
        check_error(f, "[Daemon]\nParentSlice=../x.slice\n", 2, "not a slice path");
        check_error(f, "[Daemon]\nParentSlice=.slice\n", 2, "not a slice path");
        check_error(f, "[Daemon]\nTriggerWindowSec=20\n", 2, "TriggerWindowSec=20: must be between 500ms and 10s");
        check_error(f, "[Daemon]\nTriggerWindowSec=100ms\n", 2, "between 500ms and 10s");
        check_error(f, "[Daemon]\nTriggerWindowSec=2d\n", 2, "TriggerWindowSec=2d: not a time");
        check_error(f, "[Daemon]\nBalloonStallSec=0\n", 2, "BalloonStallSec=0: must be between 1s and 1h");
        check_error(f, "[Daemon]\nBalloonBackoffSec=0ms\n", 2, "between 1s and 1h");
        check_error(f, "[Daemon]\nStatsIntervalSec=0\n", 2, "between 100ms and 1h");
        check_error(f, "[Daemon]\nStatsIdleIntervalSec=0.5\n", 2, "between 1s and 1h");
        check_error(f, "[Daemon]\nHostTriggerStallSec=0\n", 2, "greater than 0");
        check_error(f, "[Daemon]\nHysteresisSec=99999999999999999999\n", 2, "time too large");

        /* The first error stops the file; later lines are not reported. */
        check_error(f, "[Daemon]\nMaxStep=0\nFoo=1\n", 2, "MaxStep=0");

        /* Socket paths must fit in sun_path. */
        check_error(f, "[Daemon]\nRuntimeDir=/run/01234567890123456789012345678901234567890123456789012345678901\n", 2,
                    "must be an absolute path of at most 64 characters");
        check_error(f, "[Daemon]\nStatsIntervalSec=1us\n", 2, "StatsIntervalSec=1us: must be between 100ms and 1h");
        check_error(f, "[Daemon]\nHysteresisSec=2h\n", 2, "HysteresisSec=2h: must be at most 1h");

        /* A NUL byte in a line. */
        _cleanup_free_ char *p = put(f, "");
        FILE *nul = fopen(p, "we");
        assert_non_null(nul);
        assert_int_equal(fwrite("[Daemon]\nMaxStep=1G\0x\n", 1, 22, nul), 22);
        assert_int_equal(fclose(nul), 0);
        Config *c = NULL;
        int r;
        _cleanup_free_ char *log = load_capture(&r, &c);
        assert_int_equal(r, -EINVAL);
        assert_non_null(strstr(log, ":2: NUL byte"));

        /* Errors in a drop-in name the drop-in, after a good main file. */
        assert_int_equal(unlink(p), 0);
        free(put(f, "[Daemon]\nMaxStep=1G\n"));
        check_error("autoballoon.conf.d/50-bad.conf", "\n\n[VM x]\nWeight=abc\n", 4, "Weight=abc");
}

static void test_validate(void **state) {
        const char *f = "autoballoon.conf", *d = "autoballoon.conf.d/10-x.conf";
        _cleanup_free_ char *main_path = NULL, *log = NULL;

        check_error(f, "[VM web]\nMinMemory=4G\nMaxMemory=2G\n", 2,
                    "MinMemory=4G: must be at most MaxMemory=2G (set at ");
        check_error(f, "[VM web]\nMinMemory=60%\nMaxMemory=50%\n", 2, "in [VM web]");
        /* Only MaxMemory= set: it conflicts with the default MinMemory=25%. */
        check_error(f, "[VM web]\n\nMaxMemory=10%\n", 3,
                    "MaxMemory=10%: must be at least MinMemory=25% (default) in [VM web]");
        check_error(f, "[Daemon]\nGuestMinAvailable=64M\n", 2,
                    "GuestMinAvailable=64M: must be below GuestReserve=64M (default)");
        check_error(f, "[Daemon]\nGuestReserve=16M\n", 2,
                    "GuestReserve=16M: must be above GuestMinAvailable=32M (default)");
        check_error(f, "[Daemon]\nHostTriggerStallSec=3\n", 2,
                    "HostTriggerStallSec=3: must be at most TriggerWindowSec=2 (default)");
        check_error(f, "[Daemon]\nSliceTriggerStallSec=1\nTriggerWindowSec=500ms\n", 2,
                    "SliceTriggerStallSec=1: must be at most TriggerWindowSec=500ms (set at ");

        /* Across files: blames the one that was set in the main file, names the drop-in. */
        main_path = put(f, "[VM web]\nWeight=5\nMinMemory=4G\n");
        _cleanup_free_ char *dropin = put(d, "[VM web]\nMaxMemory=2G\n");
        check_load_error(f, 3, "/autoballoon.conf.d/10-x.conf:2) in [VM web]");
        assert_int_equal(unlink(dropin), 0);

        /* Not comparable before resolving: accepted. */
        free(put(f, "[VM web]\nMinMemory=4G\nMaxMemory=10%\n[Daemon]\nGuestMinAvailable=10%\nGuestReserve=1M\n"));
        Config *c = NULL;
        int r;
        log = load_capture(&r, &c);
        assert_int_equal(r, 0);
        config_free(c);

        /* Values set by code: 'what' names the source. */
        _cleanup_(config_freep) Config *n = NULL;
        assert_int_equal(config_new(&n), 0);
        n->slice_trigger_stall_usec = 3 * USEC_PER_SEC;
        assert_int_equal(config_validate(n, "test"), -EINVAL);
        n->slice_trigger_stall_usec = 2 * USEC_PER_SEC;
        assert_int_equal(config_validate(n, "test"), 0);
}

/* config_parse_file() on its own: layers onto an existing config, -ENOENT silently. */
static void test_parse_file(void **state) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *p = NULL, *missing = NULL;

        assert_int_equal(config_new(&c), 0);
        p = put("one.conf", "[Daemon]\nMaxStep=1M\n");
        assert_int_equal(config_parse_file(c, p), 0);
        assert_true(c->max_step == MIB);
        assert_true(asprintf(&missing, "%s/none.conf", dir) > 0);
        assert_int_equal(config_parse_file(c, missing), -ENOENT);
        assert_true(c->max_step == MIB);
}

/* Every key the parser knows is set in 'c' (in [Daemon], and in [VM web] for the VM keys) to its
 * default: 'what' wrote the defaults out in full. */
static void assert_all_defaults(const Config *c, const char *what) {
        _cleanup_(config_freep) Config *d = NULL;
        const VMConfig *vm = config_find_vm(c, "web");
        VMConfig dv;
        const char *key;

        assert_int_equal(config_new(&d), 0);
        vm_config_defaults(&dv);

        for (size_t i = 0; (key = config_key_name(false, i)); i++) {
                if (!config_find_origin(c, NULL, key))
                        fail_msg("%s does not list %s=", what, key);
                if (!config_key_equal(false, key, c, d))
                        fail_msg("%s: %s=%s is not the default", what, key, config_find_origin(c, NULL, key)->value);
        }
        if (!vm)
                fail_msg("%s has no [VM web] section", what);
        for (size_t i = 0; (key = config_key_name(true, i)); i++) {
                if (!config_find_origin(c, "web", key))
                        fail_msg("%s does not list %s= in [VM web]", what, key);
                if (!config_key_equal(true, key, vm, &dv))
                        fail_msg("%s: %s=%s is not the default", what, key, config_find_origin(c, "web", key)->value);
        }
        assert_int_equal(c->n_vms, 1);
}

static char *read_source_file(const char *name) {
        _cleanup_free_ char *path = NULL;
        char *text = NULL;

        assert_true(asprintf(&path, "%s/%s", PROJECT_SOURCE_ROOT, name) > 0);
        assert_int_equal(read_full_file_at(AT_FDCWD, path, 1024 * 1024, &text, NULL), 0);
        return text;
}

/* The shipped file and the man page give Libvirt='s default in a build with libvirt; one without it
 * (meson -Dlibvirt=disabled) defaults to no and refuses yes. */
static void as_built(char *conf) {
#if !HAVE_LIBVIRT
        char *p = strstr(conf, "Libvirt=yes\n");

        assert_non_null(p);
        memcpy(p + strlen("Libvirt="), "no ", 3);
#endif
}

/* The shipped autoballoon.conf shows every key at its default in a "#Key=value" line: uncommented, it
 * must load and change nothing. */
static void test_shipped_file_lists_defaults(void **state) {
        _cleanup_free_ char *text = read_source_file("slices/autoballoon.conf"), *log = NULL;
        _cleanup_(config_freep) Config *c = NULL;
        size_t n = 0;
        int r;

        /* "#Key=value" and "#[Section]" lose their '#'; "# prose" stays a comment. */
        for (char *line = text, *next; *line; line = next) {
                next = line + strcspn(line, "\n");
                next += *next == '\n';
                if (line[0] == '#' && (line[1] == '[' || (isalpha((unsigned char) line[1]) && memchr(line, '=', next - line)))) {
                        line[0] = ' ';
                        n++;
                }
        }
        assert_true(n > 0);
        as_built(text);
        free(put("autoballoon.conf", text));

        log = load_capture(&r, &c);
        if (r < 0)
                fail_msg("slices/autoballoon.conf uncommented does not load: %s", log);
        assert_all_defaults(c, "slices/autoballoon.conf");
}

/* autoballoon.conf(5) gives each key's default as '.BR Key= "value"'. */
/* Lines of any length, and 10,000 [VM] sections, each found again by name. */
static void test_large(void **state) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *conf = NULL, *log = NULL;
        size_t size = 0;
        int r;

        f = open_memstream(&conf, &size);
        assert_non_null(f);
        fprintf(f, "# %0400d\n[Daemon]\nLibvirtURI=qemu+ssh://%0400d/system\n", 0, 0);
        for (unsigned i = 0; i < 10000; i++)
                fprintf(f, "[VM vm%u]\nWeight=%u\nMinMemory=%uM\n", i, 1 + i % 10000, i);
        fputs("[VM vm17]\nWeight=5\n", f); /* a section again: its keys override */
        assert_int_equal(fclose(TAKE_PTR(f)), 0);
        free(put("autoballoon.conf", conf));

        log = load_capture(&r, &c);
        if (r < 0)
                fail_msg("does not load: %s", log);
        assert_int_equal(strlen(c->libvirt_uri), strlen("qemu+ssh:///system") + 400);
        assert_int_equal(c->n_vms, 10000);
        for (unsigned i = 0; i < 10000; i++) {
                char name[16];
                (void) snprintf(name, sizeof name, "vm%u", i);
                const VMConfig *vm = config_find_vm(c, name);
                assert_non_null(vm);
                assert_string_equal(vm->name, name);
                assert_int_equal(vm->weight, i == 17 ? 5 : 1 + i % 10000);
                assert_int_equal(vm->min_memory.bytes, (uint64_t) i * MIB);
                const ConfigOrigin *o = config_find_origin(c, name, "Weight");
                assert_non_null(o);
                assert_int_equal(o->line, i == 17 ? 30005 : 5 + 3 * i);
        }
        assert_null(config_find_vm(c, "vm10000"));
}

static void test_man_page_lists_defaults(void **state) {
        _cleanup_free_ char *man = read_source_file("docs/autoballoon.conf.5"), *log = NULL;
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *conf = NULL;
        size_t size = 0;
        const char *key;
        int r;

        f = open_memstream(&conf, &size);
        assert_non_null(f);
        for (int vm = 0; vm < 2; vm++) {
                fputs(vm ? "[VM web]\n" : "[Daemon]\n", f);
                for (size_t i = 0; (key = config_key_name(vm, i)); i++) {
                        _cleanup_free_ char *needle = NULL;
                        const char *p;

                        assert_true(asprintf(&needle, " %s= \"", key) > 0);
                        p = strstr(man, needle);
                        if (!p)
                                fail_msg("autoballoon.conf(5) gives no default for %s= (.BR %s= \"...\")", key, key);
                        p += strlen(needle);
                        fprintf(f, "%s=%.*s\n", key, (int) strcspn(p, "\""), p);

                        /* Its bounds, in the RANGES section, as the loader says them. */
                        const char *range = config_key_range(vm, i);
                        _cleanup_free_ char *bounds = NULL;
                        if (!range)
                                continue;
                        assert_true(asprintf(&bounds, ".B %s=\n%s\n", key, range) > 0);
                        if (!strstr(man, bounds))
                                fail_msg("autoballoon.conf(5)'s RANGES does not say %s= %s", key, range);
                }
        }
        assert_int_equal(fclose(TAKE_PTR(f)), 0);
        as_built(conf);
        free(put("autoballoon.conf", conf));

        log = load_capture(&r, &c);
        if (r < 0)
                fail_msg("the man page's defaults do not load: %s", log);
        assert_all_defaults(c, "autoballoon.conf(5)");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test_setup_teardown(test_full_file, dir_setup, dir_teardown),
                cmocka_unit_test_setup_teardown(test_dropins, dir_setup, dir_teardown),
                cmocka_unit_test_setup_teardown(test_errors, dir_setup, dir_teardown),
                cmocka_unit_test_setup_teardown(test_validate, dir_setup, dir_teardown),
                cmocka_unit_test_setup_teardown(test_parse_file, dir_setup, dir_teardown),
                cmocka_unit_test_setup_teardown(test_shipped_file_lists_defaults, dir_setup, dir_teardown),
                cmocka_unit_test_setup_teardown(test_large, dir_setup, dir_teardown),
                cmocka_unit_test_setup_teardown(test_man_page_lists_defaults, dir_setup, dir_teardown),
        };

        log_setup(LOG_TARGET_STDERR, LOG_INFO);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
