/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Weighted water-filling with the idle memory tax: how a budget is shared among VMs within their
 * floors and ceilings (policy_fill() in policy-internal.h, policy_water_fill() in policy.h). */

#include "policy-internal.h"

static void fill_get(const FillOps *ops, size_t i, FillItem *ret) {
        ops->get(ops->userdata, i, ret);
        ret->weight = ret->weight ?: 1;
        /* Inconsistent limits: the floor wins, nobody is pushed below it. */
        ret->ceil = MAX(ret->ceil, ret->floor);
        ret->idle = MIN(ret->idle, ret->ceil - ret->floor);
}

/* Bytes above the floor an item gets at 'level': the largest x with cost(x) <= level * weight, where
 * the busy bytes cost 1 and the idle ones (the top of the range) 1/keep. */
static double fill_x(const FillItem *it, double level, double keep) {
        double range = (double) (it->ceil - it->floor), busy = (double) (it->ceil - it->floor - it->idle);
        double c = level * (double) it->weight, x;

        if (c <= busy)
                return c;
        x = busy + (c - busy) * keep;
        return MIN(x, range);
}

static uint64_t fill_bytes(const FillItem *it, double level, double keep) {
        uint64_t range = it->ceil - it->floor;
        double x = fill_x(it, level, keep);

        /* A double below (double) range converts to at most range. */
        if (!(x < (double) range))
                return range;
        return MIN((uint64_t) x, range);
}

void policy_fill(unsigned __int128 budget, size_t n, double tax_rate, const FillOps *ops) {
        unsigned __int128 sum_floor = 0, sum_ceil = 0, want, sum = 0;
        double keep = 1.0 - tax_rate, lo = 0, hi = 0;
        FillItem it;

        for (size_t i = 0; i < n; i++) {
                fill_get(ops, i, &it);
                sum_floor += it.floor;
                sum_ceil += it.ceil;
                double full = ((double) (it.ceil - it.floor - it.idle) + (double) it.idle / keep) /
                        (double) it.weight;
                hi = MAX(hi, full);
        }

        budget = CLAMP(budget, sum_floor, sum_ceil);
        if (budget == sum_floor || budget == sum_ceil) {
                for (size_t i = 0; i < n; i++) {
                        fill_get(ops, i, &it);
                        ops->put(ops->userdata, i, budget == sum_floor ? it.floor : it.ceil);
                }
                return;
        }
        want = budget - sum_floor;

        /* At 'hi' everybody is full, up to the rounding of the products: add a margin. */
        hi = hi * 2 + 1;
        /* Until lo and hi are adjacent doubles, which takes fewer steps than the bound. */
        for (unsigned k = 0; k < 2048; k++) {
                double mid = lo + (hi - lo) / 2, s = 0;
                if (mid <= lo || mid >= hi)
                        break;
                for (size_t i = 0; i < n; i++) {
                        fill_get(ops, i, &it);
                        s += fill_x(&it, mid, keep);
                }
                if (s <= (double) want)
                        lo = mid;
                else
                        hi = mid;
        }

        /* Integer allocations at 'lo', then the few bytes of rounding left: first to those that grow
         * between lo and hi, then anywhere there is room, in index order (deterministic). */
        unsigned __int128 room_hi = 0;
        for (size_t i = 0; i < n; i++) {
                fill_get(ops, i, &it);
                uint64_t a = fill_bytes(&it, lo, keep);
                sum += a;
                room_hi += sub_sat(fill_bytes(&it, hi, keep), a);
        }

        unsigned __int128 excess = sum > want ? sum - want : 0, deficit = sum < want ? want - sum : 0;
        unsigned __int128 give_hi = MIN(deficit, room_hi), give_any = deficit - give_hi;
        for (size_t i = 0; i < n; i++) {
                fill_get(ops, i, &it);
                uint64_t a = fill_bytes(&it, lo, keep), g;

                g = (uint64_t) MIN(excess, (unsigned __int128) a);
                a -= g;
                excess -= g;

                g = (uint64_t) MIN(give_hi, (unsigned __int128) sub_sat(fill_bytes(&it, hi, keep), a));
                a += g;
                give_hi -= g;

                g = (uint64_t) MIN(give_any, (unsigned __int128) (it.ceil - it.floor - a));
                a += g;
                give_any -= g;

                ops->put(ops->userdata, i, it.floor + a);
        }
}

typedef struct FillArrays {
        const uint64_t *weight, *floor, *ceil, *idle;
        uint64_t *alloc;
} FillArrays;

static void arrays_get(const void *userdata, size_t i, FillItem *ret) {
        const FillArrays *a = userdata;

        *ret = (FillItem) {
                .weight = a->weight[i],
                .floor = a->floor[i],
                .ceil = a->ceil[i],
                .idle = a->idle ? a->idle[i] : 0,
        };
}

static void arrays_put(void *userdata, size_t i, uint64_t alloc) {
        FillArrays *a = userdata;

        a->alloc[i] = alloc;
}

void policy_water_fill(uint64_t budget, size_t n, const uint64_t *weight, const uint64_t *floor,
                       const uint64_t *ceil, const uint64_t *idle, double tax_rate, uint64_t *alloc) {
        FillArrays a = {
                .weight = weight,
                .floor = floor,
                .ceil = ceil,
                .idle = idle,
                .alloc = alloc,
        };
        FillOps ops = {
                .get = arrays_get,
                .put = arrays_put,
                .userdata = &a,
        };

        if (!(tax_rate >= 0 && tax_rate < 1))
                tax_rate = 0;
        policy_fill(budget, n, tax_rate, &ops);
}
