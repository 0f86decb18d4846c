/* Core-internal side of post-login sessions: the worker <-> mail agent
 * wire format, the agent spawner and the worker's hook into it. */
#ifndef POSTERN_SESSION_INT_H
#define POSTERN_SESSION_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "postern/config.h"
#include "postern/session.h"

struct pt_loop;

/* One SOCK_SEQPACKET message each, little-endian host order (both ends
 * are processes of the same binary):
 *   request  'S' u32 id u8 tls u16 peer_port u16 local_port u16 handoff_len
 *            protocol NUL user NUL mech NUL session_id NUL peer NUL local NUL
 *            handoff bytes                 (+ one fd: the session socket)
 *   ok       'K' u32 id i32 pid
 *   fail     'F' u32 id code NUL reason NUL
 *   retire   'R'   mail process -> agent: idle, may I exit?
 *   ack      'A'   agent -> mail process: yes; nothing more will come
 * The agent forwards the same request to the user's mail process. */
#define PT_SESSION_WIRE_MAX 4096
#define PT_SESSION_PROTO_MAX 32
#define PT_SESSION_NAME_MAX 256
#define PT_SESSION_MECH_MAX 32
#define PT_SESSION_ID_MAX 64
#define PT_SESSION_ADDR_MAX 64

enum pt_session_msg {
	PT_SW_REQUEST = 'S',
	PT_SW_OK = 'K',
	PT_SW_FAIL = 'F',
	PT_SW_RETIRE = 'R',
	PT_SW_ACK = 'A',
};

struct pt_session_reply {
	uint32_t id;
	int ok;
	pid_t pid;          /* ok: the mail process */
	char code[16];      /* fail: "UNAVAILABLE" / "LIMIT" */
	char reason[256];
};

/* Encode a request (info's peer/local/tls fields included); returns the
 * length or -1 when a field is missing or too long. */
int pt_session_wire_request_encode(uint32_t id, const struct pt_session_info *info,
                                   unsigned char *buf, size_t cap);
/* In place: info's strings and handoff point into buf. 0 or -1. */
int pt_session_wire_request_decode(unsigned char *buf, size_t len, uint32_t *id,
                                   struct pt_session_info *info);
int pt_session_wire_reply_encode(const struct pt_session_reply *r, unsigned char *buf, size_t cap);
int pt_session_wire_reply_decode(const unsigned char *buf, size_t len, struct pt_session_reply *r);
/* The type byte of a message, or 0 for an empty one. */
int pt_session_wire_type(const unsigned char *buf, size_t len);

/* Master: fork the mail agent of a generation; *worker_fd gets the
 * worker's end of the request socket. close_fds: the master's ends of the
 * other agents' sockets, closed in the agent (a mail process running as a
 * user must never hold the root delivery or auth agent's socket).
 * Returns the pid or -1. */
pid_t pt_mail_agent_spawn(const struct pt_config *conf, int *worker_fd, const int *close_fds,
                          size_t nclose);

/* The agent's child: become user, run the mail process on ctl (the
 * agent's control socket); never returns. */
void pt_mail_process_main(int ctl, const struct pt_user *user, const struct pt_config *conf,
                          int as_root, pid_t agent) __attribute__((noreturn));

/* Worker: requests go to the agent on fd, replies are read on loop. The
 * worker owns fd from here on (-1: no agent; handoffs fail UNAVAILABLE). */
void pt_session_set_agent(struct pt_loop *loop, int fd);
/* Handed-off sessions live now (proxied or waiting for the agent). */
size_t pt_session_count(void);

/* Mail process side, also used by tests: serve one session fd with the
 * protocol's "session:PROTO" service, the conn reporting the client's
 * addresses and TLS state. Calls done(arg) once when the session's conn
 * closes (also when no service takes it). */
int pt_session_serve(struct pt_loop *loop, int fd, const struct pt_session_info *info,
                     const struct pt_user *user, void (*done)(void *arg), void *arg);

#endif
