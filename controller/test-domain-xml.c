/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "domain-xml.h"
#include "libvirt-dl.h"
#include "log.h"

/* As virDomainGetXMLDesc() gives a running domain, shortened. */
#define DOMAIN(resource, devices, metadata)                                                     \
        "<domain type='qemu' id='3'>\n"                                                        \
        "  <name>web</name>\n"                                                                 \
        "  <uuid>6a1b0c1e-8a0f-4b5e-9c8e-1d2f3a4b5c6d</uuid>\n"                                \
        metadata                                                                               \
        "  <memory unit='KiB'>524288</memory>\n"                                               \
        "  <currentMemory unit='KiB'>524288</currentMemory>\n"                                 \
        resource                                                                               \
        "  <devices>\n"                                                                        \
        "    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"                               \
        devices                                                                                \
        "  </devices>\n"                                                                       \
        "</domain>\n"

#define BALLOON "    <memballoon model='virtio'><stats period='2'/><alias name='balloon0'/></memballoon>\n"
#define META(body)                                                                             \
        "  <metadata>\n"                                                                       \
        "    <other:x xmlns:other='http://example.com/x'><other:weight>7</other:weight></other:x>\n" \
        "    <ab:vm xmlns:ab='" DOMAIN_METADATA_NS "'>" body "</ab:vm>\n"                      \
        "  </metadata>\n"

static void test_plain(void **state) {
        DomainInfo i;

        assert_int_equal(domain_xml_parse(DOMAIN("", BALLOON, ""), "web", &i), 0);
        assert_null(i.unsupported);
        assert_null(i.partition);
        assert_string_equal(i.balloon_alias, "balloon0");
        assert_false(i.config.weight_set || i.config.min_set || i.config.max_set);
        domain_info_done(&i);

        assert_int_equal(domain_xml_parse(DOMAIN("  <resource><partition>/balloon/web</partition></resource>\n",
                                                 BALLOON, ""), "web", &i), 0);
        assert_string_equal(i.partition, "/balloon/web");
        domain_info_done(&i);
}

static void test_metadata(void **state) {
        DomainInfo i;

        assert_int_equal(domain_xml_parse(DOMAIN("", BALLOON, META("<ab:weight>200</ab:weight>"
                                                                  "<ab:min-memory>256M</ab:min-memory>"
                                                                  "<ab:max-memory> 90% </ab:max-memory>")),
                                          "web", &i), 0);
        assert_true(i.config.weight_set && i.config.min_set);
        assert_int_equal(i.config.weight, 200);
        assert_int_equal(i.config.min_memory.bytes, 256 * MIB);
        /* Surrounding blanks are not part of a value: rejected as in a config file. */
        assert_false(i.config.max_set);
        domain_info_done(&i);

        /* Any prefix, the namespace decides; another namespace's "weight" is not ours. */
        assert_int_equal(domain_xml_parse(DOMAIN("", BALLOON,
                                                 "  <metadata><q:vm xmlns:q='" DOMAIN_METADATA_NS "'>"
                                                 "<q:max-memory>90%</q:max-memory></q:vm></metadata>\n"),
                                          "web", &i), 0);
        assert_false(i.config.weight_set);
        assert_int_equal(i.config.weight, 100);
        assert_true(i.config.max_set);
        assert_int_equal(i.config.max_memory.permyriad, 9000);
        domain_info_done(&i);

        /* Bad values are skipped one by one, the good ones kept. */
        assert_int_equal(domain_xml_parse(DOMAIN("", BALLOON, META("<ab:weight>0</ab:weight>"
                                                                  "<ab:min-memory>lots</ab:min-memory>"
                                                                  "<ab:max-memory>1G</ab:max-memory>")),
                                          "web", &i), 0);
        assert_false(i.config.weight_set || i.config.min_set);
        assert_true(i.config.max_set);
        assert_int_equal(i.config.max_memory.bytes, GIB);
        domain_info_done(&i);

        assert_int_equal(domain_xml_parse(DOMAIN("", BALLOON, META("<ab:weight>99999</ab:weight>")), "web", &i), 0);
        assert_false(i.config.weight_set);
        domain_info_done(&i);

        /* As "virsh metadata --set" writes it: children without a namespace. */
        assert_int_equal(domain_xml_parse(DOMAIN("", BALLOON,
                                                 "  <metadata><ab:vm xmlns:ab='" DOMAIN_METADATA_NS "'>"
                                                 "<weight>30</weight><other:min-memory xmlns:other='urn:x'>1G"
                                                 "</other:min-memory></ab:vm></metadata>\n"),
                                          "web", &i), 0);
        assert_true(i.config.weight_set);
        assert_int_equal(i.config.weight, 30);
        assert_false(i.config.min_set);
        domain_info_done(&i);

        /* Without the namespace, the elements are not autoballoon's. */
        assert_int_equal(domain_xml_parse(DOMAIN("", BALLOON, "<metadata><vm><weight>5</weight></vm></metadata>"),
                                          "web", &i), 0);
        assert_false(i.config.weight_set);
        domain_info_done(&i);
}

static void test_unsupported(void **state) {
        DomainInfo i;

        assert_int_equal(domain_xml_parse(DOMAIN("", "", ""), "web", &i), 0);
        assert_non_null(strstr(i.unsupported, "no memballoon"));
        domain_info_done(&i);

        assert_int_equal(domain_xml_parse(DOMAIN("", "<memballoon model='none'/>", ""), "web", &i), 0);
        assert_non_null(strstr(i.unsupported, "not virtio"));
        domain_info_done(&i);

        assert_int_equal(domain_xml_parse(DOMAIN("", "<memballoon model='virtio-non-transitional'/>", ""), "web", &i), 0);
        assert_null(i.unsupported);
        domain_info_done(&i);

        assert_int_equal(domain_xml_parse(DOMAIN("", BALLOON
                                                 "<hostdev mode='subsystem' type='pci' managed='yes'>"
                                                 "<source><address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>"
                                                 "</source></hostdev>", ""), "web", &i), 0);
        assert_non_null(strstr(i.unsupported, "VFIO"));
        domain_info_done(&i);

        assert_int_equal(domain_xml_parse(DOMAIN("", BALLOON "<hostdev mode='subsystem' type='mdev' model='vfio-pci'/>", ""),
                                          "web", &i), 0);
        assert_non_null(strstr(i.unsupported, "VFIO"));
        domain_info_done(&i);

        /* A USB host device pins nothing. */
        assert_int_equal(domain_xml_parse(DOMAIN("", BALLOON "<hostdev mode='subsystem' type='usb'/>", ""), "web", &i), 0);
        assert_null(i.unsupported);
        domain_info_done(&i);
}

static void test_bad(void **state) {
        DomainInfo i = {};

        assert_int_equal(domain_xml_parse("", "web", &i), -EBADMSG);
        assert_int_equal(domain_xml_parse("<domain><name>x", "web", &i), -EBADMSG);
        assert_int_equal(domain_xml_parse("<network><name>x</name></network>", "web", &i), -EBADMSG);
        /* No network access for entities. */
        assert_int_equal(domain_xml_parse("<?xml version='1.0'?><!DOCTYPE domain SYSTEM 'http://127.0.0.1:1/x.dtd'>"
                                          "<domain><devices/></domain>", "web", &i), 0);
        domain_info_done(&i);
        assert_null(i.partition);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_plain),
                cmocka_unit_test(test_metadata),
                cmocka_unit_test(test_unsupported),
                cmocka_unit_test(test_bad),
        };

        log_setup(LOG_TARGET_STDERR, LOG_DEBUG);
        assert_int_equal(dlopen_libvirt(), 0);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
