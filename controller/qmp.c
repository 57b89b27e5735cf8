/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "log.h"
#include "json-util.h"
#include "macro.h"
#include "qmp.h"
#include "util.h"

#define QMP_BACKOFF_MIN_USEC (1 * USEC_PER_SEC)
#define QMP_BACKOFF_MAX_USEC (30 * USEC_PER_SEC)
/* From connect() to the qmp_capabilities reply. QEMU serves one QMP client per socket at a time and
 * leaves a second one in the listen backlog without a greeting: do not wait forever there. */
#define QMP_HANDSHAKE_TIMEOUT_USEC (15 * USEC_PER_SEC)
/* A connection lost after it stayed READY this long starts the back-off again from its minimum; one
 * that drops sooner (a peer that completes the handshake and hangs up, a QEMU that stops answering)
 * keeps doubling it, so it cannot make us reconnect every second. */
#define QMP_HEALTHY_USEC QMP_BACKOFF_MAX_USEC
#define QMP_READ_SIZE (64 * 1024)


/* json_object_object_add() leaves 'v' with the caller on failure: consume it in all cases. */
static int object_add(json_object *o, const char *key, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

/* ---- Message splitter ---- */

struct QmpParser {
        json_tokener *tok;
        size_t max_message;
        size_t current;         /* bytes of the message in progress fed to the tokener */
        JsonScan scan;          /* the message in progress, bounded before the tokener allocates */
        int error;              /* sticky: the stream cannot be resynchronised after an error */
        json_object **queue;
        size_t head, n_queue, allocated;
};

int qmp_parser_new(size_t max_message, QmpParser **ret) {
        _cleanup_free_ QmpParser *p = NULL;

        /* json_tokener_parse_ex() takes an int length. */
        if (max_message == 0 || max_message > INT_MAX)
                return -EINVAL;

        p = new0(QmpParser, 1);
        if (!p)
                return -ENOMEM;
        p->tok = json_tokener_new();
        if (!p->tok)
                return -ENOMEM;
        /* Several messages may arrive in one read: trailing characters are the next message. */
        json_tokener_set_flags(p->tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                               JSON_TOKENER_VALIDATE_UTF8);
        p->max_message = max_message;

        *ret = TAKE_PTR(p);
        return 0;
}

QmpParser *qmp_parser_free(QmpParser *p) {
        if (!p)
                return NULL;
        for (size_t i = p->head; i < p->n_queue; i++)
                json_object_put(p->queue[i]);
        free(p->queue);
        json_tokener_free(p->tok);
        free(p);
        return NULL;
}

static int parser_push(QmpParser *p, json_object *o) {
        if (p->head == p->n_queue)
                p->head = p->n_queue = 0;

        if (p->n_queue >= p->allocated) {
                size_t n = MAX(p->allocated * 2, (size_t) 8);
                json_object **q = reallocarray(p->queue, n, sizeof *q);
                if (!q)
                        return -ENOMEM;
                p->queue = q;
                p->allocated = n;
        }
        p->queue[p->n_queue++] = o;
        return 0;
}

static bool is_separator(char c) {
        return IN_SET(c, ' ', '\t', '\r', '\n');
}

int qmp_parser_feed(QmpParser *p, const char *buf, size_t n) {
        int r;

        if (p->error < 0)
                return p->error;

        while (n > 0) {
                /* Line breaks between messages do not count towards the size of the next one. */
                if (p->current == 0 && is_separator(*buf)) {
                        buf++;
                        n--;
                        continue;
                }

                /* Never hand the tokener more than the rest of the allowance: it buffers strings whole. */
                size_t chunk = MIN(n, p->max_message - p->current);
                /* Up to the end of the message: the rest of the chunk is the next one's to count. */
                r = json_scan(&p->scan, buf, chunk, &chunk);
                if (r < 0)
                        return (p->error = r);
                json_object *o = json_tokener_parse_ex(p->tok, buf, (int) chunk);
                enum json_tokener_error err = json_tokener_get_error(p->tok);

                if (err == json_tokener_continue) {
                        p->current += chunk;
                        buf += chunk;
                        n -= chunk;
                        if (p->current >= p->max_message)
                                return (p->error = -EMSGSIZE);
                        continue;
                }
                if (err != json_tokener_success)
                        return (p->error = -EBADMSG);

                size_t used = json_tokener_get_parse_end(p->tok);
                json_tokener_reset(p->tok);
                p->current = 0;
                p->scan = (JsonScan) {};
                buf += used;
                n -= used;

                /* A top-level "null" parses successfully into NULL. */
                if (!json_object_is_type(o, json_type_object)) {
                        json_object_put(o);
                        return (p->error = -EBADMSG);
                }
                r = parser_push(p, o);
                if (r < 0) {
                        json_object_put(o);
                        return (p->error = r);
                }
        }

        return 0;
}

int qmp_parser_next(QmpParser *p, json_object **ret) {
        if (p->head == p->n_queue) {
                *ret = NULL;
                return 0;
        }
        *ret = p->queue[p->head++];
        return 1;
}

/* ---- Client ---- */

typedef struct QmpCommand QmpCommand;
struct QmpCommand {
        QmpClient *client;
        QmpCommand *next;
        uint64_t id;
        char *name;
        uint64_t timeout_usec;
        sd_event_source *timer;
        qmp_reply_t callback;
        void *userdata;
};

struct QmpClient {
        /* One reference for the owner, one for each dispatch in progress, so that a callback may call
         * qmp_client_free(): the memory then lives until the dispatch unwinds. */
        unsigned n_ref;
        bool freed;

        sd_event *event;
        char *path;
        QmpState state;

        int fd;
        bool connected;         /* connect() completed */
        bool greeted;           /* greeting seen, qmp_capabilities sent */
        sd_event_source *io;
        sd_event_source *timer; /* handshake timeout while connecting, reconnect delay otherwise */
        QmpParser *parser;
        char *out;
        size_t out_size, out_allocated;

        uint64_t backoff_usec;
        uint64_t ready_usec;    /* when the connection became READY */
        int connect_error;      /* last connect() failure, to log each new reason once */

        uint64_t next_id;
        QmpCommand *pending, *pending_tail;

        qmp_event_t on_event;
        qmp_state_t on_state;
        void *userdata;
};

static QmpCommand *command_free(QmpCommand *cmd) {
        if (!cmd)
                return NULL;
        sd_event_source_disable_unref(cmd->timer);
        free(cmd->name);
        free(cmd);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(QmpCommand *, command_free);

/* Runs the callback once and frees the command, which must no longer be on the pending list. */
static void command_complete(QmpCommand *cmd, int error, json_object *result, const char *desc) {
        cmd->timer = sd_event_source_disable_unref(cmd->timer);
        cmd->callback(cmd->client, error, result, desc, cmd->userdata);
        command_free(cmd);
}

static QmpClient *client_ref(QmpClient *c) {
        c->n_ref++;
        return c;
}

static void client_unref(QmpClient *c) {
        if (--c->n_ref > 0)
                return;
        sd_event_unref(c->event);
        free(c->path);
        free(c);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(QmpClient *, client_unref);

static QmpCommand *client_unlink_command(QmpClient *c, uint64_t id) {
        QmpCommand *prev = NULL;

        for (QmpCommand *cmd = c->pending; cmd; prev = cmd, cmd = cmd->next) {
                if (cmd->id != id)
                        continue;
                if (prev)
                        prev->next = cmd->next;
                else
                        c->pending = cmd->next;
                if (c->pending_tail == cmd)
                        c->pending_tail = prev;
                cmd->next = NULL;
                return cmd;
        }
        return NULL;
}

/* Fails every pending command; those still queued when a callback frees the client see -ECANCELED.
 * The caller holds a reference or is qmp_client_free() itself. */
static void client_fail_pending(QmpClient *c, int error) {
        QmpCommand *list = TAKE_PTR(c->pending);

        c->pending_tail = NULL;
        while (list) {
                QmpCommand *cmd = list;
                list = cmd->next;
                command_complete(cmd, c->freed ? -ECANCELED : error, NULL, NULL);
        }
}

static void client_close(QmpClient *c) {
        c->io = sd_event_source_disable_unref(c->io);
        c->timer = sd_event_source_disable_unref(c->timer);
        c->fd = safe_close(c->fd);
        c->parser = qmp_parser_free(c->parser);
        free(c->out);
        c->out = NULL;
        c->out_size = c->out_allocated = 0;
        c->connected = c->greeted = false;
}

static int client_update_io_events(QmpClient *c) {
        uint32_t events = c->connected ? EPOLLIN : EPOLLOUT;

        if (c->out_size > 0)
                events |= EPOLLOUT;
        return sd_event_source_set_io_events(c->io, events);
}

static int on_reconnect(sd_event_source *s, uint64_t usec, void *userdata);

static uint64_t now_usec(QmpClient *c) {
        uint64_t t = 0;

        (void) sd_event_now(c->event, CLOCK_MONOTONIC, &t);
        return t;
}

static int client_schedule_reconnect(QmpClient *c) {
        uint64_t delay = c->backoff_usec;
        int r;

        c->backoff_usec = MIN(c->backoff_usec * 2, QMP_BACKOFF_MAX_USEC);
        r = sd_event_add_time_relative(c->event, &c->timer, CLOCK_MONOTONIC, delay, 0, on_reconnect, c);
        if (r < 0)
                return log_error_errno(r, "QMP %s: cannot schedule a reconnection, giving up: %m", c->path);
        return 0;
}

/* A connection that never got established: retry quietly, QEMU may simply not be up yet. */
static int client_connect_failed(QmpClient *c, int error) {
        bool expected = IN_SET(error, -ENOENT, -ECONNREFUSED, -EAGAIN);

        client_close(c);
        log_full_errno(expected || error == c->connect_error ? LOG_DEBUG : LOG_WARNING, error,
                       "QMP %s: cannot connect, retrying in %" PRIu64 " s: %m",
                       c->path, c->backoff_usec / USEC_PER_SEC);
        c->connect_error = error;
        return client_schedule_reconnect(c);
}

/* Loss of an established connection: one warning, pending commands fail, reconnect later. */
_printf_(3, 4)
static void client_fail(QmpClient *c, int error, const char *format, ...) {
        _unused_ _cleanup_(client_unrefp) QmpClient *ref = client_ref(c);
        char reason[256];
        va_list ap;

        errno = -error; /* for %m in the reason */
        va_start(ap, format);
        (void) vsnprintf(reason, sizeof reason, format, ap);
        va_end(ap);
        log_warning_errno(error, "QMP %s: %s", c->path, reason);

        if (c->state == QMP_READY && now_usec(c) >= c->ready_usec + QMP_HEALTHY_USEC)
                c->backoff_usec = QMP_BACKOFF_MIN_USEC;
        client_close(c);
        c->state = QMP_DISCONNECTED;
        (void) client_schedule_reconnect(c);

        client_fail_pending(c, -ECONNRESET);
        /* qmp_client_free() from a reply callback cleared on_state. */
        if (c->on_state)
                c->on_state(c, QMP_DISCONNECTED, error, c->userdata);
}

static int client_queue(QmpClient *c, const char *command, json_object *arguments, uint64_t id) {
        _cleanup_json_ json_object *args = arguments;
        _cleanup_json_ json_object *m = NULL;
        const char *s;
        size_t l;
        int r;

        m = json_object_new_object();
        if (!m)
                return -ENOMEM;
        r = object_add(m, "execute", json_object_new_string(command));
        if (r < 0)
                return r;
        if (args) {
                r = object_add(m, "arguments", TAKE_PTR(args));
                if (r < 0)
                        return r;
        }
        r = object_add(m, "id", json_object_new_uint64(id));
        if (r < 0)
                return r;

        s = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN);
        if (!s)
                return -ENOMEM;
        l = strlen(s);

        /* A QEMU that stopped reading must not make us buffer without bound. */
        if (c->out_size + l + 1 > QMP_MAX_MESSAGE)
                return -ENOBUFS;
        if (c->out_size + l + 1 > c->out_allocated) {
                size_t n = MAX(c->out_allocated * 2, c->out_size + l + 1);
                char *p = realloc(c->out, n);
                if (!p)
                        return -ENOMEM;
                c->out = p;
                c->out_allocated = n;
        }
        memcpy(c->out + c->out_size, s, l);
        c->out[c->out_size + l] = '\n';
        c->out_size += l + 1;

        /* Sent at once when nothing else waits: left to the event loop, 1,000 VMs' commands would take
         * 1,000 loop iterations, each seeing every socket still writable. A failure stays for the event
         * loop to report, so that a failing socket never runs callbacks from here. */
        if (c->connected && c->out_size == l + 1) {
                ssize_t n = send(c->fd, c->out, c->out_size, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n > 0) {
                        memmove(c->out, c->out + n, c->out_size - n);
                        c->out_size -= n;
                }
        }
        return client_update_io_events(c);
}

static int client_flush(QmpClient *c) {
        int r = send_pending(c->fd, c->out, &c->out_size);
        if (r < 0)
                return r;
        return client_update_io_events(c);
}

static int on_handshake_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        QmpClient *c = userdata;

        client_fail(c, -ETIMEDOUT, "%s within %" PRIu64 " s (is another QMP client connected?)",
                    c->greeted ? "no reply to qmp_capabilities" : "no greeting",
                    QMP_HANDSHAKE_TIMEOUT_USEC / USEC_PER_SEC);
        return 0;
}

static void client_set_ready(QmpClient *c) {
        c->timer = sd_event_source_disable_unref(c->timer);
        c->state = QMP_READY;
        c->ready_usec = now_usec(c);
        log_debug("QMP %s: ready", c->path);
        if (c->on_state)
                c->on_state(c, QMP_READY, 0, c->userdata);
}

static const char *reply_error_desc(json_object *error) {
        json_object *v;

        if (json_object_object_get_ex(error, "desc", &v) && json_object_is_type(v, json_type_string))
                return json_object_get_string(v);
        if (json_object_object_get_ex(error, "class", &v) && json_object_is_type(v, json_type_string))
                return json_object_get_string(v);
        return "unspecified error";
}

static void client_handle_reply(QmpClient *c, json_object *m, json_object *ret, json_object *error) {
        json_object *v;
        uint64_t id;

        if (c->state == QMP_CONNECTING) {
                /* In capabilities negotiation mode QEMU answers nothing but our qmp_capabilities. */
                if (error) {
                        client_fail(c, -EPROTO, "qmp_capabilities refused: %s", reply_error_desc(error));
                        return;
                }
                client_set_ready(c);
                return;
        }

        /* QEMU answers a command it could not parse without an id; nothing to match it to. */
        if (!json_object_object_get_ex(m, "id", &v) || json_get_u64(v, &id) < 0) {
                log_debug("QMP %s: ignoring a reply without a valid id: %s", c->path,
                          json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN));
                return;
        }

        QmpCommand *cmd = client_unlink_command(c, id);
        if (!cmd) {
                log_debug("QMP %s: ignoring the reply to command %" PRIu64 ", which timed out", c->path, id);
                return;
        }

        if (error)
                command_complete(cmd, -EREMOTEIO, NULL, reply_error_desc(error));
        else
                command_complete(cmd, 0, ret, NULL);
}

static void client_handle_message(QmpClient *c, json_object *m) {
        json_object *v, *ret = NULL, *error = NULL;

        if (!c->greeted) {
                int r;

                if (!json_object_object_get_ex(m, "QMP", NULL)) {
                        client_fail(c, -EPROTO, "protocol error: expected the QMP greeting, got %.120s",
                                    json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN));
                        return;
                }
                c->greeted = true;
                r = client_queue(c, "qmp_capabilities", NULL, c->next_id++);
                if (r < 0)
                        client_fail(c, r, "cannot send qmp_capabilities: %m");
                return;
        }

        if (json_object_object_get_ex(m, "event", &v)) {
                json_object *data = NULL;

                if (!json_object_is_type(v, json_type_string)) {
                        log_debug("QMP %s: ignoring an event without a name", c->path);
                        return;
                }
                (void) json_object_object_get_ex(m, "data", &data);
                if (c->on_event)
                        c->on_event(c, json_object_get_string(v), data, c->userdata);
                return;
        }

        if (json_object_object_get_ex(m, "return", &ret) || json_object_object_get_ex(m, "error", &error)) {
                client_handle_reply(c, m, ret, error);
                return;
        }

        log_debug("QMP %s: ignoring an unexpected message: %.120s", c->path,
                  json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN));
}

static void client_read(QmpClient *c) {
        _unused_ _cleanup_(client_unrefp) QmpClient *ref = client_ref(c);
        char buf[QMP_READ_SIZE];
        ssize_t n;
        int r;

        n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) {
                if (IN_SET(errno, EAGAIN, EINTR))
                        return;
                client_fail(c, -errno, "connection lost: %m");
                return;
        }
        if (n == 0) {
                client_fail(c, -ECONNRESET, "QEMU closed the connection");
                return;
        }

        r = qmp_parser_feed(c->parser, buf, n);
        if (r == -EMSGSIZE) {
                client_fail(c, r, "protocol error: message larger than %u bytes", QMP_MAX_MESSAGE);
                return;
        }
        if (r == -E2BIG) {
                client_fail(c, r, "protocol error: message nested deeper than %u or with more than %u values",
                            JSON_MAX_DEPTH, JSON_MAX_VALUES);
                return;
        }
        if (r < 0) {
                client_fail(c, r, "protocol error: invalid JSON or a message that is not an object");
                return;
        }

        /* Stop as soon as a message closed the connection or a callback freed the client: either
         * dropped the parser. */
        while (c->parser) {
                _cleanup_json_ json_object *m = NULL;

                if (qmp_parser_next(c->parser, &m) <= 0)
                        break;
                client_handle_message(c, m);
        }
}

static int client_finish_connect(QmpClient *c) {
        int error = 0;
        socklen_t len = sizeof error;

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                error = errno;
        if (error > 0)
                return client_connect_failed(c, -error);

        c->connected = true;
        c->connect_error = 0;
        return client_update_io_events(c);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        QmpClient *c = userdata;
        int r;

        if (!c->connected) {
                r = client_finish_connect(c);
                if (r < 0 && c->connected)
                        client_fail(c, r, "cannot watch the socket: %m");
                return 0;
        }

        if (revents & EPOLLOUT) {
                r = client_flush(c);
                if (r < 0) {
                        client_fail(c, r, "connection lost: %m");
                        return 0;
                }
        }

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                client_read(c);
        return 0;
}

static int client_connect(QmpClient *c) {
        union {
                struct sockaddr sa;
                struct sockaddr_un un;
        } sa = { .un.sun_family = AF_UNIX };
        int r;

        strcpy(sa.un.sun_path, c->path); /* length checked in qmp_client_new() */

        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;

        if (connect(c->fd, &sa.sa, sizeof sa.un) < 0) {
                if (errno != EINPROGRESS)
                        return -errno;
        } else
                c->connected = true;

        r = qmp_parser_new(QMP_MAX_MESSAGE, &c->parser);
        if (r < 0)
                return r;
        r = sd_event_add_io(c->event, &c->io, c->fd, c->connected ? EPOLLIN : EPOLLOUT, on_io, c);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(c->event, &c->timer, CLOCK_MONOTONIC, QMP_HANDSHAKE_TIMEOUT_USEC, 0,
                                       on_handshake_timeout, c);
        if (r < 0)
                return r;

        if (c->connected) {
                c->connect_error = 0;
                log_debug("QMP %s: connected", c->path);
        }
        return 0;
}

static int client_attempt(QmpClient *c) {
        int r = client_connect(c);
        if (r < 0)
                return client_connect_failed(c, r);
        return 0;
}

static int on_reconnect(sd_event_source *s, uint64_t usec, void *userdata) {
        _cleanup_(client_unrefp) QmpClient *c = client_ref(userdata);

        c->timer = sd_event_source_disable_unref(c->timer);
        if (c->state == QMP_DISCONNECTED) {
                c->state = QMP_CONNECTING;
                if (c->on_state)
                        c->on_state(c, QMP_CONNECTING, 0, c->userdata);
                if (c->freed)
                        return 0;
        }
        (void) client_attempt(c);
        return 0;
}

int qmp_client_new(sd_event *e, const char *socket_path, QmpClient **ret) {
        QmpClient *c;

        if (!e || !socket_path || !ret)
                return -EINVAL;
        if (strlen(socket_path) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                return -ENAMETOOLONG;

        c = new0(QmpClient, 1);
        if (!c)
                return -ENOMEM;
        c->path = strdup(socket_path);
        if (!c->path) {
                free(c);
                return -ENOMEM;
        }
        c->n_ref = 1;
        c->event = sd_event_ref(e);
        c->fd = -EBADF;
        c->state = QMP_DISCONNECTED;
        c->backoff_usec = QMP_BACKOFF_MIN_USEC;
        c->next_id = 1;

        *ret = c;
        return 0;
}

QmpClient *qmp_client_free(QmpClient *c) {
        if (!c)
                return NULL;

        c->freed = true;
        c->on_event = NULL;
        c->on_state = NULL;
        client_close(c);
        c->state = QMP_DISCONNECTED;
        client_fail_pending(c, -ECANCELED);
        client_unref(c);
        return NULL;
}

void qmp_client_set_handlers(QmpClient *c, qmp_event_t on_event, qmp_state_t on_state, void *userdata) {
        c->on_event = on_event;
        c->on_state = on_state;
        c->userdata = userdata;
}

int qmp_client_start(QmpClient *c) {
        if (c->state != QMP_DISCONNECTED || c->timer)
                return -EBUSY;

        c->state = QMP_CONNECTING;
        return client_attempt(c);
}

void qmp_client_reconnect(QmpClient *c, int error, const char *why) {
        if (c->state == QMP_READY)
                client_fail(c, error, "%s, reconnecting", why);
}

QmpState qmp_client_get_state(QmpClient *c) {
        return c->state;
}

const char *qmp_client_get_path(QmpClient *c) {
        return c->path;
}

/* QEMU answers in order and at once: a command without a reply means a monitor that is stuck or a
 * peer that is not QEMU. The connection is dropped and opened again after the back-off, rather than
 * left to time out every command sent on it. */
static int on_command_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        QmpCommand *cmd = userdata;
        _cleanup_(client_unrefp) QmpClient *c = client_ref(cmd->client);
        _cleanup_free_ char *name = TAKE_PTR(cmd->name);
        uint64_t timeout_usec = cmd->timeout_usec;

        (void) client_unlink_command(c, cmd->id);
        command_complete(cmd, -ETIMEDOUT, NULL, NULL);
        if (!c->freed && c->state == QMP_READY)
                client_fail(c, -ETIMEDOUT, "no reply to %s within %" PRIu64 " ms, reconnecting", name,
                            timeout_usec / USEC_PER_MSEC);
        return 0;
}

int qmp_client_call(QmpClient *c, const char *command, json_object *arguments, uint64_t timeout_usec,
                    qmp_reply_t callback, void *userdata) {
        _cleanup_json_ json_object *args = arguments;
        _cleanup_(command_freep) QmpCommand *cmd = NULL;
        int r;

        if (!c || !command || !callback || timeout_usec == 0)
                return -EINVAL;
        if (c->state != QMP_READY)
                return -ENOTCONN;

        cmd = new0(QmpCommand, 1);
        if (!cmd)
                return -ENOMEM;
        cmd->name = strdup(command);
        if (!cmd->name)
                return -ENOMEM;
        cmd->client = c;
        cmd->timeout_usec = timeout_usec;
        cmd->id = c->next_id++;
        cmd->callback = callback;
        cmd->userdata = userdata;

        r = sd_event_add_time_relative(c->event, &cmd->timer, CLOCK_MONOTONIC, timeout_usec, 0,
                                       on_command_timeout, cmd);
        if (r < 0)
                return r;

        r = client_queue(c, command, TAKE_PTR(args), cmd->id);
        if (r < 0)
                return r;

        if (c->pending_tail)
                c->pending_tail->next = cmd;
        else
                c->pending = cmd;
        c->pending_tail = TAKE_PTR(cmd);
        return 0;
}

/* ---- Replies ---- */

int qmp_parse_query_balloon(json_object *result, uint64_t *ret_actual) {
        return json_member_u64(result, "actual", ret_actual);
}
