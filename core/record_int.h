/* Core side of the decision record (postern/record.h): the writer the
 * worker runs, and the store's layout shared with `postern why`. */
#ifndef POSTERN_RECORD_INT_H
#define POSTERN_RECORD_INT_H

#include <stddef.h>

#include "postern/config.h"

struct sqlite3;

/* user_version of the database this code reads and writes. */
#define PT_RECORD_SCHEMA 1

/* Roles of the addr table rows. */
enum { PT_ADDR_SENDER = 1, PT_ADDR_RCPT = 2, PT_ADDR_ORIG = 3 };

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
