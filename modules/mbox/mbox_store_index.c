/* The store's cache beside each folder (ROOT/.imap/NAME/postern.index):
 * the parsed message list with the mbox's identity (inode, size, mtime)
 * at the time, so an unchanged folder opens without reading the mbox and
 * a grown one is read from its old end. Also keeps UIDVALIDITY/UIDNEXT of
 * empty folders. Anything odd in it = ignored, rebuilt from the mbox.
 * The records start 8-aligned so a load maps them in place (see
 * ms_folder.map): the file is only ever replaced by rename, never
 * rewritten, so a mapping stays valid. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mbox_store.h"
#include "postern/fdio.h"

#define INDEX_MAGIC "PTIDX004"
#define INDEX_NAME "postern.index"

struct index_head {
	char magic[8];
	uint64_t dev, ino, size;
	int64_t mtime_s, mtime_ns;
	uint32_t uidvalidity, uidnext, nkw, nmsg;
	uint32_t kwbytes, rec_size;
	uint32_t base_ok, pad;         /* ms_folder.base_ok for that file state */
	int64_t junk;
	uint64_t highest_modseq;       /* CONDSTORE: ms_folder.highest_modseq */
	uint64_t sum;                  /* FNV-1a of everything after the head */
};

/* Where the records start: after the head and the names, 8-aligned. */
static uint64_t
records_at(uint32_t kwbytes)
{
	return ((uint64_t)sizeof(struct index_head) + kwbytes + 7) & ~(uint64_t)7;
}

static uint64_t
fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

int
ms_mkdirs(const char *path, int include_last)
{
	char tmp[MS_PATH_MAX];
	if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
		return -1;
	size_t len = strlen(tmp);
	if (!include_last) {
		char *slash = strrchr(tmp, '/');
		if (slash == NULL || slash == tmp)
			return 0;
		*slash = '\0';
		len = strlen(tmp);
	}
	for (size_t i = 1; i <= len; i++) {
		if (tmp[i] != '/' && tmp[i] != '\0')
			continue;
		char c = tmp[i];
		tmp[i] = '\0';
		if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
			return -1;
		tmp[i] = c;
	}
	return 0;
}

int
ms_index_save(const struct ms_folder *f)
{
	char path[MS_PATH_MAX + 32], tmp[MS_PATH_MAX + 48];
	snprintf(path, sizeof path, "%s/%s", f->idxdir, INDEX_NAME);
	snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
	if (ms_mkdirs(f->idxdir, 1) != 0)
		return -1;
	struct index_head h;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, INDEX_MAGIC, 8);
	if (f->known_valid) {
		h.dev = (uint64_t)f->known.st_dev;
		h.ino = (uint64_t)f->known.st_ino;
		h.size = (uint64_t)f->known.st_size;
		h.mtime_s = (int64_t)f->known.st_mtim.tv_sec;
		h.mtime_ns = (int64_t)f->known.st_mtim.tv_nsec;
	}
	h.uidvalidity = f->uidvalidity;
	h.uidnext = f->uidnext;
	h.nkw = (uint32_t)f->nkw;
	h.nmsg = (uint32_t)f->n;
	h.rec_size = (uint32_t)sizeof(struct ms_msg);
	h.base_ok = f->known_valid && f->base_ok;
	h.junk = f->junk;
	h.highest_modseq = f->highest_modseq;
	for (size_t i = 0; i < f->nkw; i++)
		h.kwbytes += (uint32_t)strlen(f->kw[i]) + 1;
	uint64_t sum = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < f->nkw; i++)
		sum = fnv(sum, f->kw[i], strlen(f->kw[i]) + 1);
	sum = fnv(sum, f->m, f->n * sizeof *f->m);
	h.sum = sum;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	int rc = pt_write_all(fd, &h, sizeof h);
	for (size_t i = 0; rc == 0 && i < f->nkw; i++)
		rc = pt_write_all(fd, f->kw[i], strlen(f->kw[i]) + 1);
	static const char zeros[8];
	size_t pad = (size_t)(records_at(h.kwbytes) - sizeof h - h.kwbytes);
	if (rc == 0 && pad)
		rc = pt_write_all(fd, zeros, pad);
	if (rc == 0 && f->n)
		rc = pt_write_all(fd, f->m, f->n * sizeof *f->m);
	if (close(fd) != 0)
		rc = -1;
	/* A cache: no fsync; a torn file fails its checksum and is rebuilt. */
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -1;
	if (rc != 0)
		unlink(tmp);
	return rc;
}

static int
index_open(const struct ms_folder *f, struct index_head *h, struct stat *isb)
{
	char path[MS_PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/%s", f->idxdir, INDEX_NAME);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	if (fstat(fd, isb) != 0 || !S_ISREG(isb->st_mode) ||
	    pt_read_full(fd, h, sizeof *h) != (ssize_t)sizeof *h || memcmp(h->magic, INDEX_MAGIC, 8) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int
head_matches(const struct index_head *h, const struct stat *sb)
{
	return (uint64_t)sb->st_dev == h->dev && (uint64_t)sb->st_ino == h->ino &&
	       (uint64_t)sb->st_size == h->size && (int64_t)sb->st_mtim.tv_sec == h->mtime_s &&
	       (int64_t)sb->st_mtim.tv_nsec == h->mtime_ns;
}

int
ms_index_matches(const struct ms_folder *f, const struct stat *sb)
{
	struct index_head h;
	struct stat isb;
	int fd = index_open(f, &h, &isb);
	if (fd < 0)
		return 0;
	close(fd);
	return head_matches(&h, sb);
}

int
ms_index_load(struct ms_folder *f, const struct stat *sb, struct stat *idx_sb)
{
	struct index_head h;
	struct stat isb;
	int fd = index_open(f, &h, &isb);
	if (fd < 0)
		return 0;
	char *map = MAP_FAILED;
	size_t map_len = 0;
	int rc = 0;
	uint64_t rec_at = records_at(h.kwbytes);
	if (h.rec_size != sizeof(struct ms_msg) || h.nkw > PT_KEYWORDS_MAX ||
	    h.kwbytes > PT_KEYWORDS_MAX * 64 ||
	    (uint64_t)isb.st_size != rec_at + (uint64_t)h.nmsg * sizeof(struct ms_msg) ||
	    (uint64_t)isb.st_size > SIZE_MAX)
		goto out;
	/* Private and writable: a flag change copies one page, never
	 * touching the file; unchanged pages stay shared. */
	map_len = (size_t)isb.st_size;
	map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		goto out;
	const char *kwbuf = map + sizeof h;
	struct ms_msg *m = (struct ms_msg *)(void *)(map + rec_at);
	uint64_t sum = fnv(0xcbf29ce484222325ull, kwbuf, h.kwbytes);
	sum = fnv(sum, m, (size_t)h.nmsg * sizeof *m);
	if (sum != h.sum || h.uidvalidity == 0 || h.uidnext == 0)
		goto out;
	/* The names must be exactly nkw NUL-terminated valid keywords. */
	const char *names[PT_KEYWORDS_MAX];
	size_t nn = 0, pos = 0;
	while (pos < h.kwbytes && nn < h.nkw) {
		const char *nul = memchr(kwbuf + pos, '\0', h.kwbytes - pos);
		if (nul == NULL || !ms_keyword_valid(kwbuf + pos))
			goto out;
		names[nn++] = kwbuf + pos;
		pos = (size_t)(nul - kwbuf) + 1;
	}
	if (nn != h.nkw || pos != h.kwbytes)
		goto out;
	/* Records must be ordered by offset and UID. */
	for (uint32_t i = 0; i < h.nmsg; i++) {
		const struct ms_msg *r = &m[i];
		if (r->info.uid == 0 || r->info.uid >= h.uidnext ||
		    (i && (r->info.uid <= m[i - 1].info.uid || r->from_off < m[i - 1].end)) ||
		    r->hdr_off < r->from_off || r->body_off < r->hdr_off || r->end < r->body_off ||
		    (uint64_t)r->end > h.size || r->info.modseq == 0 || r->info.modseq > h.highest_modseq)
			goto out;
	}
	/* The table only grows: bits already handed out (a keyword made for
	 * a STORE that is about to be written) keep their meaning, and the
	 * index's bits are mapped onto it. */
	int map_kw[PT_KEYWORDS_MAX], same = 1, base_ok = f->base_ok;
	for (size_t i = 0; i < nn; i++) {
		map_kw[i] = ms_folder_keyword(f, names[i], 1);
		if (map_kw[i] < 0)
			goto out;   /* table full: a full parse sorts it out */
		if (map_kw[i] != (int)i)
			same = 0;
	}
	for (uint32_t i = 0; !same && i < h.nmsg; i++) {
		uint64_t kw = 0;
		for (size_t b = 0; b < nn; b++)
			if (m[i].info.keywords >> b & 1u)
				kw |= 1ull << map_kw[b];
		if (m[i].info.keywords != kw)
			m[i].info.keywords = kw;
	}
	f->nkw_written = nn;
	f->uidvalidity = h.uidvalidity;
	f->uidnext = h.uidnext;
	/* Never back: this open may have handed out more than the file says
	 * (a save that failed). */
	if (h.highest_modseq > f->highest_modseq)
		f->highest_modseq = h.highest_modseq;
	memset(idx_sb, 0, sizeof *idx_sb);
	idx_sb->st_dev = (dev_t)h.dev;
	idx_sb->st_ino = (ino_t)h.ino;
	idx_sb->st_size = (off_t)h.size;
	idx_sb->st_mtim.tv_sec = (time_t)h.mtime_s;
	idx_sb->st_mtim.tv_nsec = (long)h.mtime_ns;
	ms_folder_drop_msgs(f);
	if (h.nmsg) {
		f->m = m;
		f->map = map;
		f->map_len = map_len;
		map = MAP_FAILED;
	}
	f->n = f->cap = h.nmsg;
	f->junk = h.junk;
	rc = sb && head_matches(&h, sb) ? 1 : 2;
	/* Whether the file's X-IMAPbase is current: as saved when the file is
	 * the one the index describes (else as known here), and only while
	 * no keyword was added here. */
	f->base_ok = f->nkw == nn && (rc == 1 ? h.base_ok == 1 : base_ok);
out:
	if (map != MAP_FAILED)
		munmap(map, map_len);
	close(fd);
	return rc;
}

uint32_t
ms_new_uidvalidity(const char *root)
{
	char dir[MS_PATH_MAX + 8], path[MS_PATH_MAX + 32], tmp[MS_PATH_MAX + 48];
	snprintf(dir, sizeof dir, "%s/.imap", root);
	snprintf(path, sizeof path, "%s/uidvalidity", dir);
	snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
	unsigned long last = 0;
	FILE *fp = fopen(path, "r");
	if (fp) {
		if (fscanf(fp, "%lu", &last) != 1)
			last = 0;
		fclose(fp);
	}
	unsigned long now = (unsigned long)time(NULL);
	unsigned long v = now > last ? now : last + 1;
	if (v == 0 || v > 0xffffffffUL)
		v = 1;
	/* Best effort: a lost counter only makes a reused value possible
	 * after a clock jump back. */
	if (ms_mkdirs(dir, 1) == 0) {
		fp = fopen(tmp, "w");
		if (fp) {
			fprintf(fp, "%lu\n", v);
			if (fclose(fp) == 0)
				rename(tmp, path);
			else
				unlink(tmp);
		}
	}
	return (uint32_t)v;
}
