/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "backend.h"

typedef struct Manager Manager;

/* A VM found by the slice scan: a plain QEMU whose monitor is <RuntimeDir>/qmp/<name>.sock. Created
 * and started; the caller adds it to the manager. */
int vm_new_qmp(Manager *m, const char *name, VM **ret);
