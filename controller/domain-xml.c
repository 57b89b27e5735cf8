/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "domain-xml.h"
#include "libvirt-dl.h"
#include "log.h"
#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(xmlDoc *, sym_xmlFreeDoc);
DEFINE_TRIVIAL_CLEANUP_FUNC(xmlXPathContext *, sym_xmlXPathFreeContext);

/* The string value of the first node 'expr' selects (XPath string()), NULL when none or empty. */
static int xpath_string(xmlXPathContext *ctx, const char *expr, char **ret) {
        _cleanup_free_ char *q = NULL;
        xmlXPathObject *o;
        char *s = NULL;

        if (asprintf(&q, "string(%s)", expr) < 0)
                return -ENOMEM;
        o = sym_xmlXPathEvalExpression((const xmlChar *) q, ctx);
        if (!o)
                return -ENOMEM;
        if (o->type == XPATH_STRING && o->stringval && o->stringval[0]) {
                s = strdup((const char *) o->stringval);
                if (!s) {
                        sym_xmlXPathFreeObject(o);
                        return -ENOMEM;
                }
        }
        sym_xmlXPathFreeObject(o);
        *ret = s;
        return 0;
}

static bool xpath_exists(xmlXPathContext *ctx, const char *expr) {
        xmlXPathObject *o = sym_xmlXPathEvalExpression((const xmlChar *) expr, ctx);
        bool found = o && o->type == XPATH_NODESET && !xmlXPathNodeSetIsEmpty(o->nodesetval);

        sym_xmlXPathFreeObject(o);
        return found;
}

static const struct {
        const char *element, *key;
} metadata_keys[] = {
        { "weight", "Weight" },
        { "min-memory", "MinMemory" },
        { "max-memory", "MaxMemory" },
};

static int parse_metadata(xmlXPathContext *ctx, const char *name, VMConfig *c) {
        for (size_t i = 0; i < ELEMENTSOF(metadata_keys); i++) {
                _cleanup_free_ char *expr = NULL, *value = NULL;
                const char *reason = NULL;
                int r;

                /* Our element's children in our namespace or in none: "virsh metadata --set" puts
                 * only the top element in the namespace. */
                if (asprintf(&expr, "/domain/metadata/ab:vm/*[local-name()='%s' and "
                             "(namespace-uri()='' or namespace-uri()='" DOMAIN_METADATA_NS "')]",
                             metadata_keys[i].element) < 0)
                        return -ENOMEM;
                r = xpath_string(ctx, expr, &value);
                if (r < 0)
                        return r;
                if (!value)
                        continue;
                r = vm_config_set(c, metadata_keys[i].key, value, &reason);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        log_warning("%s: <metadata> <%s>%s</%s>: %s, ignoring it", name, metadata_keys[i].element,
                                    value, metadata_keys[i].element, reason);
        }
        return 0;
}

static const char *why_unsupported(xmlXPathContext *ctx) {
        if (!xpath_exists(ctx, "/domain/devices/memballoon"))
                return "no memballoon device in the domain (add <memballoon model='virtio'/>)";
        if (!xpath_exists(ctx, "/domain/devices/memballoon[starts-with(@model, 'virtio')]"))
                return "its memballoon device is not virtio (model='none'?)";
        /* VFIO maps all guest memory for DMA and pins it: a balloon frees nothing on the host. PCI host
         * devices use VFIO unless another driver is named. */
        if (xpath_exists(ctx, "/domain/devices/hostdev[@type='pci'][not(driver/@name) or driver/@name='vfio'] | "
                              "/domain/devices/hostdev[@type='mdev']"))
                return "it has a VFIO host device, which pins guest memory";
        return NULL;
}

int domain_xml_parse(const char *xml, const char *name, DomainInfo *ret) {
        _cleanup_(sym_xmlFreeDocp) xmlDoc *doc = NULL;
        _cleanup_(sym_xmlXPathFreeContextp) xmlXPathContext *ctx = NULL;
        DomainInfo i = {};
        int r;

        doc = sym_xmlReadMemory(xml, (int) strlen(xml), "domain.xml", NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!doc || !sym_xmlDocGetRootElement(doc) || !sym_xmlStrEqual(sym_xmlDocGetRootElement(doc)->name, BAD_CAST "domain"))
                return -EBADMSG;
        ctx = sym_xmlXPathNewContext(doc);
        if (!ctx || sym_xmlXPathRegisterNs(ctx, BAD_CAST "ab", BAD_CAST DOMAIN_METADATA_NS) < 0)
                return -ENOMEM;

        vm_config_defaults(&i.config);
        i.unsupported = why_unsupported(ctx);
        r = xpath_string(ctx, "/domain/resource/partition", &i.partition);
        if (r >= 0)
                r = xpath_string(ctx, "/domain/devices/memballoon/alias/@name", &i.balloon_alias);
        if (r >= 0)
                r = parse_metadata(ctx, name, &i.config);
        if (r < 0) {
                domain_info_done(&i);
                return r;
        }
        *ret = i;
        return 0;
}

void domain_info_done(DomainInfo *i) {
        free(i->partition);
        free(i->balloon_alias);
        *i = (DomainInfo) {};
}
