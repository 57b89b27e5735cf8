/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Weighted water-filling with the idle memory tax: how a budget is shared among VMs within their
 * floors and ceilings (policy_fill() in policy-internal.h, policy_water_fill() in policy.h).
 *
 * An item at level L gets x(L) bytes above its floor: L * weight while that is busy memory, then
 * its idle bytes at 'keep' = 1 - tax_rate per unit of level and weight, up to its range. The sum of
 * the x is piecewise linear and concave in L; the level is where it reaches what is to be shared,
 * found exactly (but for the doubles' rounding) by a selection over its breakpoints, expected O(n),
 * where a bisection took some 55 passes over the items. The integer allocations are the x rounded
 * down at that level, and the few bytes left go first to the items that grow between it and the
 * next double up, then in order to any with room: deterministic. */

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "policy-internal.h"

/* An item as the rounding sees it: weight, range and busy memory above the floor, as doubles; and
 * its bytes at the level's next double up. */
typedef struct FillLevel {
        double weight, busy, range;
        uint64_t at_hi;
} FillLevel;

/* A ramp of the sum: slope * (clamp(L, lo, hi) - lo). Each item has two: its busy memory, from 0 to
 * busy / weight, and its idle memory above that, up to its full level. */
typedef struct FillRamp {
        double lo, hi, slope;
} FillRamp;

static double fill_x(const FillLevel *it, double level, double keep) {
        double c = level * it->weight, x;

        if (c <= it->busy)
                return c;
        x = it->busy + (c - it->busy) * keep;
        return MIN(x, it->range);
}

/* Bytes above the floor at 'level': x rounded down. */
static uint64_t fill_bytes(const FillLevel *it, uint64_t range, double level, double keep) {
        double x = fill_x(it, level, keep);

        /* A double below (double) range converts to at most range. */
        if (!(x < (double) range))
                return range;
        return MIN((uint64_t) x, range);
}

/* The next double above a non-negative one: their bit patterns are in the same order. */
static double next_up(double d) {
        uint64_t b;

        memcpy(&b, &d, sizeof b);
        b++;
        memcpy(&d, &b, sizeof d);
        return d;
}

/* A breakpoint of the ramp strictly inside (lo, hi), or NAN. */
static double ramp_inside(const FillRamp *r, double lo, double hi) {
        if (r->lo > lo && r->lo < hi)
                return r->lo;
        if (r->hi > lo && r->hi < hi)
                return r->hi;
        return NAN;
}

/* The next pivot: the median of three ramps' breakpoints inside (lo, hi), the VMs' order being as
 * good as random; else any breakpoint inside, or NAN. */
static double ramps_pivot(const FillRamp *r, size_t n, double lo, double hi) {
        double a, b, c;

        if (n == 0)
                return NAN;
        a = ramp_inside(&r[n / 4], lo, hi);
        b = ramp_inside(&r[n / 2], lo, hi);
        c = ramp_inside(&r[n - 1 - n / 4], lo, hi);
        if (!isnan(a) && !isnan(b) && !isnan(c))
                return MAX(MIN(a, b), MIN(MAX(a, b), c));
        for (size_t i = 0; i < n && isnan(a); i++)
                a = ramp_inside(&r[i], lo, hi);
        return a;
}

/* Where the exact sum of the ramps reaches 'want'. Each round takes a pivot among the breakpoints
 * inside the bracket [lo, hi], and in one pass evaluates the sum there, keeps the ramps with a
 * breakpoint inside the bracket, and folds the others into the sum's value at lo and its slope,
 * where the sum is linear; the pivot then halves the bracket. Without a breakpoint inside, a last
 * pass folds every ramp. Expected O(n). */
static double ramps_root(FillRamp *r, size_t n, double want, double slope0) {
        /* The sum is concave: below slope0 * L, its slope at 0, which bounds the root from below. */
        double lo = slope0 > 0 ? want / slope0 : 0, hi = INFINITY, at_lo = 0, slope = 0;
        double pivot = ramps_pivot(r, n, lo, hi);

        for (;;) {
                double s = 0;
                size_t k = 0;

                for (size_t i = 0; i < n; i++) {
                        if (r[i].hi <= lo)
                                at_lo += r[i].slope * (r[i].hi - r[i].lo);
                        else if (r[i].lo >= hi)
                                continue;
                        else if (r[i].lo <= lo && r[i].hi >= hi) {
                                at_lo += r[i].slope * (lo - r[i].lo);
                                slope += r[i].slope;
                        } else {
                                s += r[i].slope * (CLAMP(pivot, r[i].lo, r[i].hi) - r[i].lo);
                                r[k++] = r[i];
                        }
                }
                n = k;
                if (isnan(pivot))
                        break; /* none was kept: the sum is linear on the bracket */

                s += at_lo + slope * (pivot - lo);
                if (s <= want) {
                        /* What was linear from lo is so up to the pivot. */
                        at_lo += slope * (pivot - lo);
                        lo = pivot;
                } else
                        hi = pivot;

                pivot = ramps_pivot(r, n, lo, hi);
        }

        if (slope <= 0)
                return lo;
        return CLAMP(lo + (want - at_lo) / slope, lo, hi);
}

int policy_fill(unsigned __int128 budget, FillItem *items, size_t n, double tax_rate, double *ret_level) {
        unsigned __int128 sum_floor = 0, sum_ceil = 0, want, sum = 0, room_hi = 0;
        double keep = 1.0 - tax_rate, slope0 = 0;
        size_t m = 0;

        for (size_t i = 0; i < n; i++) {
                FillItem *it = &items[i];

                it->weight = it->weight ?: 1;
                /* Inconsistent limits: the floor wins, nobody is pushed below it. */
                it->ceil = MAX(it->ceil, it->floor);
                it->idle = MIN(it->idle, it->ceil - it->floor);
                sum_floor += it->floor;
                sum_ceil += it->ceil;
                m += it->ceil > it->floor;
        }

        budget = CLAMP(budget, sum_floor, sum_ceil);
        if (budget == sum_floor || budget == sum_ceil) {
                for (size_t i = 0; i < n; i++)
                        items[i].alloc = budget == sum_floor ? items[i].floor : items[i].ceil;
                if (ret_level)
                        *ret_level = budget == sum_floor ? 0 : INFINITY;
                return 0;
        }
        want = budget - sum_floor;

        /* The items with room, in their order (which the rounding follows), and their ramps. */
        _cleanup_free_ FillLevel *levels = reallocarray(NULL, m, sizeof(FillLevel) + 2 * sizeof(FillRamp));
        if (!levels)
                return -ENOMEM;
        FillRamp *ramps = (FillRamp *) (levels + m);
        size_t k = 0, nr = 0;
        for (size_t i = 0; i < n; i++) {
                const FillItem *it = &items[i];
                uint64_t range = it->ceil - it->floor;
                FillLevel *l;

                if (range == 0)
                        continue;
                l = &levels[k++];
                *l = (FillLevel) {
                        .weight = (double) it->weight,
                        .busy = (double) (range - it->idle),
                        .range = (double) range,
                };
                double busy_end = l->busy / l->weight, full = (l->busy + (double) it->idle / keep) / l->weight;
                if (busy_end > 0)
                        ramps[nr++] = (FillRamp) { .lo = 0, .hi = busy_end, .slope = l->weight };
                if (full > busy_end)
                        ramps[nr++] = (FillRamp) { .lo = busy_end, .hi = full, .slope = l->weight * keep };
                slope0 += busy_end > 0 ? l->weight : l->weight * keep;
        }

        double lo = ramps_root(ramps, nr, (double) want, slope0), hi = next_up(lo);

        /* Integer allocations at 'lo', then the few bytes of rounding left: first to those that grow
         * between lo and hi, then anywhere there is room, in order (deterministic). */
        k = 0;
        for (size_t i = 0; i < n; i++) {
                FillItem *it = &items[i];
                uint64_t range = it->ceil - it->floor;

                if (range == 0)
                        continue;
                /* alloc holds the bytes at lo until the end. */
                it->alloc = fill_bytes(&levels[k], range, lo, keep);
                levels[k].at_hi = fill_bytes(&levels[k], range, hi, keep);
                sum += it->alloc;
                room_hi += sub_sat(levels[k].at_hi, it->alloc);
                k++;
        }

        unsigned __int128 excess = sum > want ? sum - want : 0, deficit = sum < want ? want - sum : 0;
        unsigned __int128 give_hi = MIN(deficit, room_hi), give_any = deficit - give_hi;
        k = 0;
        for (size_t i = 0; i < n; i++) {
                FillItem *it = &items[i];
                uint64_t a = it->alloc, g;

                if (it->ceil == it->floor) {
                        it->alloc = it->floor;
                        continue;
                }

                g = (uint64_t) MIN(excess, (unsigned __int128) a);
                a -= g;
                excess -= g;

                g = (uint64_t) MIN(give_hi, (unsigned __int128) sub_sat(levels[k].at_hi, a));
                k++;
                a += g;
                give_hi -= g;

                g = (uint64_t) MIN(give_any, (unsigned __int128) (it->ceil - it->floor - a));
                a += g;
                give_any -= g;

                it->alloc = it->floor + a;
        }
        if (ret_level)
                *ret_level = lo;
        return 0;
}

int policy_water_fill(uint64_t budget, size_t n, const uint64_t *weight, const uint64_t *floor,
                      const uint64_t *ceil, const uint64_t *idle, double tax_rate, uint64_t *alloc,
                      double *ret_level) {
        _cleanup_free_ FillItem *items = reallocarray(NULL, n, sizeof(FillItem));
        int r;

        if (!items && n > 0)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                items[i] = (FillItem) {
                        .weight = weight[i],
                        .floor = floor[i],
                        .ceil = ceil[i],
                        .idle = idle ? idle[i] : 0,
                };

        if (!(tax_rate >= 0 && tax_rate < 1))
                tax_rate = 0;
        r = policy_fill(budget, items, n, tax_rate, ret_level);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                alloc[i] = items[i].alloc;
        return 0;
}
