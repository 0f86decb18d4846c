/* Blocking file-descriptor I/O that survives signals and short counts, and
 * the directory fsync that makes a create or rename durable. For the
 * non-blocking sockets of the event loop use pt_conn instead. */
#ifndef POSTERN_FDIO_H
#define POSTERN_FDIO_H

#include <stddef.h>
#include <sys/types.h>

/* Write all n bytes (EINTR and short writes retried). 0, or -1 with errno
 * set (EIO when the kernel took nothing without saying why). */
int pt_write_all(int fd, const void *p, size_t n);
/* The same from offset off >= 0 on (pwrite: the file position does not move). */
int pt_pwrite_all(int fd, const void *p, size_t n, off_t off);
/* Read up to n bytes, stopping early only at end of file. The count read,
 * or -1 with errno set. */
ssize_t pt_read_full(int fd, void *p, size_t n);
/* The same from offset off >= 0 on (pread). */
ssize_t pt_pread_full(int fd, void *p, size_t n, off_t off);
/* Read fd to its end into a new buffer (*out, NUL after the data, *len
 * bytes). max > 0 bounds it: more than max bytes is -1 with errno EFBIG.
 * 0, or -1 with errno set and *out untouched. */
int pt_read_all(int fd, size_t max, char **out, size_t *len);
/* fsync the directory at path, so that an entry created, renamed or
 * removed in it survives a crash. 0, or -1 with errno set. */
int pt_fsync_dir(const char *path);

#endif
