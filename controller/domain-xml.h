/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "config.h"

/* What the daemon reads from a libvirt domain's live XML (virDomainGetXMLDesc()). */

/* The namespace of autoballoon's element in a domain's <metadata>:
 *
 *   <metadata>
 *     <autoballoon:vm xmlns:autoballoon="https://autoballoon.invalid/xmlns/domain/1">
 *       <autoballoon:weight>200</autoballoon:weight>
 *       <autoballoon:min-memory>256M</autoballoon:min-memory>
 *       <autoballoon:max-memory>90%</autoballoon:max-memory>
 *     </autoballoon:vm>
 *   </metadata>
 *
 * Values as Weight=, MinMemory=, MaxMemory= of a [VM] section. */
#define DOMAIN_METADATA_NS "https://autoballoon.invalid/xmlns/domain/1"

typedef struct DomainInfo {
        char *partition;          /* <resource><partition>, NULL when none */
        char *balloon_alias;      /* <memballoon><alias name=...>, NULL when none */
        const char *unsupported;  /* why it cannot balloon (static text), NULL when it can */
        VMConfig config;          /* from the metadata; *_set say which keys it gives */
} DomainInfo;

/* Parses the XML, after dlopen_libvirt() (which loads libxml2). Bad metadata values are logged (naming
 * 'name', the domain) and skipped: the domain's word is no reason not to manage it. -EBADMSG when it
 * is not a domain's XML. */
int domain_xml_parse(const char *xml, const char *name, DomainInfo *ret);
void domain_info_done(DomainInfo *i);
