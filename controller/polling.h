/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "policy.h"

/* How often a VM's balloon and guest stats are read: every StatsIntervalSec= while the host or the
 * guest is busy, every StatsIdleIntervalSec= while both are calm (docs/design.md, "Polling"). Pure,
 * like the policy: no I/O, no clock. */

/* The host approaches its reserve (less than twice HostReserve= available) or its trigger fired. */
bool poll_host_busy(const PolicyParams *p, const PolicyHost *host);

/* The guest's last report was close to the thresholds the policy acts on (available memory within
 * twice GuestReserve= + GuestMinAvailable=, half the swap-in or major fault rate, any allocation
 * stall, direct reclaim or OOM kill), its balloon is moving, it is in hysteresis after guest
 * pressure, or a trigger or guest pressure event is waiting for the next decision. */
bool poll_vm_busy(const PolicyParams *p, const PolicyVM *vm, uint64_t now_usec);
