/* Blocking fd I/O helpers (include/postern/fdio.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "postern/fdio.h"

/* off < 0: write(2) at the file position; else pwrite(2) from off on. */
static int
write_loop(int fd, const char *c, size_t n, off_t off)
{
	while (n > 0) {
		ssize_t w = off < 0 ? write(fd, c, n) : pwrite(fd, c, n, off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return -1;
		}
		c += w;
		n -= (size_t)w;
		if (off >= 0)
			off += w;
	}
	return 0;
}

int
pt_write_all(int fd, const void *p, size_t n)
{
	return write_loop(fd, p, n, -1);
}

int
pt_pwrite_all(int fd, const void *p, size_t n, off_t off)
{
	if (off < 0) {
		errno = EINVAL;
		return -1;
	}
	return write_loop(fd, p, n, off);
}

/* off < 0: read(2) from the file position; else pread(2) from off on. */
static ssize_t
read_loop(int fd, char *p, size_t n, off_t off)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = off < 0 ? read(fd, p + got, n - got) : pread(fd, p + got, n - got, off + (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

ssize_t
pt_read_full(int fd, void *p, size_t n)
{
	return read_loop(fd, p, n, -1);
}

ssize_t
pt_pread_full(int fd, void *p, size_t n, off_t off)
{
	if (off < 0) {
		errno = EINVAL;
		return -1;
	}
	return read_loop(fd, p, n, off);
}

int
pt_read_all(int fd, size_t max, char **out, size_t *len)
{
	size_t cap = 0, n = 0;
	char *buf = NULL;
	for (;;) {
		if (n == cap) {
			size_t nc = cap > ((size_t)-1 - 1) / 2 ? cap : cap ? cap * 2 : 4096;
			if (max && nc > max + 1)
				nc = max + 1; /* one byte past max tells a file that is too large */
			if (nc <= cap) {
				free(buf);
				errno = EFBIG;
				return -1;
			}
			char *nb = realloc(buf, nc + 1);
			if (!nb) {
				free(buf);
				errno = ENOMEM;
				return -1;
			}
			buf = nb;
			cap = nc;
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(buf);
			errno = e;
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (max && n > max) {
			free(buf);
			errno = EFBIG;
			return -1;
		}
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

int
pt_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return rc;
}
