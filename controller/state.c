/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "state.h"
#include "util.h"

void state_done(State *s) {
        for (size_t i = 0; i < s->n_vms; i++)
                free(s->vms[i].name);
        free(s->vms);
        *s = (State) {};
}

static int state_vm_cmp(const void *a, const void *b) {
        return strcmp(((const StateVM *) a)->name, ((const StateVM *) b)->name);
}

static bool state_name_is_valid(const char *s) {
        size_t l = strlen(s);

        if (l == 0 || l > STATE_NAME_MAX)
                return false;
        for (; *s; s++)
                if ((unsigned char) *s <= ' ' || (unsigned char) *s >= 0x7f)
                        return false;
        return true;
}

static bool boot_id_is_valid(const char *s) {
        return strlen(s) == 36 && strspn(s, "0123456789abcdef-") == 36;
}

/* Splits 'line' at single spaces into at most n words; the number of words, or SIZE_MAX if more. */
static size_t split_words(char *line, char **words, size_t n) {
        size_t k = 0;

        for (char *p = line; *p; ) {
                if (k == n)
                        return SIZE_MAX;
                words[k++] = p;
                p += strcspn(p, " ");
                if (*p)
                        *p++ = 0;
        }
        return k;
}

static int parse_deadline(const char *s, uint64_t now, uint64_t max_ahead_usec, uint64_t *ret) {
        uint64_t v;

        if (safe_atou64(s, &v) < 0 || v > now + max_ahead_usec)
                return -EBADMSG;
        *ret = v;
        return 0;
}

int state_parse(const char *text, size_t size, const char *boot_id, uint64_t now, uint64_t max_ahead_usec,
                State *ret, const char **ret_why) {
        _cleanup_free_ char *copy = NULL;
        State s = {};
        bool have_boot = false, have_paused = false;
        unsigned version = 0;
        size_t allocated = 0;
        unsigned n = 0;
        int r = 0;

#define BAD(why) do { *ret_why = (why); r = -EBADMSG; goto fail; } while (0)

        if (size > STATE_FILE_MAX) {
                *ret_why = "too large";
                return -EBADMSG;
        }
        if (memchr(text, 0, size)) {
                *ret_why = "NUL byte";
                return -EBADMSG;
        }
        copy = strndup(text, size);
        if (!copy)
                return -ENOMEM;
        if (size == 0 || copy[size - 1] != '\n') {
                *ret_why = "truncated";
                return -EBADMSG;
        }

        for (char *line = copy, *next; *line; line = next, n++) {
                char *w[8];
                size_t k;

                next = strchr(line, '\n');
                *next++ = 0;
                k = split_words(line, w, ELEMENTSOF(w));

                if (n == 0) {
                        if (k != 2 || !streq(w[0], "autoballoon-state") || !IN_SET_STR(w[1], "1", "2"))
                                BAD("not an autoballoon state file of version 1 or 2");
                        version = w[1][0] - '0';
                } else if (n == 1) {
                        if (k != 2 || !streq(w[0], "boot") || !boot_id_is_valid(w[1]))
                                BAD("no boot id");
                        if (!streq(w[1], boot_id)) {
                                *ret_why = "written in an earlier boot";
                                r = -ESTALE;
                                goto fail;
                        }
                        have_boot = true;
                } else if (n == 2) {
                        if (k != 2 || !streq(w[0], "paused") || !IN_SET_STR(w[1], "0", "1"))
                                BAD("no paused line");
                        s.paused = streq(w[1], "1");
                        have_paused = true;
                } else {
                        StateVM vm = {};
                        uint64_t stalls;

                        if (k != 5 + version || !streq(w[0], "vm"))
                                BAD(version == 1 ? "a line that is not \"vm <name> <4 numbers>\"" :
                                    "a line that is not \"vm <name> <5 numbers>\"");
                        if (!state_name_is_valid(w[1]))
                                BAD("an invalid VM name");
                        if (parse_deadline(w[2], now, max_ahead_usec, &vm.carry.hysteresis_until_usec) < 0 ||
                            parse_deadline(w[3], now, max_ahead_usec, &vm.carry.backoff_until_usec) < 0 ||
                            parse_deadline(w[4], now, 0, &vm.carry.last_inflate_usec) < 0)
                                BAD("a time out of range");
                        if (safe_atou64(w[5], &stalls) < 0 || stalls > 64)
                                BAD("a stall count out of range");
                        vm.carry.stall_count = (unsigned) stalls;
                        if (version == 2 && parse_deadline(w[6], now, 0, &vm.carry.last_refill_usec) < 0)
                                BAD("a time out of range");
                        if (s.n_vms == STATE_VMS_MAX)
                                BAD("too many VMs");

                        if (s.n_vms == allocated) {
                                size_t m = MAX(allocated * 2, (size_t) 16);
                                StateVM *l = reallocarray(s.vms, m, sizeof(StateVM));
                                if (!l) {
                                        r = -ENOMEM;
                                        goto fail;
                                }
                                s.vms = l;
                                allocated = m;
                        }
                        vm.name = strdup(w[1]);
                        if (!vm.name) {
                                r = -ENOMEM;
                                goto fail;
                        }
                        s.vms[s.n_vms++] = vm;
                }
        }
        if (!have_boot || !have_paused)
                BAD("truncated");

        /* Sorted, for state_find_vm()'s bsearch(). */
        if (s.n_vms > 0)
                qsort(s.vms, s.n_vms, sizeof(StateVM), state_vm_cmp);
        for (size_t i = 1; i < s.n_vms; i++)
                if (streq(s.vms[i - 1].name, s.vms[i].name))
                        BAD("a VM listed twice");
#undef BAD

        *ret = s;
        return 0;

fail:
        state_done(&s);
        return r;
}

const PolicyCarry *state_find_vm(const State *s, const char *name) {
        StateVM key = { .name = (char *) name };
        const StateVM *vm;

        if (s->n_vms == 0)
                return NULL;
        vm = bsearch(&key, s->vms, s->n_vms, sizeof(StateVM), state_vm_cmp);
        return vm ? &vm->carry : NULL;
}

int state_format(const State *s, const char *boot_id, char **ret) {
        _cleanup_free_ char *text = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        size_t size = 0;

        f = open_memstream(&text, &size);
        if (!f)
                return -ENOMEM;
        fprintf(f, "autoballoon-state 2\nboot %s\npaused %d\n", boot_id, s->paused);
        for (size_t i = 0; i < s->n_vms; i++) {
                const PolicyCarry *c = &s->vms[i].carry;

                if (policy_carry_is_empty(c))
                        continue;
                fprintf(f, "vm %s %" PRIu64 " %" PRIu64 " %" PRIu64 " %u %" PRIu64 "\n", s->vms[i].name,
                        c->hysteresis_until_usec, c->backoff_until_usec, c->last_inflate_usec, c->stall_count,
                        c->last_refill_usec);
        }
        if (fclose(TAKE_PTR(f)) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(text);
        return 0;
}

int state_load(const char *path, const char *boot_id, uint64_t now, uint64_t max_ahead_usec, State *ret,
               const char **ret_why) {
        _cleanup_free_ char *text = NULL;
        size_t size;
        int r;

        r = read_full_file_at(AT_FDCWD, path, STATE_FILE_MAX, &text, &size);
        if (r == -EFBIG) {
                *ret_why = "too large";
                return -EBADMSG;
        }
        if (r < 0)
                return r;
        return state_parse(text, size, boot_id, now, max_ahead_usec, ret, ret_why);
}

int state_boot_id(const char *proc_root, char ret[static 37]) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        int r;

        if (asprintf(&path, "%s/sys/kernel/random/boot_id", proc_root) < 0)
                return -ENOMEM;
        r = read_full_file_at(AT_FDCWD, path, 64, &text, NULL);
        if (r < 0)
                return r;
        text[strcspn(text, "\n")] = 0;
        if (!boot_id_is_valid(text))
                return -EBADMSG;
        memcpy(ret, text, 37);
        return 0;
}
