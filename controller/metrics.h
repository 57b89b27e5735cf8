/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

/* The OpenMetrics text file for Prometheus' textfile collector: the daemon's view in these structs,
 * their formatting (pure), and the file written each tick. */

typedef struct MetricsVM {
        const char *name;
        bool managed;                   /* adopted and answering; the sizes below are valid only then */
        uint64_t weight;
        uint64_t boot_memory, actual, target;
        bool memory_high_known;
        uint64_t memory_high;           /* SIZE_UNLIMITED is written as +Inf */
        bool slice_pressure_known;
        double slice_pressure_some_avg10; /* percent */
        uint64_t decisions[_POLICY_ACTION_MAX]; /* logged decisions by action (a hold once per hold) */
} MetricsVM;

typedef struct MetricsHost {
        uint64_t total, available;
        bool pressure_known;
        double pressure_some_avg10;     /* percent */
        bool paused;
        const char *policy;             /* Policy= */
} MetricsHost;

/* Formats the whole exposition, "# EOF" included, into a new string. Each family is written once
 * with all its samples; per VM the sizes only for managed VMs, the weight and the decision counters
 * (every action but "none", zeros included) for all. -ENOMEM only. */
int metrics_format(const MetricsHost *host, const MetricsVM *vms, size_t n, char **ret);

typedef struct Manager Manager;

/* Writes the manager's view to its metrics_path (<RuntimeDir>/metrics.prom), atomically; a failure
 * is logged once, until it works again. */
void metrics_write(Manager *m);
