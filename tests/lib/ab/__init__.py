# SPDX-License-Identifier: LGPL-2.1-or-later
"""The test harness for autoballoon: real QEMU guests and real (test) cgroups on this host.

util      sizes, waiting, short run directories
qmp       a synchronous QMP client
agent     the client of abguest, the test guest's agent on its virtio console
cache     the cached builds: guest image, patched kernels, patched QEMU
guest     Guest: a QEMU/TCG guest of the test image, its agent and a harness QMP monitor
cgroup    TestCgroup: the test's own cgroups (v1 memory + cgroup2 on hybrid hosts, or cgroup2)
hog       PageCacheHog: host memory pressure from page cache, without anonymous memory
measure   process counters, PSI files, percentiles
scenario  the closed loop: guests in balloon slices, autoballoond, pressure knobs
virt      a real libvirtd and guests as libvirt domains
notify    sd_notify messages as the service manager would get them

Standard library only (virt needs Debian's libvirt daemon, not its Python binding); the lab copies
this package into its L1 image.
"""
