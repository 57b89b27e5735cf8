/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <cmocka.h>

#include "json-util.h"
#include "log.h"
#include "macro.h"
#include "qmp.h"

static void parser_freep(QmpParser **p) {
        qmp_parser_free(*p);
}
#define _cleanup_parser_ _cleanup_(parser_freep)

static uint64_t now_usec(void) {
        struct timespec ts;

        assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- QmpParser ---- */

static const char *obj_string(json_object *o, const char *key) {
        json_object *v;

        assert_true(json_object_object_get_ex(o, key, &v));
        return json_object_get_string(v);
}

static void test_parser_byte_by_byte(void **state) {
        _cleanup_parser_ QmpParser *p = NULL;
        static const char stream[] =
                "{\"QMP\": {\"version\": {}, \"capabilities\": [\"oob\"]}}\r\n"
                "{\"return\": {\"actual\": 18446744073709551615}, \"id\": 7}\r\n";
        size_t n = strlen(stream), first_end = strchr(stream, '\r') - stream;
        json_object *o = NULL, *v;
        unsigned got = 0;

        assert_int_equal(qmp_parser_new(QMP_MAX_MESSAGE, &p), 0);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(qmp_parser_feed(p, stream + i, 1), 0);
                int r = qmp_parser_next(p, &o);
                _cleanup_json_ json_object *m = o;

                if (i + 1 == first_end) {
                        /* The greeting is complete at its closing brace, before the line break. */
                        assert_int_equal(r, 1);
                        assert_true(json_object_object_get_ex(m, "QMP", NULL));
                        got++;
                } else if (i + 1 == n - 2) {
                        assert_int_equal(r, 1);
                        assert_true(json_object_object_get_ex(m, "return", &v));
                        assert_true(json_object_object_get_ex(v, "actual", &v));
                        /* json-c keeps the full unsigned range exactly */
                        assert_true(json_object_get_uint64(v) == UINT64_MAX);
                        got++;
                } else {
                        assert_int_equal(r, 0);
                        assert_null(m);
                }
        }
        assert_int_equal(got, 2);
}

static void test_parser_several_in_one(void **state) {
        _cleanup_parser_ QmpParser *p = NULL;
        static const char stream[] =
                "{\"event\": \"A\"}\r\n{\"event\": \"B\"}{\"event\": \"C\"}\n\n  {\"event\": \"D\"";
        json_object *o;

        assert_int_equal(qmp_parser_new(QMP_MAX_MESSAGE, &p), 0);
        assert_int_equal(qmp_parser_feed(p, stream, strlen(stream)), 0);
        for (const char *name = "ABC"; *name; name++) {
                assert_int_equal(qmp_parser_next(p, &o), 1);
                _cleanup_json_ json_object *m = o;
                assert_int_equal(obj_string(m, "event")[0], *name);
        }
        assert_int_equal(qmp_parser_next(p, &o), 0);
        assert_null(o);

        /* The incomplete fourth message completes with the next read. */
        assert_int_equal(qmp_parser_feed(p, "}\r\n", 3), 0);
        assert_int_equal(qmp_parser_next(p, &o), 1);
        _cleanup_json_ json_object *m = o;
        assert_string_equal(obj_string(m, "event"), "D");
        assert_int_equal(qmp_parser_next(p, &o), 0);
}

static void test_parser_garbage(void **state) {
        static const struct {
                const char *data;
                size_t size;
        } bad[] = {
                { "this is not json", 16 },
                { "{\"a\": 1,}", 9 },
                { "{\"a\": \"\xff\"}", 10 },        /* not UTF-8 */
                { "{\"a\": \0}", 8 },               /* NUL byte */
                { "}", 1 },
                { "[1, 2]", 6 },                    /* valid JSON, but not an object */
                { "\"string\"", 8 },
                { "42\n", 3 },
                { "null\n", 5 },
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_parser_ QmpParser *p = NULL;
                json_object *o;

                assert_int_equal(qmp_parser_new(QMP_MAX_MESSAGE, &p), 0);
                assert_int_equal(qmp_parser_feed(p, bad[i].data, bad[i].size), -EBADMSG);
                /* The stream cannot be trusted any more, even with valid data after. */
                assert_int_equal(qmp_parser_feed(p, "{}", 2), -EBADMSG);
                assert_int_equal(qmp_parser_next(p, &o), 0);
        }

        /* Messages completed before the garbage are still there. */
        _cleanup_parser_ QmpParser *p = NULL;
        json_object *o;
        assert_int_equal(qmp_parser_new(QMP_MAX_MESSAGE, &p), 0);
        assert_int_equal(qmp_parser_feed(p, "{\"event\": \"X\"}\r\n#garbage", 24), -EBADMSG);
        assert_int_equal(qmp_parser_next(p, &o), 1);
        json_object_put(o);
        assert_int_equal(qmp_parser_next(p, &o), 0);
}

static char *make_message(size_t size) {
        /* {"return": "xxx..."} of exactly 'size' bytes */
        static const char head[] = "{\"return\": \"", tail[] = "\"}";
        size_t fill = size - strlen(head) - strlen(tail);
        char *s = malloc(size + 1);

        if (!s)
                abort();
        strcpy(s, head);
        memset(s + strlen(head), 'x', fill);
        strcpy(s + strlen(head) + fill, tail);
        assert_int_equal(strlen(s), size);
        return s;
}

static void test_parser_oversized(void **state) {
        _cleanup_free_ char *fits = make_message(64), *big = make_message(65);
        json_object *o;

        {
                /* Exactly the limit, twice, with separators in between that do not count. */
                _cleanup_parser_ QmpParser *p = NULL;
                assert_int_equal(qmp_parser_new(64, &p), 0);
                assert_int_equal(qmp_parser_feed(p, fits, 64), 0);
                assert_int_equal(qmp_parser_feed(p, "\r\n\r\n", 4), 0);
                assert_int_equal(qmp_parser_feed(p, fits, 64), 0);
                for (int i = 0; i < 2; i++) {
                        assert_int_equal(qmp_parser_next(p, &o), 1);
                        json_object_put(o);
                }
        }
        {
                _cleanup_parser_ QmpParser *p = NULL;
                assert_int_equal(qmp_parser_new(64, &p), 0);
                assert_int_equal(qmp_parser_feed(p, big, 65), -EMSGSIZE);
                assert_int_equal(qmp_parser_next(p, &o), 0);
        }
        {
                /* Split across reads: the size counts from the start of the message. */
                _cleanup_parser_ QmpParser *p = NULL;
                assert_int_equal(qmp_parser_new(64, &p), 0);
                assert_int_equal(qmp_parser_feed(p, big, 40), 0);
                assert_int_equal(qmp_parser_feed(p, big + 40, 24), -EMSGSIZE);
                assert_int_equal(qmp_parser_feed(p, "}", 1), -EMSGSIZE);
        }
        {
                /* An unterminated string grows without bound unless cut off. */
                _cleanup_parser_ QmpParser *p = NULL;
                _cleanup_free_ char *junk = malloc(2 * QMP_MAX_MESSAGE);
                assert_non_null(junk);
                memset(junk, 'y', 2 * QMP_MAX_MESSAGE);
                memcpy(junk, "{\"a\": \"", 7);
                assert_int_equal(qmp_parser_new(QMP_MAX_MESSAGE, &p), 0);
                assert_int_equal(qmp_parser_feed(p, junk, 2 * QMP_MAX_MESSAGE), -EMSGSIZE);
        }

        _cleanup_parser_ QmpParser *p = NULL;
        assert_int_equal(qmp_parser_new(0, &p), -EINVAL);
}

/* A document of 'unit' repeated inside '[' up to nearly 'size' bytes, left open. */
static char *make_wide(const char *unit, size_t size) {
        size_t l = strlen(unit), n = 0;
        char *s = malloc(size + 1);

        assert_non_null(s);
        s[n++] = '[';
        while (n + l + 1 < size) {
                memcpy(s + n, unit, l);
                n += l;
                s[n++] = ',';
        }
        s[n] = 0;
        return s;
}

static size_t heap_in_use(void) {
        return mallinfo2().uordblks;
}

static void test_parser_bounded(void **state) {
        /* "[{},{},..." under the size cap held 270 MiB inside json-c while it stayed incomplete. */
        _cleanup_free_ char *wide = make_wide("{}", QMP_MAX_MESSAGE - 1);
        json_object *o;

        {
                /* Fed in reads as the socket delivers them: refused before json-c holds much. */
                _cleanup_parser_ QmpParser *p = NULL;
                size_t before = heap_in_use(), n = strlen(wide), i;
                int r = 0;

                assert_int_equal(qmp_parser_new(QMP_MAX_MESSAGE, &p), 0);
                for (i = 0; i < n && r == 0; i += 4096)
                        r = qmp_parser_feed(p, wide + i, MIN((size_t) 4096, n - i));
                assert_int_equal(r, -E2BIG);
                assert_true(i < n / 8);
                assert_true(heap_in_use() - before < 1024 * 1024);
                assert_int_equal(qmp_parser_feed(p, "{}", 2), -E2BIG);
        }
        {
                /* {"a": [[[... as deep as allowed, then one more. */
                _cleanup_parser_ QmpParser *p = NULL;
                assert_int_equal(qmp_parser_new(QMP_MAX_MESSAGE, &p), 0);
                assert_int_equal(qmp_parser_feed(p, "{\"a\": ", 6), 0);
                for (unsigned i = 1; i < JSON_MAX_DEPTH; i++)
                        assert_int_equal(qmp_parser_feed(p, "[", 1), 0);
                assert_int_equal(qmp_parser_feed(p, "[", 1), -E2BIG);
        }
        {
                /* The count is per message: many small messages in one read all pass, and brackets and
                 * commas inside strings do not count. */
                _cleanup_parser_ QmpParser *p = NULL;
                static const char m[] = "{\"event\": \"X\", \"data\": {\"s\": \"[[[,,,\\\"{{\"}}\r\n";
                size_t l = strlen(m), n = 2 * JSON_MAX_VALUES;
                _cleanup_free_ char *many = malloc(n * l);
                unsigned got = 0;

                assert_non_null(many);
                for (size_t i = 0; i < n; i++)
                        memcpy(many + i * l, m, l);
                assert_int_equal(qmp_parser_new(QMP_MAX_MESSAGE, &p), 0);
                assert_int_equal(qmp_parser_feed(p, many, n * l), 0);
                while (qmp_parser_next(p, &o) > 0) {
                        json_object *d, *v;
                        assert_true(json_object_object_get_ex(o, "data", &d));
                        assert_true(json_object_object_get_ex(d, "s", &v));
                        assert_string_equal(json_object_get_string(v), "[[[,,,\"{{");
                        json_object_put(o);
                        got++;
                }
                assert_int_equal(got, n);
        }
}

/* ---- Result parsers ---- */

static json_object *parse(const char *s) {
        json_object *o = json_tokener_parse(s);
        assert_non_null(o);
        return o;
}

static void test_query_balloon(void **state) {
        static const char *const bad[] = {
                "{}", "{\"actual\": -1}", "{\"actual\": \"1G\"}", "{\"actual\": 1.0}", "{\"actual\": null}", "[]",
        };
        _cleanup_json_ json_object *ok = parse("{\"actual\": 536870912}");
        _cleanup_json_ json_object *huge = parse("{\"actual\": 18446744073709551615}");
        uint64_t actual = 0;

        assert_int_equal(qmp_parse_query_balloon(ok, &actual), 0);
        assert_int_equal(actual, 536870912);
        assert_int_equal(qmp_parse_query_balloon(huge, &actual), 0);
        assert_true(actual == UINT64_MAX);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_json_ json_object *o = parse(bad[i]);
                actual = 42;
                assert_int_equal(qmp_parse_query_balloon(o, &actual), -EBADMSG);
                assert_int_equal(actual, 42);
        }
}

/* ---- The client against a fake QMP server ---- */

/* A scripted fake of QEMU's QMP monitor on a unix socket, served from the test's own event loop. It
 * greets, answers qmp_capabilities, and records every other command for the test to answer. */
typedef struct FakeQmp {
        sd_event *event;
        char path[sizeof(((struct sockaddr_un *) NULL)->sun_path)];
        int listen_fd, fd;
        sd_event_source *listen_source, *io;
        QmpParser *parser;
        char *out;
        size_t out_size;
        bool greet;                     /* send the greeting on accept */
        const char *first_message;      /* sent instead of the greeting when set */
        unsigned n_accepted, n_capabilities;
        json_object *commands[16];
        size_t n_commands;
} FakeQmp;

static void fake_close_connection(FakeQmp *f) {
        f->io = sd_event_source_disable_unref(f->io);
        f->fd = safe_close(f->fd);
        f->parser = qmp_parser_free(f->parser);
        free(f->out);
        f->out = NULL;
        f->out_size = 0;
}

static FakeQmp *fake_free(FakeQmp *f) {
        if (!f)
                return NULL;
        fake_close_connection(f);
        sd_event_source_disable_unref(f->listen_source);
        safe_close(f->listen_fd);
        (void) unlink(f->path);
        for (size_t i = 0; i < f->n_commands; i++)
                json_object_put(f->commands[i]);
        sd_event_unref(f->event);
        free(f);
        return NULL;
}

static void fake_update_events(FakeQmp *f) {
        assert_int_equal(sd_event_source_set_io_events(f->io, EPOLLIN | (f->out_size > 0 ? EPOLLOUT : 0)), 0);
}

static void fake_send(FakeQmp *f, const char *data, size_t n) {
        assert_true(f->fd >= 0);
        f->out = realloc(f->out, f->out_size + n);
        assert_non_null(f->out);
        memcpy(f->out + f->out_size, data, n);
        f->out_size += n;
        fake_update_events(f);
}

_printf_(2, 3)
static void fake_sendf(FakeQmp *f, const char *format, ...) {
        _cleanup_free_ char *s = NULL;
        va_list ap;

        va_start(ap, format);
        assert_true(vasprintf(&s, format, ap) >= 0);
        va_end(ap);
        fake_send(f, s, strlen(s));
}

static uint64_t fake_command_id(FakeQmp *f, size_t i) {
        json_object *id;

        assert_true(i < f->n_commands);
        assert_true(json_object_object_get_ex(f->commands[i], "id", &id));
        return json_object_get_uint64(id);
}

static int fake_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        FakeQmp *f = userdata;
        char buf[4096];
        json_object *m;

        if (revents & EPOLLOUT) {
                ssize_t n = send(f->fd, f->out, f->out_size, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno != EAGAIN) {
                        /* The client hung up on us, as it does after a protocol error. */
                        fake_close_connection(f);
                        return 0;
                }
                if (n > 0) {
                        memmove(f->out, f->out + n, f->out_size - n);
                        f->out_size -= n;
                }
                fake_update_events(f);
        }

        if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return 0;
        ssize_t n = recv(f->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN)
                return 0;
        if (n <= 0) {
                fake_close_connection(f);
                return 0;
        }
        assert_int_equal(qmp_parser_feed(f->parser, buf, n), 0);
        while (qmp_parser_next(f->parser, &m) > 0) {
                json_object *cmd;

                assert_true(json_object_object_get_ex(m, "execute", &cmd));
                if (streq(json_object_get_string(cmd), "qmp_capabilities")) {
                        json_object *id;
                        assert_true(json_object_object_get_ex(m, "id", &id));
                        f->n_capabilities++;
                        fake_sendf(f, "{\"return\": {}, \"id\": %s}\r\n", json_object_to_json_string(id));
                        json_object_put(m);
                        continue;
                }
                assert_true(f->n_commands < ELEMENTSOF(f->commands));
                f->commands[f->n_commands++] = m;
        }
        return 0;
}

static int fake_on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        FakeQmp *f = userdata;
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        assert_true(cfd >= 0);
        /* Like QEMU, one client at a time: a new one replaces the old. */
        fake_close_connection(f);
        f->fd = cfd;
        f->n_accepted++;
        assert_int_equal(qmp_parser_new(QMP_MAX_MESSAGE, &f->parser), 0);
        assert_int_equal(sd_event_add_io(f->event, &f->io, cfd, EPOLLIN, fake_on_io, f), 0);
        if (f->first_message)
                fake_send(f, f->first_message, strlen(f->first_message));
        else if (f->greet)
                fake_sendf(f, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7},"
                           " \"package\": \"fake\"}, \"capabilities\": [\"oob\"]}}\r\n");
        return 0;
}

static FakeQmp *fake_new(sd_event *e, const char *path) {
        union {
                struct sockaddr sa;
                struct sockaddr_un un;
        } sa = { .un.sun_family = AF_UNIX };
        FakeQmp *f = new0(FakeQmp, 1);

        assert_non_null(f);
        f->event = sd_event_ref(e);
        f->fd = -EBADF;
        f->greet = true;
        assert_true(strlen(path) < sizeof f->path);
        strcpy(f->path, path);
        strcpy(sa.un.sun_path, path);

        f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(f->listen_fd >= 0);
        assert_int_equal(bind(f->listen_fd, &sa.sa, sizeof sa.un), 0);
        assert_int_equal(listen(f->listen_fd, 4), 0);
        assert_int_equal(sd_event_add_io(e, &f->listen_source, f->listen_fd, EPOLLIN, fake_on_accept, f), 0);
        return f;
}

/* What the client reported, through its callbacks. */
typedef struct Recorder {
        QmpState states[16];
        int state_errors[16];
        uint64_t state_usec[16];
        size_t n_states;
        char events[8][32];
        json_object *event_data[8];
        size_t n_events;
} Recorder;

static void recorder_done(Recorder *r) {
        for (size_t i = 0; i < r->n_events; i++)
                json_object_put(r->event_data[i]);
}

static void on_state(QmpClient *c, QmpState state, int error, void *userdata) {
        Recorder *r = userdata;

        assert_int_equal(qmp_client_get_state(c), state);
        assert_true(r->n_states < ELEMENTSOF(r->states));
        r->state_errors[r->n_states] = error;
        r->state_usec[r->n_states] = now_usec();
        r->states[r->n_states++] = state;
}

static void on_event(QmpClient *c, const char *event, json_object *data, void *userdata) {
        Recorder *r = userdata;

        assert_true(r->n_events < ELEMENTSOF(r->events));
        snprintf(r->events[r->n_events], sizeof r->events[0], "%s", event);
        r->event_data[r->n_events++] = json_object_get(data);
}

typedef struct Reply {
        unsigned n;
        int error;
        json_object *result;
        char *desc;
        QmpClient **free_client;        /* when set, the callback frees that client */
} Reply;

static void reply_done(Reply *r) {
        json_object_put(r->result);
        free(r->desc);
        *r = (Reply) {};
}

static void on_reply(QmpClient *c, int error, json_object *result, const char *desc, void *userdata) {
        Reply *r = userdata;

        r->n++;
        r->error = error;
        json_object_put(r->result);
        r->result = json_object_get(result);
        free(r->desc);
        r->desc = desc ? strdup(desc) : NULL;
        if (error == 0)
                assert_non_null(result);
        else
                assert_null(result);
        if (r->free_client)
                *r->free_client = qmp_client_free(*r->free_client);
}

#define TEST_DEADLINE_USEC (10 * USEC_PER_SEC)

/* Runs the loop until 'cond' holds; fails the test after TEST_DEADLINE_USEC. */
#define run_until(e, cond)                                                              \
        do {                                                                            \
                uint64_t _deadline_ = now_usec() + TEST_DEADLINE_USEC;                   \
                while (!(cond)) {                                                       \
                        assert_true(now_usec() < _deadline_);                           \
                        assert_true(sd_event_run((e), 100 * USEC_PER_MSEC) >= 0);       \
                }                                                                       \
        } while (0)

static void run_for(sd_event *e, uint64_t usec) {
        uint64_t end = now_usec() + usec;

        for (uint64_t t = now_usec(); t < end; t = now_usec())
                assert_true(sd_event_run(e, end - t) >= 0);
}

typedef struct Fixture {
        char dir[64];
        char path[128];
        sd_event *event;
        FakeQmp *fake;
        QmpClient *client;
        Recorder rec;
        QmpState free_on;               /* for on_state_free() */
} Fixture;

static int setup(void **state) {
        Fixture *x = new0(Fixture, 1);

        assert_non_null(x);
        strcpy(x->dir, "/tmp/test-qmp-XXXXXX");
        assert_non_null(mkdtemp(x->dir));
        snprintf(x->path, sizeof x->path, "%s/qmp.sock", x->dir);
        assert_int_equal(sd_event_new(&x->event), 0);
        assert_int_equal(qmp_client_new(x->event, x->path, &x->client), 0);
        qmp_client_set_handlers(x->client, on_event, on_state, &x->rec);
        *state = x;
        return 0;
}

static int teardown(void **state) {
        Fixture *x = *state;

        qmp_client_free(x->client);
        fake_free(x->fake);
        recorder_done(&x->rec);
        sd_event_unref(x->event);
        assert_int_equal(rmdir(x->dir), 0);
        free(x);
        return 0;
}

/* Starts a fake server and the client, and waits for READY. */
static void connect_ready(Fixture *x) {
        x->fake = fake_new(x->event, x->path);
        assert_int_equal(qmp_client_start(x->client), 0);
        assert_int_equal(qmp_client_get_state(x->client), QMP_CONNECTING);
        run_until(x->event, qmp_client_get_state(x->client) == QMP_READY);
}

static void test_client_handshake(void **state) {
        Fixture *x = *state;
        Reply early = {};

        assert_string_equal(qmp_client_get_path(x->client), x->path);
        assert_int_equal(qmp_client_get_state(x->client), QMP_DISCONNECTED);
        /* Before READY: refused, and the arguments are freed all the same (ASan watches). */
        assert_int_equal(qmp_client_call(x->client, "query-balloon", json_object_new_object(), USEC_PER_SEC,
                                         on_reply, &early), -ENOTCONN);

        connect_ready(x);
        assert_int_equal(qmp_client_start(x->client), -EBUSY);
        assert_int_equal(x->fake->n_capabilities, 1);
        assert_int_equal(x->fake->n_commands, 0);
        /* start() changed the state without a callback: READY is the first report. */
        assert_int_equal(x->rec.n_states, 1);
        assert_int_equal(x->rec.states[0], QMP_READY);
        assert_int_equal(x->rec.state_errors[0], 0);
        assert_int_equal(early.n, 0);
}

static void test_client_reply_and_event(void **state) {
        Fixture *x = *state;
        Reply a = {}, b = {};
        json_object *args = json_object_new_object(), *v;

        connect_ready(x);
        json_object_object_add(args, "value", json_object_new_int64(256 * MIB));
        assert_int_equal(qmp_client_call(x->client, "balloon", args, 5 * USEC_PER_SEC, on_reply, &a), 0);
        assert_int_equal(qmp_client_call(x->client, "query-balloon", NULL, 5 * USEC_PER_SEC, on_reply, &b), 0);
        /* Never synchronously. */
        assert_int_equal(a.n + b.n, 0);
        run_until(x->event, x->fake->n_commands == 2);

        /* The command as QEMU sees it. */
        assert_string_equal(obj_string(x->fake->commands[0], "execute"), "balloon");
        assert_true(json_object_object_get_ex(x->fake->commands[0], "arguments", &v));
        assert_true(json_object_object_get_ex(v, "value", &v));
        assert_int_equal(json_object_get_int64(v), 256 * MIB);
        assert_false(json_object_object_get_ex(x->fake->commands[1], "arguments", NULL));
        assert_true(fake_command_id(x->fake, 0) != fake_command_id(x->fake, 1));

        /* Answers out of order, events in between, all in one write. */
        fake_sendf(x->fake,
                   "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"BALLOON_CHANGE\","
                   " \"data\": {\"actual\": 268435456}}\r\n"
                   "{\"return\": {\"actual\": 268435456}, \"id\": %" PRIu64 "}\r\n"
                   "{\"event\": \"SOMETHING_NEW\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 3}}\r\n"
                   "{\"return\": {}, \"id\": %" PRIu64 "}\r\n",
                   fake_command_id(x->fake, 1), fake_command_id(x->fake, 0));
        run_until(x->event, a.n == 1 && b.n == 1);

        assert_int_equal(a.error, 0);
        assert_int_equal(json_object_object_length(a.result), 0);
        assert_int_equal(b.error, 0);
        uint64_t actual;
        assert_int_equal(qmp_parse_query_balloon(b.result, &actual), 0);
        assert_int_equal(actual, 256 * MIB);

        assert_int_equal(x->rec.n_events, 2);
        assert_string_equal(x->rec.events[0], "BALLOON_CHANGE");
        assert_true(json_object_object_get_ex(x->rec.event_data[0], "actual", &v));
        assert_int_equal(json_object_get_int64(v), 256 * MIB);
        assert_string_equal(x->rec.events[1], "SOMETHING_NEW");
        assert_null(x->rec.event_data[1]);

        reply_done(&a);
        reply_done(&b);
}

static void test_client_split_reply(void **state) {
        Fixture *x = *state;
        Reply a = {};
        _cleanup_free_ char *msg = NULL;

        connect_ready(x);
        assert_int_equal(qmp_client_call(x->client, "query-balloon", NULL, 5 * USEC_PER_SEC, on_reply, &a), 0);
        run_until(x->event, x->fake->n_commands == 1);

        assert_true(asprintf(&msg, "{\"return\": {\"actual\": 18446744073709551615}, \"id\": %" PRIu64 "}\r\n",
                             fake_command_id(x->fake, 0)) > 0);
        /* Cut inside a key and inside the number. */
        size_t cuts[] = { 0, 5, 30, strlen(msg) };
        for (size_t i = 0; i + 1 < ELEMENTSOF(cuts); i++) {
                assert_int_equal(a.n, 0);
                fake_send(x->fake, msg + cuts[i], cuts[i + 1] - cuts[i]);
                run_until(x->event, x->fake->out_size == 0);
                run_for(x->event, 20 * USEC_PER_MSEC);
        }
        run_until(x->event, a.n == 1);
        assert_int_equal(a.error, 0);
        uint64_t actual;
        assert_int_equal(qmp_parse_query_balloon(a.result, &actual), 0);
        assert_true(actual == UINT64_MAX);
        reply_done(&a);
}

static void test_client_timeout(void **state) {
        Fixture *x = *state;
        Reply a = {}, b = {}, c = {};

        connect_ready(x);
        assert_int_equal(qmp_client_call(x->client, "query-balloon", NULL, 0, on_reply, &a), -EINVAL);
        assert_int_equal(qmp_client_call(x->client, "query-balloon", NULL, 100 * USEC_PER_MSEC, on_reply, &a), 0);
        assert_int_equal(qmp_client_call(x->client, "qom-get", NULL, 5 * USEC_PER_SEC, on_reply, &b), 0);
        run_until(x->event, a.n == 1);
        assert_int_equal(a.error, -ETIMEDOUT);
        assert_null(a.desc);
        assert_int_equal(x->fake->n_commands, 2);

        /* A silent monitor is a lost one: the connection is dropped, the command behind it fails,
         * and the client comes back after the back-off. */
        assert_int_equal(b.n, 1);
        assert_int_equal(b.error, -ECONNRESET);
        assert_int_equal(x->rec.n_states, 2);
        assert_int_equal(x->rec.states[1], QMP_DISCONNECTED);
        assert_int_equal(x->rec.state_errors[1], -ETIMEDOUT);
        run_until(x->event, qmp_client_get_state(x->client) == QMP_READY);
        assert_int_equal(x->fake->n_accepted, 2);

        assert_int_equal(qmp_client_call(x->client, "query-balloon", NULL, 5 * USEC_PER_SEC, on_reply, &c), 0);
        run_until(x->event, x->fake->n_commands == 3);
        fake_sendf(x->fake, "{\"return\": {\"actual\": 2}, \"id\": %" PRIu64 "}\r\n", fake_command_id(x->fake, 2));
        run_until(x->event, c.n == 1);

        assert_int_equal(a.n + b.n, 2);
        assert_int_equal(c.error, 0);
        uint64_t actual;
        assert_int_equal(qmp_parse_query_balloon(c.result, &actual), 0);
        assert_int_equal(actual, 2);
        reply_done(&a);
        reply_done(&b);
        reply_done(&c);
}

static void test_client_reconnect(void **state) {
        Fixture *x = *state;
        Reply a = {};

        /* Nothing to drop before READY. */
        qmp_client_reconnect(x->client, -EBADMSG, "test");
        assert_int_equal(x->rec.n_states, 0);

        connect_ready(x);
        assert_int_equal(qmp_client_call(x->client, "query-balloon", NULL, 5 * USEC_PER_SEC, on_reply, &a), 0);
        /* A reply that made no sense: dropped at once, the rest failed, back after the back-off. */
        qmp_client_reconnect(x->client, -EBADMSG, "test");
        assert_int_equal(a.n, 1);
        assert_int_equal(a.error, -ECONNRESET);
        assert_int_equal(x->rec.n_states, 2);
        assert_int_equal(x->rec.states[1], QMP_DISCONNECTED);
        assert_int_equal(x->rec.state_errors[1], -EBADMSG);
        run_until(x->event, qmp_client_get_state(x->client) == QMP_READY);
        assert_int_equal(x->fake->n_accepted, 2);
        reply_done(&a);
}

static void test_client_error_reply(void **state) {
        Fixture *x = *state;
        Reply a = {}, b = {};

        connect_ready(x);
        assert_int_equal(qmp_client_call(x->client, "balloon", NULL, 5 * USEC_PER_SEC, on_reply, &a), 0);
        assert_int_equal(qmp_client_call(x->client, "qom-get", NULL, 5 * USEC_PER_SEC, on_reply, &b), 0);
        run_until(x->event, x->fake->n_commands == 2);
        fake_sendf(x->fake,
                   "{\"error\": {\"class\": \"GenericError\", \"desc\": \"No balloon device has been activated\"},"
                   " \"id\": %" PRIu64 "}\r\n"
                   /* A reply QEMU could not match to a command (no id), then one without "desc". */
                   "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\r\n"
                   "{\"error\": {\"class\": \"DeviceNotFound\"}, \"id\": %" PRIu64 "}\r\n",
                   fake_command_id(x->fake, 0), fake_command_id(x->fake, 1));
        run_until(x->event, a.n == 1 && b.n == 1);

        assert_int_equal(a.error, -EREMOTEIO);
        assert_null(a.result);
        assert_string_equal(a.desc, "No balloon device has been activated");
        assert_int_equal(b.error, -EREMOTEIO);
        assert_string_equal(b.desc, "DeviceNotFound");
        assert_int_equal(qmp_client_get_state(x->client), QMP_READY);
        reply_done(&a);
        reply_done(&b);
}

static void test_client_server_closes(void **state) {
        Fixture *x = *state;
        Reply a = {}, b = {};

        connect_ready(x);
        assert_int_equal(qmp_client_call(x->client, "query-balloon", NULL, 5 * USEC_PER_SEC, on_reply, &a), 0);
        run_until(x->event, x->fake->n_commands == 1);

        /* QEMU dies with a command in flight, socket file and all. */
        x->fake = fake_free(x->fake);
        run_until(x->event, a.n == 1);
        assert_int_equal(a.error, -ECONNRESET);
        assert_int_equal(qmp_client_get_state(x->client), QMP_DISCONNECTED);
        assert_int_equal(x->rec.n_states, 2);
        assert_int_equal(x->rec.states[1], QMP_DISCONNECTED);
        assert_int_equal(x->rec.state_errors[1], -ECONNRESET);
        assert_int_equal(qmp_client_call(x->client, "query-balloon", NULL, USEC_PER_SEC, on_reply, &b),
                         -ENOTCONN);

        /* While the socket is missing, retries are quiet: CONNECTING once, nothing else. */
        run_until(x->event, qmp_client_get_state(x->client) == QMP_CONNECTING);
        run_for(x->event, 1500 * USEC_PER_MSEC);
        assert_int_equal(x->rec.n_states, 3);
        assert_int_equal(x->rec.states[2], QMP_CONNECTING);

        /* A new QEMU on the same path. */
        x->fake = fake_new(x->event, x->path);
        run_until(x->event, qmp_client_get_state(x->client) == QMP_READY);
        assert_int_equal(x->rec.n_states, 4);
        assert_int_equal(x->rec.states[3], QMP_READY);

        assert_int_equal(qmp_client_call(x->client, "query-balloon", NULL, 5 * USEC_PER_SEC, on_reply, &b), 0);
        run_until(x->event, x->fake->n_commands == 1);
        fake_sendf(x->fake, "{\"return\": {\"actual\": 3}, \"id\": %" PRIu64 "}\r\n", fake_command_id(x->fake, 0));
        run_until(x->event, b.n == 1);
        assert_int_equal(b.error, 0);
        assert_int_equal(a.n, 1);
        reply_done(&a);
        reply_done(&b);
}

static void test_client_socket_appears_late(void **state) {
        Fixture *x = *state;

        /* No server yet: the client keeps trying, without a word. */
        assert_int_equal(qmp_client_start(x->client), 0);
        run_for(x->event, 300 * USEC_PER_MSEC);
        assert_int_equal(qmp_client_get_state(x->client), QMP_CONNECTING);
        assert_int_equal(x->rec.n_states, 0);

        x->fake = fake_new(x->event, x->path);
        run_until(x->event, qmp_client_get_state(x->client) == QMP_READY);
        assert_int_equal(x->rec.n_states, 1);
        assert_int_equal(x->rec.states[0], QMP_READY);
}

/* Protocol errors: the connection is dropped, pending commands fail, the client comes back. */
static void check_protocol_error(Fixture *x, const char *data, size_t size, int expected) {
        Reply a = {}, b = {};
        size_t n = x->rec.n_states;
        unsigned accepted = x->fake->n_accepted;

        assert_int_equal(qmp_client_call(x->client, "query-balloon", NULL, 5 * USEC_PER_SEC, on_reply, &a), 0);
        run_until(x->event, x->fake->n_commands > 0);
        fake_send(x->fake, data, size);
        run_until(x->event, a.n == 1);
        assert_int_equal(a.error, -ECONNRESET);
        assert_int_equal(x->rec.states[n], QMP_DISCONNECTED);
        assert_int_equal(x->rec.state_errors[n], expected);

        /* The same server, still listening, is reconnected to after the back-off. */
        run_until(x->event, qmp_client_get_state(x->client) == QMP_READY);
        assert_int_equal(x->fake->n_accepted, accepted + 1);
        assert_int_equal(x->rec.n_states, n + 3);
        assert_int_equal(x->rec.states[n + 1], QMP_CONNECTING);
        assert_int_equal(x->rec.states[n + 2], QMP_READY);

        for (size_t i = 0; i < x->fake->n_commands; i++)
                json_object_put(x->fake->commands[i]);
        x->fake->n_commands = 0;
        assert_int_equal(qmp_client_call(x->client, "query-balloon", NULL, 5 * USEC_PER_SEC, on_reply, &b), 0);
        run_until(x->event, x->fake->n_commands == 1);
        fake_sendf(x->fake, "{\"return\": {\"actual\": 4}, \"id\": %" PRIu64 "}\r\n", fake_command_id(x->fake, 0));
        run_until(x->event, b.n == 1);
        assert_int_equal(b.error, 0);
        reply_done(&a);
        reply_done(&b);
}

static void test_client_garbage(void **state) {
        Fixture *x = *state;
        static const char garbage[] = "{\"event\": \"OK\"}\r\nHTTP/1.1 400 Bad Request\r\n";

        connect_ready(x);
        check_protocol_error(x, garbage, strlen(garbage), -EBADMSG);
        check_protocol_error(x, "[\"not an object\"]\r\n", 19, -EBADMSG);
}

static void test_client_oversized(void **state) {
        Fixture *x = *state;
        _cleanup_free_ char *big = make_message(QMP_MAX_MESSAGE + 1);

        connect_ready(x);
        check_protocol_error(x, big, QMP_MAX_MESSAGE + 1, -EMSGSIZE);
}

static void assert_delay(const Recorder *r, size_t from, size_t to, uint64_t usec) {
        uint64_t d = r->state_usec[to] - r->state_usec[from];

        /* sd-event may coalesce timers by up to 250 ms; leave room for a loaded machine. */
        assert_in_range(d, usec - 100 * USEC_PER_MSEC, usec + 700 * USEC_PER_MSEC);
}

static void test_client_bad_greeting_backoff(void **state) {
        Fixture *x = *state;

        x->fake = fake_new(x->event, x->path);
        x->fake->first_message = "{\"return\": {}}\r\n";
        assert_int_equal(qmp_client_start(x->client), 0);
        run_until(x->event, x->rec.n_states == 1);
        assert_int_equal(x->rec.states[0], QMP_DISCONNECTED);
        assert_int_equal(x->rec.state_errors[0], -EPROTO);
        assert_int_equal(x->fake->n_capabilities, 0);

        /* Each failed attempt doubles the delay: 1 s, then 2 s. */
        run_until(x->event, x->rec.n_states == 5);
        assert_int_equal(x->rec.states[1], QMP_CONNECTING);
        assert_int_equal(x->rec.states[2], QMP_DISCONNECTED);
        assert_int_equal(x->rec.states[3], QMP_CONNECTING);
        assert_int_equal(x->rec.states[4], QMP_DISCONNECTED);
        assert_delay(&x->rec, 0, 1, USEC_PER_SEC);
        assert_delay(&x->rec, 2, 3, 2 * USEC_PER_SEC);

        /* QEMU greets again: READY at the next attempt (4 s). */
        x->fake->first_message = NULL;
        run_until(x->event, qmp_client_get_state(x->client) == QMP_READY);
        assert_int_equal(x->rec.n_states, 7);
        assert_int_equal(x->rec.states[5], QMP_CONNECTING);
        assert_int_equal(x->rec.states[6], QMP_READY);
        assert_delay(&x->rec, 4, 5, 4 * USEC_PER_SEC);

        /* A connection that drops right after the handshake does not reset the back-off to 1 s:
         * the next attempt is 8 s away. */
        fake_send(x->fake, "#", 1);
        run_until(x->event, x->rec.n_states == 8);
        assert_int_equal(x->rec.states[7], QMP_DISCONNECTED);
        run_for(x->event, 3 * USEC_PER_SEC);
        assert_int_equal(x->rec.n_states, 8);
        assert_int_equal(x->fake->n_accepted, 4);
}

static void test_client_free_cancels(void **state) {
        Fixture *x = *state;
        Reply a = {}, b = {};

        connect_ready(x);
        assert_int_equal(qmp_client_call(x->client, "query-balloon", NULL, 5 * USEC_PER_SEC, on_reply, &a), 0);
        assert_int_equal(qmp_client_call(x->client, "qom-get", NULL, 5 * USEC_PER_SEC, on_reply, &b), 0);
        size_t n = x->rec.n_states;

        x->client = qmp_client_free(x->client);
        assert_int_equal(a.n, 1);
        assert_int_equal(a.error, -ECANCELED);
        assert_int_equal(b.n, 1);
        assert_int_equal(b.error, -ECANCELED);
        /* No state callback from free. */
        assert_int_equal(x->rec.n_states, n);
        /* Nothing left to fire. */
        run_for(x->event, 100 * USEC_PER_MSEC);
        assert_int_equal(a.n + b.n, 2);
        reply_done(&a);
        reply_done(&b);
}

static void test_client_free_from_callback(void **state) {
        Fixture *x = *state;
        Reply a = { .free_client = &x->client }, b = {};
        size_t n;

        connect_ready(x);
        assert_int_equal(qmp_client_call(x->client, "query-balloon", NULL, 5 * USEC_PER_SEC, on_reply, &a), 0);
        assert_int_equal(qmp_client_call(x->client, "qom-get", NULL, 5 * USEC_PER_SEC, on_reply, &b), 0);
        run_until(x->event, x->fake->n_commands == 2);
        n = x->rec.n_states;

        /* Both answers and an event arrive in one read; the first callback frees the client. */
        fake_sendf(x->fake,
                   "{\"return\": {}, \"id\": %" PRIu64 "}\r\n{\"event\": \"LATE\"}\r\n"
                   "{\"return\": {}, \"id\": %" PRIu64 "}\r\n",
                   fake_command_id(x->fake, 0), fake_command_id(x->fake, 1));
        run_until(x->event, a.n == 1);
        assert_int_equal(a.error, 0);
        assert_null(x->client);
        assert_int_equal(b.n, 1);
        assert_int_equal(b.error, -ECANCELED);
        assert_int_equal(x->rec.n_events, 0);
        assert_int_equal(x->rec.n_states, n);
        run_for(x->event, 100 * USEC_PER_MSEC);
        assert_int_equal(b.n, 1);
        reply_done(&a);
        reply_done(&b);
}

static void test_client_free_from_callback_on_disconnect(void **state) {
        Fixture *x = *state;
        Reply a = { .free_client = &x->client }, b = {};
        size_t n;

        connect_ready(x);
        assert_int_equal(qmp_client_call(x->client, "query-balloon", NULL, 5 * USEC_PER_SEC, on_reply, &a), 0);
        assert_int_equal(qmp_client_call(x->client, "qom-get", NULL, 5 * USEC_PER_SEC, on_reply, &b), 0);
        run_until(x->event, x->fake->n_commands == 2);
        n = x->rec.n_states;

        /* The connection drops; the first failed command's callback frees the client: the second is
         * then cancelled rather than reset, and no state callback follows. */
        x->fake = fake_free(x->fake);
        run_until(x->event, a.n == 1);
        assert_int_equal(a.error, -ECONNRESET);
        assert_null(x->client);
        assert_int_equal(b.n, 1);
        assert_int_equal(b.error, -ECANCELED);
        assert_int_equal(x->rec.n_states, n);
        reply_done(&a);
        reply_done(&b);
}

static void on_state_free(QmpClient *c, QmpState state, int error, void *userdata) {
        Fixture *x = userdata;

        on_state(c, state, error, &x->rec);
        if (state == x->free_on)
                x->client = qmp_client_free(x->client);
}

static void test_client_free_on_disconnect(void **state) {
        Fixture *x = *state;
        Reply a = {}, b = {};

        x->free_on = QMP_DISCONNECTED;
        qmp_client_set_handlers(x->client, on_event, on_state_free, x);
        connect_ready(x);
        assert_int_equal(qmp_client_call(x->client, "query-balloon", NULL, 5 * USEC_PER_SEC, on_reply, &a), 0);
        assert_int_equal(qmp_client_call(x->client, "qom-get", NULL, 5 * USEC_PER_SEC, on_reply, &b), 0);
        run_until(x->event, x->fake->n_commands == 2);

        fake_send(x->fake, "}", 1);
        run_until(x->event, !x->client);
        /* Pending commands fail before the state callback, which then frees the client. */
        assert_int_equal(a.error, -ECONNRESET);
        assert_int_equal(b.error, -ECONNRESET);
        assert_int_equal(x->rec.states[x->rec.n_states - 1], QMP_DISCONNECTED);
        assert_int_equal(x->rec.state_errors[x->rec.n_states - 1], -EBADMSG);
        /* No reconnection timer survives the client. */
        size_t n = x->rec.n_states;
        run_for(x->event, 1500 * USEC_PER_MSEC);
        assert_int_equal(x->rec.n_states, n);
        assert_int_equal(x->fake->n_accepted, 1);
        reply_done(&a);
        reply_done(&b);
}

static void test_client_output_limit(void **state) {
        Fixture *x = *state;
        Reply r[32] = {};
        size_t n = 0;
        int k;

        connect_ready(x);
        /* Without the loop running, a command is sent at once only while nothing waits, as far as the
         * socket takes it; then the queue fills up and is capped. */
        _cleanup_free_ char *big = malloc(100 * KIB + 1);
        assert_non_null(big);
        memset(big, 'z', 100 * KIB);
        big[100 * KIB] = 0;
        for (;;) {
                json_object *args = json_object_new_object();
                json_object_object_add(args, "blob", json_object_new_string(big));
                assert_true(n < ELEMENTSOF(r));
                k = qmp_client_call(x->client, "x-blob", args, 5 * USEC_PER_SEC, on_reply, &r[n]);
                if (k < 0)
                        break;
                n++;
        }
        assert_int_equal(k, -ENOBUFS);
        assert_true(n >= QMP_MAX_MESSAGE / (100 * KIB));
        assert_int_equal(r[n].n, 0);

        /* Once written, there is room again. */
        run_until(x->event, x->fake->n_commands == n);
        assert_int_equal(qmp_client_call(x->client, "query-balloon", NULL, 5 * USEC_PER_SEC, on_reply, &r[n]), 0);
        run_until(x->event, x->fake->n_commands == n + 1);
        x->client = qmp_client_free(x->client);
        for (size_t i = 0; i <= n; i++) {
                assert_int_equal(r[i].error, -ECANCELED);
                reply_done(&r[i]);
        }
}

static void test_client_handshake_timeout(void **state) {
        Fixture *x = *state;

        /* A server that accepts but never greets, like QEMU busy with another QMP client. */
        x->fake = fake_new(x->event, x->path);
        x->fake->greet = false;
        assert_int_equal(qmp_client_start(x->client), 0);
        run_for(x->event, USEC_PER_SEC);
        assert_int_equal(x->fake->n_accepted, 1);
        assert_int_equal(qmp_client_get_state(x->client), QMP_CONNECTING);
        assert_int_equal(x->rec.n_states, 0);

        uint64_t deadline = now_usec() + 20 * USEC_PER_SEC;
        while (x->rec.n_states == 0) {
                assert_true(now_usec() < deadline);
                assert_true(sd_event_run(x->event, 100 * USEC_PER_MSEC) >= 0);
        }
        assert_int_equal(x->rec.states[0], QMP_DISCONNECTED);
        assert_int_equal(x->rec.state_errors[0], -ETIMEDOUT);
}

static void test_client_free_on_reconnect(void **state) {
        Fixture *x = *state;

        x->free_on = QMP_CONNECTING;
        qmp_client_set_handlers(x->client, on_event, on_state_free, x);
        connect_ready(x);
        fake_send(x->fake, "#", 1);
        run_until(x->event, !x->client);
        assert_int_equal(x->rec.n_states, 3);
        assert_int_equal(x->rec.states[2], QMP_CONNECTING);
        /* Freed as the reconnection started: it must not go on to connect. */
        run_for(x->event, 500 * USEC_PER_MSEC);
        assert_int_equal(x->fake->n_accepted, 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parser_byte_by_byte),
                cmocka_unit_test(test_parser_several_in_one),
                cmocka_unit_test(test_parser_garbage),
                cmocka_unit_test(test_parser_oversized),
                cmocka_unit_test(test_parser_bounded),
                cmocka_unit_test(test_query_balloon),
                cmocka_unit_test_setup_teardown(test_client_handshake, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_reply_and_event, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_split_reply, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_timeout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_error_reply, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_reconnect, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_server_closes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_socket_appears_late, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_garbage, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_oversized, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_bad_greeting_backoff, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_free_cancels, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_free_from_callback, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_free_from_callback_on_disconnect, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_free_on_disconnect, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_free_on_reconnect, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_output_limit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_handshake_timeout, setup, teardown),
        };

        /* The client's warnings about the fake server's misbehaviour are expected noise here. */
        log_setup(LOG_TARGET_STDERR, LOG_ERR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
