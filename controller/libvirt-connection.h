/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <systemd/sd-event.h>

/* The connection to a libvirt daemon: opened in a worker thread (virConnectOpen() has no bound of its
 * own), with keepalive (5 s, 3 probes, which bounds how long a hung libvirtd can hold the loop in the
 * calls libvirtd answers itself), its domain events and QEMU's BALLOON_GUEST_PRESSURE event
 * registered for the owner, and opened again with back-off (1 s doubling to 30 s) when it cannot be
 * opened or goes away. libvirt's events come through the sd-event loop (virt-event.c). The domains are
 * the owner's business (backend-libvirt.c). */

typedef struct LibvirtConnection LibvirtConnection;

/* What the connection asks and tells its owner; 'userdata' (or the events' 'opaque') is the owner's. */
typedef struct LibvirtCallbacks {
        /* The URI to open (LibvirtURI=), asked at each attempt. */
        const char *(*uri)(void *userdata);
        /* Opened: the running domains, borrowed for the call. */
        void (*connected)(virDomainPtr *doms, int n, void *userdata);
        /* The connection went away; opening it again is scheduled. */
        void (*lost)(void *userdata);
        virConnectDomainEventCallback lifecycle;
        virConnectDomainEventBalloonChangeCallback balloon_change;
        virConnectDomainEventMetadataChangeCallback metadata_change;
        virConnectDomainEventJobCompletedCallback job_completed;
        /* QEMU's BALLOON_GUEST_PRESSURE (the qemu/ patch); on an unpatched QEMU it never comes. */
        virConnectDomainQemuMonitorEventCallback guest_pressure;
} LibvirtCallbacks;

/* Hooks libvirt into 'event' (once per process). Nothing is opened before libvirt_connection_start(). */
int libvirt_connection_new(sd_event *event, const LibvirtCallbacks *callbacks, void *userdata,
                           LibvirtConnection **ret);
/* Opens the connection now; when that fails, tries again with back-off. */
void libvirt_connection_start(LibvirtConnection *c);
/* Open, and not closed since. */
bool libvirt_connection_alive(const LibvirtConnection *c);
LibvirtConnection *libvirt_connection_free(LibvirtConnection *c);
