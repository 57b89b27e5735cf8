/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "discovery.h"

/* Plain QEMUs: the slice scan finds balloon-<vm>.slice under ParentSlice=, each one a VM whose QMP
 * monitor is <RuntimeDir>/qmp/<vm>.sock; a VM whose slice goes is dropped at the next scan. */
int qmp_discovery_new(const DiscoveryContext *ctx, Discovery **ret);
