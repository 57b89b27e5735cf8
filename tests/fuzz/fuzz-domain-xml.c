/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* A libvirt domain's XML: whoever defines the domain writes its <metadata>. */

#include "domain-xml.h"
#include "fuzz.h"
#include "libvirt-dl.h"
#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = fuzz_string(data, size);
        DomainInfo i;

        fuzz_setup_logging();
        /* libxml2 comes with libvirt, through dlopen() as in the daemon; loaded once. */
        if (dlopen_libvirt() < 0)
                abort();
        if (s && domain_xml_parse(s, "fuzz", &i) >= 0)
                domain_info_done(&i);
        return 0;
}
