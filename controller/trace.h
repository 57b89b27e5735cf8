/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <json-c/json.h>
#include <stddef.h>
#include <stdio.h>

#include "policy.h"

/* The policy's whole input as one line of JSON: what autoballoond --record=FILE appends at every
 * decision and what the replay simulator (tests/bench/ab-replay) reads back.
 *
 *   {"version":1,"params":{...},"host":{...},"vms":[{...},...]}
 *
 * The keys are the field names of PolicyParams, PolicyHost and PolicyVM; the mode is its name
 * ("rfc"), sizes and times are integers (bytes, microseconds), "max" memory.high is
 * 18446744073709551615. A reader takes a missing field as 0 and ignores unknown ones, so traces
 * outlive fields being added. */

#define TRACE_VERSION 1

typedef struct TraceRecord {
        PolicyParams params;
        PolicyHost host;
        PolicyVM *vms;
        size_t n_vms;
        json_object *json; /* owns the strings the VMs point to */
} TraceRecord;

/* The record as a string without a newline. */
int trace_format(const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n, char **ret);

/* Appends the record and a newline to f and flushes it, so a reader never sees half a line. */
int trace_write(FILE *f, const PolicyParams *p, const PolicyHost *host, const PolicyVM *vms, size_t n);

/* Parses one line (a trailing newline is fine). -EBADMSG if it is not a record of this version,
 * -ENOMEM. */
int trace_parse(const char *line, TraceRecord *ret);

void trace_record_done(TraceRecord *r);
