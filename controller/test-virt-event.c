/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The sd-event implementation of libvirt's event loop, driven through libvirt's public virEvent*()
 * calls as libvirt's client library drives it. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <libvirt/libvirt.h>
#include <pthread.h>
#include <time.h>

#include "libvirt-dl.h"
#include "util.h"
#include "virt-event.h"

static sd_event *event;

typedef struct Seen {
        int calls, last_id, last_fd, last_events, freed;
        int remove_self;        /* the callback removes its own watch */
} Seen;

static void on_handle(int watch, int fd, int events, void *opaque) {
        Seen *s = opaque;

        s->calls++;
        s->last_id = watch;
        s->last_fd = fd;
        s->last_events = events;
        if (s->remove_self)
                assert_int_equal(virEventRemoveHandle(watch), 0);
}

static void on_timeout(int timer, void *opaque) {
        Seen *s = opaque;

        s->calls++;
        s->last_id = timer;
        if (s->remove_self)
                assert_int_equal(virEventRemoveTimeout(timer), 0);
}

static void on_free(void *opaque) {
        ((Seen *) opaque)->freed++;
}

/* Runs the loop until nothing is pending, at most 'n' iterations of at most 'timeout_usec' each. */
static void run(int n, uint64_t timeout_usec) {
        for (int i = 0; i < n; i++)
                if (sd_event_run(event, timeout_usec) == 0)
                        return;
}

static uint64_t now_usec(void) {
        struct timespec ts;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static void test_register(void **state) {
        assert_int_equal(virt_event_register(event), 0);
        assert_int_equal(virt_event_register(event), 0);
}

static void test_handle(void **state) {
        Seen s = {};
        int p[2], id;

        assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        id = virEventAddHandle(p[0], VIR_EVENT_HANDLE_READABLE, on_handle, &s, on_free);
        assert_true(id > 0);

        run(3, 0);
        assert_int_equal(s.calls, 0);

        assert_int_equal(write(p[1], "x", 1), 1);
        run(1, USEC_PER_SEC);
        assert_int_equal(s.calls, 1);
        assert_int_equal(s.last_id, id);
        assert_int_equal(s.last_fd, p[0]);
        assert_int_equal(s.last_events, VIR_EVENT_HANDLE_READABLE);

        /* No events: disabled, as in libvirt's own implementation, though the pipe is readable. */
        virEventUpdateHandle(id, 0);
        run(3, 0);
        assert_int_equal(s.calls, 1);

        /* Writable and readable at once. */
        virEventUpdateHandle(id, VIR_EVENT_HANDLE_READABLE | VIR_EVENT_HANDLE_WRITABLE);
        run(1, USEC_PER_SEC);
        assert_int_equal(s.calls, 2);
        assert_int_equal(s.last_events, VIR_EVENT_HANDLE_READABLE);

        /* The peer closed: a hang-up is reported with the data still there. */
        close(p[1]);
        run(1, USEC_PER_SEC);
        assert_int_equal(s.last_events, VIR_EVENT_HANDLE_READABLE | VIR_EVENT_HANDLE_HANGUP);

        /* Removed: its free callback runs later from the loop, not from inside the remove call. */
        assert_int_equal(virEventRemoveHandle(id), 0);
        assert_int_equal(s.freed, 0);
        assert_int_equal(virEventRemoveHandle(id), -1);
        int calls = s.calls;
        run(3, 0);
        assert_int_equal(s.freed, 1);
        assert_int_equal(s.calls, calls);
        virEventUpdateHandle(id, VIR_EVENT_HANDLE_READABLE); /* a stale id is ignored */

        /* The fd can be watched again at once (libvirt reconnecting gets the same fd number). */
        Seen t = { .remove_self = 1 };
        int id2 = virEventAddHandle(p[0], VIR_EVENT_HANDLE_READABLE, on_handle, &t, on_free);
        assert_true(id2 > id);
        run(3, USEC_PER_SEC);
        /* It removed itself from its own callback: called once, freed once. */
        assert_int_equal(t.calls, 1);
        assert_int_equal(t.freed, 1);
        close(p[0]);
}

static void test_timeout(void **state) {
        Seen s = {}, z = {}, o = { .remove_self = 1 };
        uint64_t start = now_usec();
        int id, zid, oid;

        id = virEventAddTimeout(50, on_timeout, &s, on_free);
        assert_true(id > 0);
        while (s.calls < 3)
                run(1, USEC_PER_SEC);
        /* Periodic, every 50 ms. */
        assert_true(now_usec() - start >= 150 * USEC_PER_MSEC);
        assert_int_equal(s.last_id, id);

        /* -1 disables it, a new interval re-enables it. */
        virEventUpdateTimeout(id, -1);
        int calls = s.calls;
        run(1, 200 * USEC_PER_MSEC);
        assert_int_equal(s.calls, calls);
        virEventUpdateTimeout(id, 10);
        run(1, USEC_PER_SEC);
        assert_int_equal(s.calls, calls + 1);
        assert_int_equal(virEventRemoveTimeout(id), 0);

        /* 0 fires on every iteration until changed. */
        zid = virEventAddTimeout(0, on_timeout, &z, on_free);
        for (int i = 0; i < 5; i++)
                assert_true(sd_event_run(event, 0) > 0);
        assert_true(z.calls >= 4);
        virEventUpdateTimeout(zid, -1);
        calls = z.calls;
        run(3, 0);
        assert_int_equal(z.calls, calls);

        /* A timer that removes itself from its callback. */
        oid = virEventAddTimeout(0, on_timeout, &o, on_free);
        run(5, 0);
        assert_int_equal(o.calls, 1);
        assert_int_equal(o.freed, 1);
        assert_int_equal(virEventRemoveTimeout(oid), -1);

        assert_int_equal(virEventRemoveTimeout(zid), 0);
        run(3, 0);
        assert_int_equal(s.freed, 1);
        assert_int_equal(z.freed, 1);
}

/* libvirt updates its watches from whichever thread makes a call: a handle added, changed and
 * removed from another thread takes effect in the loop's thread, and its free callback runs there. */
typedef struct Remote {
        int fd, id, op;
        Seen *seen;
} Remote;

static void *remote_op(void *userdata) {
        Remote *r = userdata;

        if (r->op == 0)
                r->id = virEventAddHandle(r->fd, VIR_EVENT_HANDLE_READABLE, on_handle, r->seen, on_free);
        else if (r->op == 1)
                virEventUpdateHandle(r->id, 0);
        else
                assert_int_equal(virEventRemoveHandle(r->id), 0);
        return NULL;
}

static void in_thread(Remote *r, int op) {
        pthread_t t;

        r->op = op;
        assert_int_equal(pthread_create(&t, NULL, remote_op, r), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
}

static void test_other_thread(void **state) {
        Seen s = {};
        Remote r = { .seen = &s };
        int p[2];

        assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        r.fd = p[0];
        assert_int_equal(write(p[1], "x", 1), 1);

        in_thread(&r, 0);
        assert_true(r.id > 0);
        assert_int_equal(s.calls, 0); /* nothing ran in that thread */
        run(3, USEC_PER_SEC);
        assert_true(s.calls > 0);
        assert_int_equal(s.last_id, r.id);

        in_thread(&r, 1); /* no events: disabled */
        run(3, 10 * USEC_PER_MSEC);
        s.calls = 0;
        run(3, 10 * USEC_PER_MSEC);
        assert_int_equal(s.calls, 0);

        in_thread(&r, 2);
        assert_int_equal(s.freed, 0);
        run(3, 10 * USEC_PER_MSEC);
        assert_int_equal(s.freed, 1);
        assert_int_equal(virEventRemoveHandle(r.id), -1);

        safe_close(p[0]);
        safe_close(p[1]);
}

static void test_flush(void **state) {
        Seen s = {};
        int id = virEventAddTimeout(-1, on_timeout, &s, on_free);

        assert_int_equal(virEventRemoveTimeout(id), 0);
        virt_event_flush();
        assert_int_equal(s.freed, 1);
        assert_int_equal(s.calls, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_register),
                cmocka_unit_test(test_handle),
                cmocka_unit_test(test_timeout),
                cmocka_unit_test(test_other_thread),
                cmocka_unit_test(test_flush),
        };
        int r;

        /* The daemon's copy of libvirt is the one this test links: the same event loop hooks. */
        assert_int_equal(dlopen_libvirt(), 0);
        assert_true(sd_event_new(&event) >= 0);
        r = cmocka_run_group_tests(tests, NULL, NULL);
        virt_event_flush();
        sd_event_unref(event);
        return r;
}
