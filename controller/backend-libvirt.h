/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "discovery.h"

/* The running domains of a libvirt daemon (LibvirtURI=) as VMs, added and dropped as libvirt reports
 * them started and stopped. When the daemon goes away, its VMs are not managed until it is back; then
 * they are adopted again as they are. *ret is NULL with Libvirt=no, and when libvirt's libraries cannot
 * be loaded (logged). */
int libvirt_discovery_new(const DiscoveryContext *ctx, Discovery **ret);
