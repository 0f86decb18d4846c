/* Core side of the decision record (postern/record.h): the writer the
 * worker runs, and the store's layout shared with `postern why`. */
#ifndef POSTERN_RECORD_INT_H
#define POSTERN_RECORD_INT_H

#include <stddef.h>

#include "postern/config.h"

struct sqlite3;

/* user_version of the database this code writes (3: event.dlv). The
 * writer migrates a schema-2 store on open (one ALTER TABLE: its rows stay
 * as they are); `postern why` reads both. */
#define PT_RECORD_SCHEMA 3
#define PT_RECORD_SCHEMA_OLDEST 2

/* An event's id is its ts (ms) * PT_RECORD_ID_SCALE + a sequence number:
 * id order is time order. */
#define PT_RECORD_ID_SCALE 4096LL

/* Roles of an event's addresses. */
enum { PT_ADDR_SENDER = 1, PT_ADDR_RCPT = 2, PT_ADDR_ORIG = 3 };

/* event.rcpts: the event's addresses, each "ROLE US address US reply US
 * rule" (ROLE a digit, empty reply or rule: none), joined by RS. The
 * writer turns RS and US inside the strings into '?'. */
#define PT_RECORD_RS '\x1e'
#define PT_RECORD_US '\x1f'

/* One row per message: a delivery written in the same batch as its SMTP
 * transaction, at most PT_RECORD_FOLD_MS after the transaction's time
 * (never before it), is folded into the transaction's row (event.dlv)
 * instead of a row of its own; its addresses' search terms list the
 * transaction's id. Its queue id, sender and Message-ID are the
 * transaction's. A reader widens a time window's start by the cap and
 * holds events back by it to keep newest-first order. dlv: the folded
 * deliveries joined by FS, each "ID US DELAY US OUTCOME US SERVICE US
 * RELAY US DSN US REPLY US ADDRESSES": ID the event id it would have had
 * (its time * PT_RECORD_ID_SCALE + a sequence number), DELAY the 16 hex
 * digits of the double's bits, each text field "" for none or '=' and the
 * text (FS, RS and US in it turned into '?'), ADDRESSES as in rcpts. The
 * writer folds only events whose addresses hold no FS, RS or US, so the
 * stored addresses are the ones the terms were made of. */
#define PT_RECORD_FOLD_MS 10000LL
#define PT_RECORD_FS '\x1c'

/* Search terms (table term): an address as "R=local@domain" and
 * "R@domain" (R: 's' sender, 'r' recipient, 'o' original recipient;
 * local and domain as pt_record_split gives them), "c=ADDRESS" for a
 * client, "u=user" (ASCII lower-case) for a login or SMTP AUTH user, "x"
 * for a transaction that refused something. pt_record_term writes an
 * address term (local NULL: the domain form) and returns its length, or
 * -1 when it does not fit. */
int pt_record_term(char *out, size_t len, char role, const char *local, const char *domain);
/* The term letter of an address role, and the two terms of an address
 * (whole, domain) as the writer lists them: out[i][0] = '\0' for one
 * that does not fit. */
char pt_record_role_letter(int role);
void pt_record_addr_terms(int role, const char *address, char out[2][600]);

/* In the worker: start the writer thread for c's decision_log_file (empty:
 * keep no record). 0, or -1 when the thread cannot start (logged; the
 * server runs on without a record). */
int pt_record_open(const struct pt_config *c);
/* Write what is buffered and stop the writer (graceful exit). */
void pt_record_close(void);

/* A message the local user submitted (sendmail, picked up from the
 * maildrop): recorded as a transaction of service "pickup". */
struct pt_qfile;
void pt_record_pickup(const struct pt_qfile *q);

/* Open the store at path: create it (mode 0600, parent directory 0700
 * made when missing) with the schema when create is set, else open an
 * existing one read-only. NULL with a reason in err. */
struct sqlite3 *pt_record_db_open(const char *path, int create, char *err, size_t errlen);

/* An address split for searching: lower-case local part and domain, from
 * "<Local@Domain>", "local@domain", "local" or "@domain". */
void pt_record_split(const char *addr, char *local, size_t llen, char *domain, size_t dlen);

/* Retention pass (also run by the writer): drop events older than
 * max_age seconds (0: keep) and the oldest ones while the store is above
 * max_size bytes (0: no limit). Returns the number of events dropped. */
long pt_record_prune(struct sqlite3 *db, long long max_age, long long max_size);

#endif
