/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

typedef struct Manager Manager;
typedef struct Libvirt Libvirt;

/* The connection to a libvirt daemon (LibvirtURI=): its running domains become VMs of the manager
 * with the libvirt backend, added and dropped as libvirt reports them started and stopped. When
 * the daemon goes away, its VMs are not managed until it is back; then they are adopted again as
 * they are. */
int libvirt_new(Manager *m, Libvirt **ret);
/* Connects now; when that fails, retries with back-off (1 s doubling to 30 s). */
void libvirt_start(Libvirt *lv);
Libvirt *libvirt_free(Libvirt *lv);
