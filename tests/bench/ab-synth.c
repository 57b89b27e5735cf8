/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* ab-synth: writes a synthetic trace in the format of autoballoond --record (controller/trace.h), for
 * ab-replay and the scale benchmark. Not installed. */

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "config.h"
#include "trace.h"
#include "util.h"

static void help(void) {
        printf("ab-synth [OPTIONS...]\n\n"
               "Writes a synthetic trace of the policy's input to stdout, one JSON line per decision,\n"
               "as autoballoond --record=FILE writes them, with the daemon's default parameters. The\n"
               "balloons stay where they start (as under Policy=none); ab-replay moves them.\n\n"
               "  -h --help             Show this help\n"
               "     --vms=N            Number of VMs (default 16)\n"
               "     --records=N        Number of decisions (default 300)\n"
               "     --interval=SEC     Time between decisions (default 2)\n"
               "     --pressure=WAVE    wave: host available memory swings between 2%% and 32%% of host\n"
               "                        memory over 10 minutes, the trigger fires below 8%%, guests\n"
               "                        come under pressure now and then (default);\n"
               "                        always: every decision has the trigger, 2%% available and the\n"
               "                        host above 80%% used, so every mode does its full work\n"
               "     --seed=N           Random seed (default 1)\n");
}

/* splitmix64: a fixed sequence per seed, on every machine. */
static uint64_t rnd(uint64_t *state) {
        uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
        z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
        return z ^ (z >> 31);
}

static uint64_t rnd_range(uint64_t *state, uint64_t lo, uint64_t hi) {
        return lo + rnd(state) % (hi - lo + 1);
}

typedef struct SynthVM {
        char name[32];
        uint64_t boot;
        uint64_t used;    /* the guest workload's memory */
} SynthVM;

static int parse_count(const char *s, uint64_t min, uint64_t *ret) {
        uint64_t u;

        if (safe_atou64(s, &u) < 0 || u < min)
                return -EINVAL;
        *ret = u;
        return 0;
}

int main(int argc, char *argv[]) {
        enum { ARG_VMS = 0x100, ARG_RECORDS, ARG_INTERVAL, ARG_PRESSURE, ARG_SEED };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "vms", required_argument, NULL, ARG_VMS },
                { "records", required_argument, NULL, ARG_RECORDS },
                { "interval", required_argument, NULL, ARG_INTERVAL },
                { "pressure", required_argument, NULL, ARG_PRESSURE },
                { "seed", required_argument, NULL, ARG_SEED },
                {}
        };
        uint64_t n = 16, records = 300, interval = 2 * USEC_PER_SEC, seed = 1;
        bool always = false;
        int c, r = 0;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VMS:
                        r = parse_count(optarg, 1, &n);
                        break;
                case ARG_RECORDS:
                        r = parse_count(optarg, 1, &records);
                        break;
                case ARG_INTERVAL:
                        r = parse_time_usec(optarg, &interval);
                        break;
                case ARG_PRESSURE:
                        always = streq(optarg, "always");
                        r = always || streq(optarg, "wave") ? 0 : -EINVAL;
                        break;
                case ARG_SEED:
                        r = parse_count(optarg, 0, &seed);
                        break;
                default:
                        return 2;
                }
                if (r < 0) {
                        fprintf(stderr, "Invalid value: --%s=%s, see --help.\n", options[c - ARG_VMS + 1].name, optarg);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "ab-synth takes options only, see --help.\n");
                return 2;
        }

        _cleanup_(config_freep) Config *config = NULL;
        _cleanup_free_ SynthVM *synth = new0(SynthVM, n);
        _cleanup_free_ PolicyVM *vms = new0(PolicyVM, n);
        VMConfig vc;
        uint64_t sum_boot = 0;
        PolicyParams params;

        if (!synth || !vms || config_new(&config) < 0) {
                fprintf(stderr, "Out of memory.\n");
                return 1;
        }
        config_policy_params(config, &params);
        vm_config_defaults(&vc);

        for (uint64_t i = 0; i < n; i++) {
                SynthVM *s = &synth[i];
                uint64_t boot = rnd_range(&seed, 4, 32) * 256 * MIB;

                (void) snprintf(s->name, sizeof s->name, "vm%05" PRIu64, i);
                s->boot = boot;
                s->used = boot / 100 * rnd_range(&seed, 20, 70);
                sum_boot += boot;
                vms[i] = (PolicyVM) {
                        .name = s->name,
                        .weight = (uint64_t[]) { 50, 100, 100, 200 }[rnd(&seed) % 4],
                        .min = size_spec_resolve(vc.min_memory, boot),
                        .max = size_spec_resolve(vc.max_memory, boot),
                        .actual = boot / 4096 * rnd_range(&seed, 2048, 4096),
                        .memory_high_known = true,
                        .has_stats = true,
                };
                vms[i].actual = MAX(vms[i].actual / 4096 * 4096, vms[i].min);
                vms[i].target = vms[i].actual;
                vms[i].memory_high = vms[i].actual + config->memory_high_overhead;
        }

        /* Overcommitted: the guests could use 1.25x the host. */
        PolicyHost host = { .total = sum_boot / 5 * 4 };
        params.host_reserve = size_spec_resolve(config->host_reserve, host.total);

        for (uint64_t k = 0; k < records; k++) {
                double phase = 2 * M_PI * (double) (k * interval) / (600.0 * USEC_PER_SEC);
                double avail = always ? 0.02 : 0.17 + 0.15 * sin(phase);

                host.now_usec = USEC_PER_SEC * 1000 + k * interval;
                host.available = (uint64_t) (avail * (double) host.total);
                host.pressure = always || avail < 0.08;

                for (uint64_t i = 0; i < n; i++) {
                        SynthVM *s = &synth[i];
                        PolicyVM *vm = &vms[i];

                        /* The workload drifts by up to 2% of the guest a decision. */
                        uint64_t step = s->boot / 50;
                        s->used = CLAMP(s->used + rnd_range(&seed, 0, 2 * step) - step, s->boot / 10, s->boot);

                        vm->guest_available = vm->actual > s->used ? vm->actual - s->used : 0;
                        vm->guest_free = vm->guest_available / 2;
                        vm->memory_current = MIN(vm->actual, s->used) + 64 * MIB;
                        vm->guest_reserve = size_spec_resolve(config->guest_reserve, vm->actual);
                        vm->guest_min_available = size_spec_resolve(config->guest_min_available, vm->actual);
                        /* Short of memory, the guest swaps. */
                        vm->swap_in_rate = vm->guest_available < vm->guest_reserve ? 4 * MIB : 0;
                }

                r = trace_write(stdout, &params, &host, vms, n);
                if (r < 0) {
                        fprintf(stderr, "Cannot write the trace: %s\n", strerror(-r));
                        return 1;
                }
        }
        return 0;
}
