/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-event.h>

/* Registers an implementation of libvirt's event loop (virEventRegisterImpl()) on the sd-event loop
 * 'e': every fd and timer libvirt's client library watches becomes a source of 'e'. Once per process,
 * after dlopen_libvirt(), before the first connection; -EBUSY for another loop. */
int virt_event_register(sd_event *e);

/* Runs the free callbacks of removed handles and timers now, as the loop would: after the last
 * connection is closed, when the loop no longer runs. */
void virt_event_flush(void);
