/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <dlfcn.h>

#include "libvirt-dl.h"
#include "log.h"
#include "macro.h"

/* libxml2 2.14 changed its ABI and its soname; the headers say which one this is built for. */
#if LIBXML_VERSION >= 21400
#  define LIBXML2_SONAME "libxml2.so.16"
#else
#  define LIBXML2_SONAME "libxml2.so.2"
#endif

#define DLSYM_FUNCTION(symbol) typeof(symbol) *sym_##symbol = NULL
#define DLSYM_ARG(symbol) { (void (**)(void)) &sym_##symbol, #symbol }

DLSYM_FUNCTION(virConnectClose);
DLSYM_FUNCTION(virConnectDomainEventDeregisterAny);
DLSYM_FUNCTION(virConnectDomainEventRegisterAny);
DLSYM_FUNCTION(virConnectListAllDomains);
DLSYM_FUNCTION(virConnectOpen);
DLSYM_FUNCTION(virConnectRegisterCloseCallback);
DLSYM_FUNCTION(virConnectSetKeepAlive);
DLSYM_FUNCTION(virConnectUnregisterCloseCallback);
DLSYM_FUNCTION(virDomainFree);
DLSYM_FUNCTION(virDomainGetJobStats);
DLSYM_FUNCTION(virDomainGetMaxMemory);
DLSYM_FUNCTION(virDomainGetName);
DLSYM_FUNCTION(virDomainGetState);
DLSYM_FUNCTION(virDomainGetUUIDString);
DLSYM_FUNCTION(virDomainGetXMLDesc);
DLSYM_FUNCTION(virDomainIsActive);
DLSYM_FUNCTION(virDomainMemoryStats);
DLSYM_FUNCTION(virDomainRef);
DLSYM_FUNCTION(virDomainSetMemoryFlags);
DLSYM_FUNCTION(virDomainSetMemoryStatsPeriod);
DLSYM_FUNCTION(virEventRegisterImpl);
DLSYM_FUNCTION(virGetLastErrorMessage);
DLSYM_FUNCTION(virSetErrorFunc);
DLSYM_FUNCTION(virTypedParamsFree);
DLSYM_FUNCTION(virTypedParamsGetInt);

DLSYM_FUNCTION(virConnectDomainQemuMonitorEventDeregister);
DLSYM_FUNCTION(virConnectDomainQemuMonitorEventRegister);

DLSYM_FUNCTION(xmlDocGetRootElement);
DLSYM_FUNCTION(xmlFreeDoc);
DLSYM_FUNCTION(xmlReadMemory);
DLSYM_FUNCTION(xmlStrEqual);
DLSYM_FUNCTION(xmlXPathEvalExpression);
DLSYM_FUNCTION(xmlXPathFreeContext);
DLSYM_FUNCTION(xmlXPathFreeObject);
DLSYM_FUNCTION(xmlXPathNewContext);
DLSYM_FUNCTION(xmlXPathRegisterNs);

typedef struct DlSym {
        void (**fn)(void);
        const char *name;
} DlSym;

static const DlSym libvirt_syms[] = {
        DLSYM_ARG(virConnectClose),
        DLSYM_ARG(virConnectDomainEventDeregisterAny),
        DLSYM_ARG(virConnectDomainEventRegisterAny),
        DLSYM_ARG(virConnectListAllDomains),
        DLSYM_ARG(virConnectOpen),
        DLSYM_ARG(virConnectRegisterCloseCallback),
        DLSYM_ARG(virConnectSetKeepAlive),
        DLSYM_ARG(virConnectUnregisterCloseCallback),
        DLSYM_ARG(virDomainFree),
        DLSYM_ARG(virDomainGetJobStats),
        DLSYM_ARG(virDomainGetMaxMemory),
        DLSYM_ARG(virDomainGetName),
        DLSYM_ARG(virDomainGetState),
        DLSYM_ARG(virDomainGetUUIDString),
        DLSYM_ARG(virDomainGetXMLDesc),
        DLSYM_ARG(virDomainIsActive),
        DLSYM_ARG(virDomainMemoryStats),
        DLSYM_ARG(virDomainRef),
        DLSYM_ARG(virDomainSetMemoryFlags),
        DLSYM_ARG(virDomainSetMemoryStatsPeriod),
        DLSYM_ARG(virEventRegisterImpl),
        DLSYM_ARG(virGetLastErrorMessage),
        DLSYM_ARG(virSetErrorFunc),
        DLSYM_ARG(virTypedParamsFree),
        DLSYM_ARG(virTypedParamsGetInt),
};

static const DlSym libvirt_qemu_syms[] = {
        DLSYM_ARG(virConnectDomainQemuMonitorEventDeregister),
        DLSYM_ARG(virConnectDomainQemuMonitorEventRegister),
};

static const DlSym libxml2_syms[] = {
        DLSYM_ARG(xmlDocGetRootElement),
        DLSYM_ARG(xmlFreeDoc),
        DLSYM_ARG(xmlReadMemory),
        DLSYM_ARG(xmlStrEqual),
        DLSYM_ARG(xmlXPathEvalExpression),
        DLSYM_ARG(xmlXPathFreeContext),
        DLSYM_ARG(xmlXPathFreeObject),
        DLSYM_ARG(xmlXPathNewContext),
        DLSYM_ARG(xmlXPathRegisterNs),
};

static const struct {
        const char *soname;
        const DlSym *syms;
        size_t n_syms;
} libraries[] = {
        { "libvirt.so.0",      libvirt_syms,      ELEMENTSOF(libvirt_syms) },
        { "libvirt-qemu.so.0", libvirt_qemu_syms, ELEMENTSOF(libvirt_qemu_syms) },
        { LIBXML2_SONAME,      libxml2_syms,      ELEMENTSOF(libxml2_syms) },
};

#define N_SYMS (ELEMENTSOF(libvirt_syms) + ELEMENTSOF(libvirt_qemu_syms) + ELEMENTSOF(libxml2_syms))

/* Resolves the library's symbols into ret[]. The library stays loaded for the process' lifetime,
 * also after a failure (RTLD_NODELETE, as systemd does: GLib, which libvirt loads, cannot be
 * unloaded). */
static int dlopen_library(const char *soname, const DlSym *syms, size_t n_syms, void (**ret)(void)) {
        void *dl = dlopen(soname, RTLD_NOW | RTLD_NODELETE);

        if (!dl)
                return log_error_errno(EOPNOTSUPP, "Libvirt=yes, but %s cannot be loaded (%s): libvirt domains are "
                                       "not managed. Install libvirt's client library, or set Libvirt=no.",
                                       soname, dlerror());
        for (size_t i = 0; i < n_syms; i++) {
                ret[i] = (void (*)(void)) dlsym(dl, syms[i].name);
                if (!ret[i])
                        return log_error_errno(EOPNOTSUPP, "Libvirt=yes, but %s has no %s (%s): libvirt domains are "
                                               "not managed. autoballoond needs libvirt 9.0 or later.",
                                               soname, syms[i].name, dlerror());
        }
        return 0;
}

int dlopen_libvirt(void) {
        static int result = 1; /* not tried yet */
        void (*fns[N_SYMS])(void);
        size_t k = 0;

        if (result <= 0)
                return result;

        for (size_t i = 0; i < ELEMENTSOF(libraries); i++) {
                result = dlopen_library(libraries[i].soname, libraries[i].syms, libraries[i].n_syms, fns + k);
                if (result < 0)
                        return result;
                k += libraries[i].n_syms;
        }

        /* All or nothing: no sym_ pointer is set unless every one is. */
        k = 0;
        for (size_t i = 0; i < ELEMENTSOF(libraries); i++)
                for (size_t j = 0; j < libraries[i].n_syms; j++)
                        *libraries[i].syms[j].fn = fns[k++];
        return 0;
}
