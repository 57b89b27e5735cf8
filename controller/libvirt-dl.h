/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

/* The libvirt backend's libraries (libvirt, libvirt-qemu, and libxml2 for the domain XML), loaded with
 * dlopen() when the configuration says Libvirt=yes, as systemd loads its optional libraries
 * (src/shared/dlfcn-util.h): the daemon is built against their headers only, so with Libvirt=no
 * neither they nor their many dependencies (GLib, GnuTLS, ICU, ...) are mapped. The backend calls
 * each function through its sym_ pointer, set by dlopen_libvirt(). */

#define DLSYM_PROTOTYPE(symbol) extern typeof(symbol) *sym_##symbol

DLSYM_PROTOTYPE(virConnectClose);
DLSYM_PROTOTYPE(virConnectDomainEventDeregisterAny);
DLSYM_PROTOTYPE(virConnectDomainEventRegisterAny);
DLSYM_PROTOTYPE(virConnectListAllDomains);
DLSYM_PROTOTYPE(virConnectOpen);
DLSYM_PROTOTYPE(virConnectRegisterCloseCallback);
DLSYM_PROTOTYPE(virConnectSetKeepAlive);
DLSYM_PROTOTYPE(virConnectUnregisterCloseCallback);
DLSYM_PROTOTYPE(virDomainFree);
DLSYM_PROTOTYPE(virDomainGetJobStats);
DLSYM_PROTOTYPE(virDomainGetMaxMemory);
DLSYM_PROTOTYPE(virDomainGetName);
DLSYM_PROTOTYPE(virDomainGetState);
DLSYM_PROTOTYPE(virDomainGetUUIDString);
DLSYM_PROTOTYPE(virDomainGetXMLDesc);
DLSYM_PROTOTYPE(virDomainIsActive);
DLSYM_PROTOTYPE(virDomainMemoryStats);
DLSYM_PROTOTYPE(virDomainRef);
DLSYM_PROTOTYPE(virDomainSetMemoryFlags);
DLSYM_PROTOTYPE(virDomainSetMemoryStatsPeriod);
DLSYM_PROTOTYPE(virEventRegisterImpl);
DLSYM_PROTOTYPE(virGetLastErrorMessage);
DLSYM_PROTOTYPE(virSetErrorFunc);
DLSYM_PROTOTYPE(virTypedParamsFree);
DLSYM_PROTOTYPE(virTypedParamsGetInt);

DLSYM_PROTOTYPE(virConnectDomainQemuMonitorEventDeregister);
DLSYM_PROTOTYPE(virConnectDomainQemuMonitorEventRegister);

DLSYM_PROTOTYPE(xmlDocGetRootElement);
DLSYM_PROTOTYPE(xmlFreeDoc);
DLSYM_PROTOTYPE(xmlReadMemory);
DLSYM_PROTOTYPE(xmlStrEqual);
DLSYM_PROTOTYPE(xmlXPathEvalExpression);
DLSYM_PROTOTYPE(xmlXPathFreeContext);
DLSYM_PROTOTYPE(xmlXPathFreeObject);
DLSYM_PROTOTYPE(xmlXPathNewContext);
DLSYM_PROTOTYPE(xmlXPathRegisterNs);

/* Loads the three libraries and resolves every sym_ pointer, on the first call; later calls return
 * the first one's result. When a library or a symbol is missing, says so once (naming Libvirt=, the
 * reason to load them) and returns -EOPNOTSUPP; the pointers are then not to be called. */
int dlopen_libvirt(void);
