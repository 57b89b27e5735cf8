/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* ab-replay: feeds a trace of the policy's input (autoballoond --record, or ab-synth) back through the
 * pure policy in any mode, to compare the modes without guests. Not installed. */

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#if HAVE_CALLGRIND
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#endif

#include "policy.h"
#include "trace.h"
#include "util.h"

static void help(void) {
        printf("ab-replay [OPTIONS...] TRACE\n\n"
               "Feeds a trace written by autoballoond --record=FILE (or ab-synth) through policy modes\n"
               "and prints, per mode, what it decided: decisions by kind, bytes inflated and deflated,\n"
               "the time the host spent below HostReserve=, the VM decisions that saw guest pressure,\n"
               "and the time one decision took. TRACE may be - for stdin.\n\n"
               "Open loop (the default): every decision sees the recorded world as it was; only each\n"
               "mode's own carried state (hysteresis, back-off, rate and cycle clocks) is its own. The\n"
               "counts say what each mode would have ordered; nothing it orders changes what it sees.\n\n"
               "Closed loop (--closed-loop): a MODEL, not a simulation of guests. Balloons move towards\n"
               "the targets a mode sets at --rate; host available memory is the recorded one plus what\n"
               "the modelled balloons hold beyond the recorded ones; a guest's available and free memory\n"
               "move one for one with its balloon; the host trigger fires when it fired in the recording\n"
               "and the modelled host has no more available memory than the recorded one, or when the\n"
               "modelled host is below HostReserve=. Recorded guest signals (swap-in, faults, stalls,\n"
               "OOM kills, the driver's events) are replayed while the modelled guest is no larger than\n"
               "the recorded one, and dropped while it is larger.\n\n"
               "  -h --help             Show this help\n"
               "     --policy=LIST      Comma-separated modes: autoballoon, none, rfc, proxmox\n"
               "                        (default: all)\n"
               "     --closed-loop      Run the model described above\n"
               "     --rate=SIZE        Closed loop: balloon speed per second (default 64M)\n"
               "     --repeat=N         Time each decision over N calls (default 1)\n"
               "     --tsv              Tab-separated figures (bytes, microseconds, nanoseconds) instead\n"
               "                        of a Markdown table\n"
               "     --decisions        Instead of the figures, every decision that acts, tab-separated:\n"
               "                        record, mode, VM, action, target, memory.high, reason; and per\n"
               "                        record and mode the summary: host pressure, goal, planned, reason\n");
}

/* One VM as one run sees it: the mode's carried state and, in the closed loop, the modelled balloon. */
typedef struct VMState {
        char *name;
        PolicyCarry carry;
        uint64_t actual, target, last_progress_usec, memory_high;
} VMState;

typedef struct Run {
        PolicyMode mode;
        VMState *vms;      /* sorted by name */
        size_t n_vms;
        uint64_t last_reclaim_usec, last_cycle_usec, last_pressure_usec;
        bool started;

        PolicyVM *snapshot;
        PolicyDecision *out;
        VMState **map;     /* snapshot index -> state */
        size_t allocated;

        uint64_t prev_now;
        bool prev_below;

        /* The figures. */
        uint64_t decisions, actions[_POLICY_ACTION_MAX], inflated, deflated, below_usec, guest_pressure;
        uint64_t decide_nsec;
} Run;

typedef struct Options {
        bool closed_loop;
        uint64_t rate;
        uint64_t repeat;
        bool tsv;
        bool decisions;
} Options;

static void run_done(Run *r) {
        for (size_t i = 0; i < r->n_vms; i++)
                free(r->vms[i].name);
        free(r->vms);
        free(r->snapshot);
        free(r->out);
        free(r->map);
}

static int cmp_state(const void *a, const void *b) {
        return strcmp(((const VMState *) a)->name, ((const VMState *) b)->name);
}

static VMState *run_find(Run *r, const char *name) {
        VMState key = { .name = (char *) name };
        return r->n_vms > 0 ? bsearch(&key, r->vms, r->n_vms, sizeof *r->vms, cmp_state) : NULL;
}

static int run_grow(Run *r, size_t n) {
        if (n <= r->allocated)
                return 0;
        PolicyVM *s = reallocarray(r->snapshot, n, sizeof *s);
        if (!s)
                return -ENOMEM;
        r->snapshot = s;
        PolicyDecision *o = reallocarray(r->out, n, sizeof *o);
        if (!o)
                return -ENOMEM;
        r->out = o;
        VMState **m = reallocarray(r->map, n, sizeof *m);
        if (!m)
                return -ENOMEM;
        r->map = m;
        r->allocated = n;
        return 0;
}

/* Finds every VM of the record, adding those seen for the first time with the record's state. */
static int run_map(Run *r, const TraceRecord *t) {
        size_t added = 0;

        for (size_t i = 0; i < t->n_vms; i++)
                if (!t->vms[i].name)
                        return -EBADMSG;

        for (size_t i = 0; i < t->n_vms; i++) {
                const PolicyVM *vm = &t->vms[i];

                if (run_find(r, vm->name))
                        continue;
                VMState *l = reallocarray(r->vms, r->n_vms + added + 1, sizeof *l);
                if (!l)
                        return -ENOMEM;
                r->vms = l;
                r->vms[r->n_vms + added] = (VMState) {
                        .name = strdup(vm->name),
                        .carry = vm->carry,
                        .actual = vm->actual,
                        .target = vm->target,
                        .last_progress_usec = vm->last_progress_usec,
                        .memory_high = vm->memory_high,
                };
                if (!r->vms[r->n_vms + added].name)
                        return -ENOMEM;
                added++;
        }
        if (added > 0) {
                r->n_vms += added;
                qsort(r->vms, r->n_vms, sizeof *r->vms, cmp_state);
                for (size_t i = 1; i < r->n_vms; i++)
                        if (streq(r->vms[i - 1].name, r->vms[i].name))
                                return -EBADMSG; /* a VM twice in one record */
        }

        for (size_t i = 0; i < t->n_vms; i++)
                r->map[i] = run_find(r, t->vms[i].name);
        return 0;
}

static uint64_t sub_usec(uint64_t a, uint64_t b) {
        return a > b ? a - b : 0;
}

static uint64_t clamp_add(uint64_t v, __int128 delta, uint64_t max) {
        __int128 x = (__int128) v + delta;
        return x < 0 ? 0 : x > (__int128) max ? max : (uint64_t) x;
}

/* The closed loop's world at the record's time: balloons moved at the rate since the last decision,
 * the guests' and the host's memory following them. */
static void run_model(Run *r, const Options *o, const TraceRecord *t, uint64_t dt, PolicyHost *host) {
        uint64_t step = (uint64_t) MIN((unsigned __int128) o->rate * dt / USEC_PER_SEC, (unsigned __int128) UINT64_MAX);
        __int128 held = 0;

        for (size_t i = 0; i < t->n_vms; i++) {
                const PolicyVM *rec = &t->vms[i];
                PolicyVM *vm = &r->snapshot[i];
                VMState *s = r->map[i];

                if (s->actual != s->target && step > 0) {
                        s->actual = s->target < s->actual ? MAX(s->target, s->actual - MIN(step, s->actual)) :
                                MIN(s->target, s->actual + step);
                        s->last_progress_usec = t->host.now_usec;
                }

                __int128 delta = (__int128) s->actual - rec->actual;
                held += delta;
                vm->actual = s->actual;
                vm->target = s->target;
                vm->last_progress_usec = s->last_progress_usec;
                vm->memory_high = s->memory_high;
                vm->guest_available = clamp_add(rec->guest_available, delta, s->actual);
                vm->guest_free = clamp_add(rec->guest_free, delta, vm->guest_available);
                vm->memory_current = clamp_add(rec->memory_current, delta, UINT64_MAX);
                if (delta > 0) {
                        /* More memory than the recorded guest had when it showed them. */
                        vm->swap_in_rate = vm->major_fault_rate = 0;
                        vm->alloc_stalls = vm->direct_reclaims = vm->oom_kills = 0;
                        vm->pressure_event = false;
                }
        }

        host->available = clamp_add(t->host.available, -held, t->host.total);
        host->pressure = (t->host.pressure && host->available <= t->host.available) ||
                host->available < t->params.host_reserve;
}

/* What --decisions compares across versions of the policy: what the daemon would do and say. */
static void print_decisions(const Run *r, uint64_t record, const TraceRecord *t, const PolicySummary *summary) {
        const char *mode = policy_mode_to_string(r->mode);

        printf("%" PRIu64 "\t%s\t-\tsummary\t%s\t%" PRIu64 "\t%" PRIu64 "\t%s\n", record, mode,
               summary->host_pressure ? "pressure" : "-", summary->goal, summary->planned, summary->reason);
        for (size_t i = 0; i < t->n_vms; i++) {
                const PolicyDecision *d = &r->out[i];

                if (d->action != POLICY_NONE)
                        printf("%" PRIu64 "\t%s\t%s\t%s\t%" PRIu64 "\t%" PRIu64 "\t%s\n", record, mode,
                               t->vms[i].name, policy_action_to_string(d->action), d->target, d->memory_high,
                               d->reason);
        }
}

static int run_record(Run *r, const Options *o, uint64_t record, const TraceRecord *t) {
        PolicyParams p = t->params;
        PolicyHost host = t->host;
        PolicySummary summary;
        struct timespec a, b;
        uint64_t dt = r->started ? sub_usec(t->host.now_usec, r->prev_now) : 0;
        int k;

        k = run_grow(r, t->n_vms);
        if (k < 0)
                return k;
        k = run_map(r, t);
        if (k < 0)
                return k;
        if (!r->started) {
                r->last_reclaim_usec = t->host.last_reclaim_usec;
                r->last_cycle_usec = t->host.last_cycle_usec;
                r->last_pressure_usec = t->host.last_pressure_usec;
        }

        memcpy(r->snapshot, t->vms, t->n_vms * sizeof *r->snapshot);
        if (o->closed_loop)
                run_model(r, o, t, dt, &host);
        for (size_t i = 0; i < t->n_vms; i++) {
                const VMState *s = r->map[i];
                PolicyVM *vm = &r->snapshot[i];

                vm->carry = s->carry;
        }
        p.mode = r->mode;
        host.last_reclaim_usec = r->last_reclaim_usec;
        host.last_cycle_usec = r->last_cycle_usec;
        host.last_pressure_usec = r->last_pressure_usec;

        /* Time below the reserve: from one decision to the next, as the earlier one saw it. */
        if (r->prev_below)
                r->below_usec += dt;
        r->prev_below = host.available < p.host_reserve;
        r->prev_now = t->host.now_usec;
        r->started = true;

        /* Under valgrind --instr-atstart=no only the decisions run instrumented, not the parsing. */
        CALLGRIND_START_INSTRUMENTATION;
        (void) clock_gettime(CLOCK_MONOTONIC, &a);
        for (uint64_t n = 0; n < o->repeat && k >= 0; n++)
                k = policy_decide(&p, &host, r->snapshot, t->n_vms, r->out, &summary);
        (void) clock_gettime(CLOCK_MONOTONIC, &b);
        CALLGRIND_STOP_INSTRUMENTATION;
        if (k < 0)
                return k;
        r->decide_nsec += ((uint64_t) (b.tv_sec - a.tv_sec) * 1000000000 + (uint64_t) b.tv_nsec - (uint64_t) a.tv_nsec) /
                o->repeat;
        r->decisions++;

        if (o->decisions)
                print_decisions(r, record, t, &summary);
        r->last_reclaim_usec = summary.last_reclaim_usec;
        r->last_cycle_usec = summary.last_cycle_usec;
        r->last_pressure_usec = summary.last_pressure_usec;
        for (size_t i = 0; i < t->n_vms; i++) {
                const PolicyVM *vm = &r->snapshot[i];
                const PolicyDecision *d = &r->out[i];
                VMState *s = r->map[i];

                r->actions[d->action]++;
                r->guest_pressure += d->guest_pressure != 0;
                if (d->target < vm->target)
                        r->inflated += vm->target - d->target;
                else
                        r->deflated += d->target - vm->target;

                s->carry = d->carry;
                if (d->target != s->target)
                        s->last_progress_usec = t->host.now_usec;
                s->target = d->target;
                s->memory_high = d->memory_high;
        }
        return 0;
}

static void print_tsv(const Run *runs, size_t n) {
        printf("policy\tdecisions\tinflate\tdeflate\tcancel\thold\tstall\tset_high\tinflated_bytes\tdeflated_bytes\t"
               "below_reserve_usec\tguest_pressure\tdecide_nsec\n");
        for (size_t i = 0; i < n; i++) {
                const Run *r = &runs[i];
                printf("%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64
                       "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\n",
                       policy_mode_to_string(r->mode), r->decisions, r->actions[POLICY_INFLATE],
                       r->actions[POLICY_DEFLATE], r->actions[POLICY_CANCEL], r->actions[POLICY_HOLD],
                       r->actions[POLICY_STALL], r->actions[POLICY_SET_HIGH], r->inflated, r->deflated,
                       r->below_usec, r->guest_pressure, r->decisions ? r->decide_nsec / r->decisions : 0);
        }
}

static void print_table(const Run *runs, size_t n) {
        char a[FORMAT_BYTES_MAX], b[FORMAT_BYTES_MAX];

        printf("| policy | decisions | inflate | deflate | cancel | hold | stall | set-high | inflated | deflated "
               "| host below reserve | guest pressure | µs/decision |\n"
               "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
        for (size_t i = 0; i < n; i++) {
                const Run *r = &runs[i];
                printf("| %s | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64
                       " | %" PRIu64 " | %s | %s | %.0f s | %" PRIu64 " | %.1f |\n",
                       policy_mode_to_string(r->mode), r->decisions, r->actions[POLICY_INFLATE],
                       r->actions[POLICY_DEFLATE], r->actions[POLICY_CANCEL], r->actions[POLICY_HOLD],
                       r->actions[POLICY_STALL], r->actions[POLICY_SET_HIGH], format_bytes(a, sizeof a, r->inflated),
                       format_bytes(b, sizeof b, r->deflated), (double) r->below_usec / USEC_PER_SEC,
                       r->guest_pressure, r->decisions ? (double) r->decide_nsec / (double) r->decisions / 1000 : 0);
        }
}

static int parse_policies(const char *list, Run *runs, size_t *ret_n) {
        _cleanup_free_ char *copy = strdup(list);
        size_t n = 0;

        if (!copy)
                return -ENOMEM;
        for (char *save = NULL, *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                PolicyMode m;
                if (policy_mode_from_string(w, &m) < 0 || n >= _POLICY_MODE_MAX)
                        return -EINVAL;
                runs[n++] = (Run) { .mode = m };
        }
        if (n == 0)
                return -EINVAL;
        *ret_n = n;
        return 0;
}

static void runs_done(Run (*runs)[_POLICY_MODE_MAX]) {
        for (size_t i = 0; i < _POLICY_MODE_MAX; i++)
                run_done(&(*runs)[i]);
}

int main(int argc, char *argv[]) {
        enum { ARG_POLICY = 0x100, ARG_CLOSED_LOOP, ARG_RATE, ARG_REPEAT, ARG_TSV, ARG_DECISIONS };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "policy", required_argument, NULL, ARG_POLICY },
                { "closed-loop", no_argument, NULL, ARG_CLOSED_LOOP },
                { "rate", required_argument, NULL, ARG_RATE },
                { "repeat", required_argument, NULL, ARG_REPEAT },
                { "tsv", no_argument, NULL, ARG_TSV },
                { "decisions", no_argument, NULL, ARG_DECISIONS },
                {}
        };
        _cleanup_(runs_done) Run runs[_POLICY_MODE_MAX] = {};
        Options o = { .rate = 64 * MIB, .repeat = 1 };
        const char *policies = "autoballoon,none,rfc,proxmox";
        size_t n_runs = 0;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_POLICY:
                        policies = optarg;
                        break;
                case ARG_CLOSED_LOOP:
                        o.closed_loop = true;
                        break;
                case ARG_RATE:
                        if (parse_size(optarg, false, &o.rate, NULL) < 0 || o.rate == 0) {
                                fprintf(stderr, "Invalid --rate=%s: a size per second (e.g. 64M).\n", optarg);
                                return 2;
                        }
                        break;
                case ARG_REPEAT:
                        if (safe_atou64(optarg, &o.repeat) < 0 || o.repeat == 0) {
                                fprintf(stderr, "Invalid --repeat=%s.\n", optarg);
                                return 2;
                        }
                        break;
                case ARG_TSV:
                        o.tsv = true;
                        break;
                case ARG_DECISIONS:
                        o.decisions = true;
                        break;
                default:
                        return 2;
                }
        if (optind + 1 != argc) {
                fprintf(stderr, "ab-replay takes one trace file, see --help.\n");
                return 2;
        }
        if (parse_policies(policies, runs, &n_runs) < 0) {
                fprintf(stderr, "Invalid --policy=%s: autoballoon, none, rfc or proxmox, comma-separated.\n", policies);
                return 2;
        }

        const char *path = argv[optind];
        _cleanup_fclose_ FILE *f = streq(path, "-") ? NULL : fopen(path, "re");
        if (!f && !streq(path, "-")) {
                fprintf(stderr, "Cannot open %s: %m\n", path);
                return 1;
        }

        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        uint64_t lineno = 0, max_vms = 0, first = 0, last = 0;
        for (;;) {
                TraceRecord t;

                errno = 0;
                if (getline(&line, &size, f ?: stdin) < 0) {
                        if (errno != 0) {
                                fprintf(stderr, "Cannot read %s: %m\n", path);
                                return 1;
                        }
                        break;
                }
                lineno++;
                r = trace_parse(line, &t);
                if (r < 0) {
                        fprintf(stderr, "%s:%" PRIu64 ": %s\n", path, lineno,
                                r == -EBADMSG ? "not a trace record of this version" : strerror(-r));
                        return 1;
                }
                if (lineno == 1)
                        first = t.host.now_usec;
                last = t.host.now_usec;
                max_vms = MAX(max_vms, (uint64_t) t.n_vms);

                for (size_t i = 0; i < n_runs && r >= 0; i++)
                        r = run_record(&runs[i], &o, lineno, &t);
                trace_record_done(&t);
                if (r < 0) {
                        fprintf(stderr, "%s:%" PRIu64 ": %s\n", path, lineno,
                                r == -EBADMSG ? "a VM without a name, or twice" : strerror(-r));
                        return 1;
                }
        }

        if (o.decisions)
                return 0;
        if (o.tsv)
                print_tsv(runs, n_runs);
        else {
                printf("%s replay of %s: %" PRIu64 " decisions over %" PRIu64 " s, VMs: at most %" PRIu64,
                       o.closed_loop ? "Closed-loop (model)" : "Open-loop", path, lineno,
                       (last - MIN(first, last)) / USEC_PER_SEC, max_vms);
                if (o.closed_loop) {
                        char a[FORMAT_BYTES_MAX];
                        printf(", balloons at %s/s", format_bytes(a, sizeof a, o.rate));
                }
                printf(".\n\n");
                print_table(runs, n_runs);
        }
        return 0;
}
