/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>
#include <systemd/sd-event.h>

/* A non-blocking QMP client on an sd-event loop. One client per VM. It connects, reads the greeting,
 * negotiates capabilities, and then lets callers issue commands with a timeout each. On any error,
 * a command that times out included, it fails the pending commands, reports the disconnect and
 * reconnects with exponential back-off (1 s doubling to 30 s, back to 1 s only when the connection
 * lost had stayed READY for 30 s). Incoming messages above QMP_MAX_MESSAGE are a protocol error.
 *
 * Callbacks run from the event loop only, never from inside qmp_client_start/call/set_handlers; the
 * exceptions are qmp_client_free(), which runs the replies it cancels, and qmp_client_reconnect(). A callback may call
 * qmp_client_free() on its own client (the client is reference counted while it dispatches): the
 * remaining pending replies then see -ECANCELED and no further callback runs. */

#define QMP_MAX_MESSAGE (1024 * 1024)

typedef struct QmpClient QmpClient;

typedef enum QmpState {
        QMP_DISCONNECTED,
        QMP_CONNECTING,   /* socket connecting, greeting or qmp_capabilities pending; also between
                           * the quiet retries while the socket is missing or refuses connections */
        QMP_READY,
} QmpState;

/* 'error' is 0 on success, then 'result' is the "return" member (borrowed; json_object_get() to keep).
 * On failure result is NULL and 'error' is -ETIMEDOUT, -ECONNRESET (connection lost), -ECANCELED
 * (client freed), or -EREMOTEIO when QEMU answered with an "error" member, whose "desc" is in 'desc'.
 * After -ETIMEDOUT the connection is dropped as lost (the other pending commands see -ECONNRESET). */
typedef void (*qmp_reply_t)(QmpClient *c, int error, json_object *result, const char *desc, void *userdata);
/* Any asynchronous event, known or not; 'data' may be NULL. */
typedef void (*qmp_event_t)(QmpClient *c, const char *event, json_object *data, void *userdata);
/* State changes; 'error' says why a connection was lost (0 on READY). Called on transitions only:
 * READY after the handshake; DISCONNECTED when a connection that was established is lost (EOF,
 * protocol error, handshake timeout), then CONNECTING when the reconnection starts. Connections
 * that are refused or whose socket is missing are retried quietly without a callback. Never called
 * from qmp_client_free(). */
typedef void (*qmp_state_t)(QmpClient *c, QmpState state, int error, void *userdata);

int qmp_client_new(sd_event *e, const char *socket_path, QmpClient **ret);
QmpClient *qmp_client_free(QmpClient *c);
static inline void qmp_client_freep(QmpClient **c) {
        qmp_client_free(*c);
}

void qmp_client_set_handlers(QmpClient *c, qmp_event_t on_event, qmp_state_t on_state, void *userdata);
/* Starts connecting now (the state becomes CONNECTING without a callback); reconnects on its own
 * from then on. -EBUSY when already started. */
int qmp_client_start(QmpClient *c);
/* The peer said something that makes the connection useless (a reply that makes no sense): drops it
 * as lost with 'error' and reconnects with back-off. The pending replies and the state callback run
 * before it returns. Nothing when not READY. */
void qmp_client_reconnect(QmpClient *c, int error, const char *why);
QmpState qmp_client_get_state(QmpClient *c);
const char *qmp_client_get_path(QmpClient *c);

/* Sends a command; takes ownership of 'arguments' (may be NULL) in all cases. On success the callback
 * runs exactly once, later, from the event loop; on failure it never runs. Fails with -ENOTCONN when
 * the client is not READY, -ENOBUFS when QEMU stopped reading and QMP_MAX_MESSAGE bytes are queued,
 * -EINVAL for a zero timeout. */
int qmp_client_call(QmpClient *c, const char *command, json_object *arguments, uint64_t timeout_usec,
                    qmp_reply_t callback, void *userdata);

/* Parses the result of "query-balloon": {"actual": N}. */
int qmp_parse_query_balloon(json_object *result, uint64_t *ret_actual);

/* Incremental message splitter used by the client, exposed for tests: feed bytes as they arrive,
 * take complete JSON objects out. QMP messages are separated by "\r\n"; an object is complete when
 * the tokener says so, whatever the line breaks. */
typedef struct QmpParser QmpParser;
int qmp_parser_new(size_t max_message, QmpParser **ret);
QmpParser *qmp_parser_free(QmpParser *p);
/* Returns -EMSGSIZE when a message grows beyond max_message, -E2BIG when it nests or holds more than
 * json-util.h's bounds (checked before json-c allocates), -EBADMSG on invalid JSON or a non-object
 * top-level value. */
int qmp_parser_feed(QmpParser *p, const char *buf, size_t n);
/* Takes the next complete object (the caller owns it) and returns 1, or returns 0 with *ret = NULL
 * when none. Objects completed before an error in the same feed can still be taken. */
int qmp_parser_next(QmpParser *p, json_object **ret);
