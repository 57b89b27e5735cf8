/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>

#include "log.h"
#include "manager.h"
#include "metrics.h"
#include "util.h"
#include "vm.h"

/* OpenMetrics 1.0 text: "# TYPE"/"# UNIT"/"# HELP" before a family's samples, every family once, a
 * counter family "x" with samples "x_total", "# EOF" last. Prometheus' older text format (what the
 * node exporter's textfile collector parses) reads the same file: it skips "# UNIT" and "# EOF" as
 * comments. */

static void family(FILE *f, const char *name, const char *type, const char *unit, const char *help) {
        fprintf(f, "# TYPE %s %s\n", name, type);
        if (unit)
                fprintf(f, "# UNIT %s %s\n", name, unit);
        fprintf(f, "# HELP %s %s\n", name, help);
}

/* A label value: backslash, double quote and newline escaped. */
static void label_value(FILE *f, const char *s) {
        for (; *s; s++)
                switch (*s) {
                case '\\':
                        fputs("\\\\", f);
                        break;
                case '"':
                        fputs("\\\"", f);
                        break;
                case '\n':
                        fputs("\\n", f);
                        break;
                default:
                        fputc(*s, f);
                }
}

static void bytes_value(char *buf, size_t n, uint64_t v) {
        if (v == SIZE_UNLIMITED)
                (void) snprintf(buf, n, "+Inf");
        else
                (void) snprintf(buf, n, "%" PRIu64, v);
}

enum {
        VM_MANAGED,
        VM_WEIGHT,
        VM_BOOT_MEMORY,
        VM_ACTUAL,
        VM_TARGET,
        VM_MEMORY_HIGH,
        VM_SLICE_PRESSURE,
        _VM_FAMILY_MAX,
};

static const struct {
        const char *name, *unit, *help;
} vm_families[_VM_FAMILY_MAX] = {
        [VM_MANAGED] = { "autoballoon_vm_managed", NULL,
                         "1 if the VM is adopted and answers QMP, 0 while connecting or without a balloon." },
        [VM_WEIGHT] = { "autoballoon_vm_weight", NULL, "Weight of the VM in the split of host memory." },
        [VM_BOOT_MEMORY] = { "autoballoon_vm_boot_memory_bytes", "bytes", "Guest memory at boot." },
        [VM_ACTUAL] = { "autoballoon_vm_actual_bytes", "bytes",
                        "Guest memory left by the balloon, as QEMU last reported it." },
        [VM_TARGET] = { "autoballoon_vm_target_bytes", "bytes", "Balloon target last requested." },
        [VM_MEMORY_HIGH] = { "autoballoon_vm_memory_high_bytes", "bytes", "memory.high of the VM's slice." },
        [VM_SLICE_PRESSURE] = { "autoballoon_vm_slice_pressure_some_avg10", NULL,
                                "Memory pressure of the VM's slice: some, avg10, percent." },
};

/* The sample of 'family' for this VM, false if it has none. */
static bool vm_sample(const MetricsVM *v, unsigned fam, char *buf, size_t n) {
        switch (fam) {
        case VM_MANAGED:
                (void) snprintf(buf, n, "%d", v->managed);
                return true;
        case VM_WEIGHT:
                (void) snprintf(buf, n, "%" PRIu64, v->weight);
                return true;
        case VM_BOOT_MEMORY:
                bytes_value(buf, n, v->boot_memory);
                return v->managed;
        case VM_ACTUAL:
                bytes_value(buf, n, v->actual);
                return v->managed;
        case VM_TARGET:
                bytes_value(buf, n, v->target);
                return v->managed;
        case VM_MEMORY_HIGH:
                bytes_value(buf, n, v->memory_high);
                return v->managed && v->memory_high_known;
        case VM_SLICE_PRESSURE:
                (void) snprintf(buf, n, "%.2f", v->slice_pressure_some_avg10);
                return v->slice_pressure_known;
        }
        return false;
}

int metrics_format(const MetricsHost *host, const MetricsVM *vms, size_t n, char **ret) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        _cleanup_fclose_ FILE *f = open_memstream(&text, &size);
        char buf[32];

        if (!f)
                return -ENOMEM;

        family(f, "autoballoon_policy", "info", NULL, "The policy deciding (Policy= in autoballoon.conf).");
        fputs("autoballoon_policy_info{policy=\"", f);
        label_value(f, host->policy);
        fputs("\"} 1\n", f);
        family(f, "autoballoon_paused", "gauge", NULL,
               "1 while the controller is paused (autoballoonctl pause): nothing is changed.");
        fprintf(f, "autoballoon_paused %d\n", host->paused);
        family(f, "autoballoon_host_total_bytes", "gauge", "bytes",
               "Host memory, or the parent slice's limit with HostPressure=slice.");
        fprintf(f, "autoballoon_host_total_bytes %" PRIu64 "\n", host->total);
        family(f, "autoballoon_host_available_bytes", "gauge", "bytes",
               "Host available memory, or the parent slice's limit minus its usage.");
        fprintf(f, "autoballoon_host_available_bytes %" PRIu64 "\n", host->available);
        if (host->pressure_known) {
                family(f, "autoballoon_host_pressure_some_avg10", "gauge", NULL,
                       "Host (or parent slice) memory pressure: some, avg10, percent.");
                fprintf(f, "autoballoon_host_pressure_some_avg10 %.2f\n", host->pressure_some_avg10);
        }

        for (unsigned fam = 0; fam < _VM_FAMILY_MAX; fam++) {
                bool first = true;

                for (size_t i = 0; i < n; i++) {
                        if (!vm_sample(&vms[i], fam, buf, sizeof buf))
                                continue;
                        if (first)
                                family(f, vm_families[fam].name, "gauge", vm_families[fam].unit,
                                       vm_families[fam].help);
                        first = false;
                        fprintf(f, "%s{vm=\"", vm_families[fam].name);
                        label_value(f, vms[i].name);
                        fprintf(f, "\"} %s\n", buf);
                }
        }

        if (n > 0)
                family(f, "autoballoon_decisions", "counter", NULL,
                       "Decisions logged, by action; a hold is counted once when it starts.");
        for (size_t i = 0; i < n; i++)
                for (PolicyAction a = POLICY_NONE + 1; a < _POLICY_ACTION_MAX; a++) {
                        fputs("autoballoon_decisions_total{vm=\"", f);
                        label_value(f, vms[i].name);
                        fprintf(f, "\",action=\"%s\"} %" PRIu64 "\n", policy_action_to_string(a),
                                vms[i].decisions[a]);
                }

        fputs("# EOF\n", f);

        /* The buffer is complete only once the stream is closed. */
        if (fflush(f) != 0 || ferror(f))
                return -ENOMEM;
        if (fclose(TAKE_PTR(f)) != 0)
                return -ENOMEM;
        *ret = TAKE_PTR(text);
        return 0;
}

static void vm_metrics(const VM *vm, MetricsVM *ret) {
        *ret = (MetricsVM) {
                .name = vm->name,
                .managed = vm->state == VM_READY,
                .weight = vm->config.weight,
                .boot_memory = vm->boot_memory,
                .actual = vm->actual,
                .target = vm->target,
                .memory_high_known = vm->memory_high_known,
                .memory_high = vm->memory_high,
        };
        ret->slice_pressure_known = vm_read_slice_pressure(vm, &ret->slice_pressure_some_avg10) >= 0;
        memcpy(ret->decisions, vm->n_decisions, sizeof ret->decisions);
}

void metrics_write(Manager *m) {
        _cleanup_free_ MetricsVM *vms = new0(MetricsVM, m->vms.n);
        _cleanup_free_ char *text = NULL;
        MetricsHost host = {
                .total = m->host_total,
                .available = m->host_available,
                .paused = m->paused,
                .policy = policy_mode_to_string(m->config->policy),
        };
        int r;

        if (!vms) {
                log_oom();
                return;
        }
        for (size_t i = 0; i < m->vms.n; i++)
                vm_metrics(m->vms.items[i], &vms[i]);
        host.pressure_some_avg10 = manager_host_pressure(m);
        host.pressure_known = host.pressure_some_avg10 >= 0;

        r = metrics_format(&host, vms, m->vms.n, &text);
        if (r >= 0)
                r = write_file_atomic(m->metrics_path, text, false);
        if (r < 0) {
                if (!m->metrics_failed)
                        log_warning_errno(r, "Cannot write %s: %m", m->metrics_path);
                m->metrics_failed = true;
                return;
        }
        if (m->metrics_failed)
                log_info("Writing %s again.", m->metrics_path);
        m->metrics_failed = false;
}
