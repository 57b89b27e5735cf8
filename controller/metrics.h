/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

/* The OpenMetrics text file for Prometheus' textfile collector: formatting (pure) and an atomic
 * write. The daemon fills these structs each tick (bus.c). */

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

/* Replaces 'path' with 'text' atomically: a temporary file "<path>.XXXXXX" in the same directory,
 * mode 0644, renamed over it; removed on failure. 'durable' syncs it to disk first (the weight drop-ins
 * in /etc; the metrics file on /run is rewritten each tick and needs not). Also used by bus.c. */
int write_file_atomic(const char *path, const char *text, bool durable);
