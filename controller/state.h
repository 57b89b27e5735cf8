/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What must survive a restart of the daemon (the watchdog, SIGKILL, an upgrade) but not a reboot:
 * Pause, and each VM's carried policy state (hysteresis, back-off, stall count, last inflation), so a
 * restarted daemon neither acts while an operator paused it nor squeezes a guest inside its
 * hysteresis window. Kept in <RuntimeDir>/state as text:
 *
 *   autoballoon-state 2
 *   boot <boot id>
 *   paused 0|1
 *   vm <name> <hysteresis until> <back-off until> <last inflation> <stall count> <last give-back>
 *
 * Version 1, written before give-back, has no <last give-back>: still read.
 *
 * Times are CLOCK_MONOTONIC microseconds, which only mean something within the boot named. The file
 * is root's, but it is still read as untrusted: bounded in size, every value checked, and a file that
 * fails any check is ignored as a whole.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

#define STATE_FILE_MAX (16 * 1024 * 1024)
#define STATE_VMS_MAX 100000
#define STATE_NAME_MAX 255

typedef struct StateVM {
        char *name;
        PolicyCarry carry;
} StateVM;

typedef struct State {
        bool paused;
        StateVM *vms;
        size_t n_vms;
} State;

void state_done(State *s);

/* Parses 'text' (not NUL-terminated, 'size' bytes). -ESTALE if it was written in another boot than
 * 'boot_id'; -EBADMSG if anything is wrong with it, with *ret_why saying what. Deadlines further than
 * 'max_ahead_usec' after 'now' are refused as corrupt. Fills *ret only on success. */
int state_parse(const char *text, size_t size, const char *boot_id, uint64_t now, uint64_t max_ahead_usec,
                State *ret, const char **ret_why);

/* The file's text for 's'; VMs with nothing to carry are left out. */
int state_format(const State *s, const char *boot_id, char **ret);

/* The carried state of 'name', or NULL. */
const PolicyCarry *state_find_vm(const State *s, const char *name);

/* Reads and parses the file at 'path' (written with write_file_atomic()): -ENOENT when there is
 * none, state_parse()'s errors otherwise. */
int state_load(const char *path, const char *boot_id, uint64_t now, uint64_t max_ahead_usec, State *ret,
               const char **ret_why);

/* This boot's id, from /proc/sys/kernel/random/boot_id (37 bytes with the NUL). */
int state_boot_id(const char *proc_root, char ret[static 37]);
