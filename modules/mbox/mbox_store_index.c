/* The store's cache beside each folder (ROOT/.imap/NAME/postern.index):
 * the parsed message list with the mbox's identity (inode, size, mtime)
 * at the time, so an unchanged folder opens without reading the mbox and
 * a grown one is read from its old end. Also keeps UIDVALIDITY/UIDNEXT of
 * empty folders and the expunged UIDs with their mod-sequences (QRESYNC).
 * Anything odd in it = ignored, rebuilt from the mbox.
 * The records start 8-aligned so a load maps them in place (see
 * ms_folder.map): the file is only ever replaced by rename, never
 * rewritten, so a mapping stays valid. Before them, each record's brief
 * (UID, flags, keywords, MODSEQ: 24 bytes of its 112) for SELECT, which
 * reads just that of every message (see ms_index_briefs); the records
 * come last so that records added grow into the room after the map.
 *
 * Beside it, the flag log (postern.flags): STORE's changes, appended
 * (fdatasync'd with mbox_flag_fsync), so a flag change costs one small
 * write instead of a write into the mbox and a new index. The mbox gets them at the next
 * ms_folder_write (EXPUNGE, a delivery through the store, the close of
 * a read-write open, or when the log grows past LOG_MAX), which then
 * removes the log. Each record carries the mbox state it was made on:
 * replayed over a list read from the mbox, it counts only while that
 * message's mbox state is still the same, so a crash after the mbox
 * write (log not yet removed) or another program that changed the
 * message since makes it void, and nothing else. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "mbox_store.h"
#include "postern/fdio.h"

/* 006: the records' briefs before them. A 005 file (no briefs) still
 * loads: an upgrade keeps the expunge list QRESYNC answers from. */
#define INDEX_MAGIC "PTIDX006"
#define INDEX_MAGIC_OLD "PTIDX005"
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22   /* Linux 5.14; older kernels say EINVAL */
#endif
#define INDEX_NAME "postern.index"
#define LOG_NAME "postern.flags"
/* Records per checksum step (about 56 KiB: in the cache for the
 * validation that follows). */
#define SUM_CHUNK 512u
/* Past this size the log is written into the mbox (and removed). */
#define LOG_MAX (4u << 20)

struct index_head {
	char magic[8];
	uint64_t dev, ino, size;
	int64_t mtime_s, mtime_ns;
	uint32_t uidvalidity, uidnext, nkw, nmsg;
	uint32_t kwbytes, rec_size;
	uint32_t base_ok, nvan;        /* ms_folder.base_ok for that file state */
	int64_t junk;
	uint64_t highest_modseq;       /* CONDSTORE: ms_folder.highest_modseq */
	uint64_t van_floor;            /* ms_folder.van_floor */
	uint64_t sum;                  /* sum64 of everything after the head */
};

/* Where the expunge ranges start: after the head and the names,
 * 8-aligned; the briefs, then the records follow them. */
static uint64_t
van_at(uint32_t kwbytes)
{
	return ((uint64_t)sizeof(struct index_head) + kwbytes + 7) & ~(uint64_t)7;
}

static uint64_t
briefs_at(uint32_t kwbytes, uint32_t nvan)
{
	return van_at(kwbytes) + (uint64_t)nvan * sizeof(struct ms_vanished);
}

/* A checksum for torn or damaged files, not an adversary: four 64-bit
 * lanes of multiply-xorshift, so every open of a big folder pays about
 * a memory pass over the index (a byte-wise FNV cost 10 ms for 100k
 * messages). */
uint64_t
ms_sum64(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;
	const uint64_t k = 0x9e3779b97f4a7c15ull;
	uint64_t a = h, b = h ^ 0x243f6a8885a308d3ull, c = h ^ 0x13198a2e03707344ull,
	         d = h ^ 0xa4093822299f31d0ull;
	while (n >= 32) {
		uint64_t w[4];
		memcpy(w, s, 32);
		a = (a ^ w[0]) * k;
		b = (b ^ w[1]) * k;
		c = (c ^ w[2]) * k;
		d = (d ^ w[3]) * k;
		a ^= a >> 31;
		b ^= b >> 31;
		c ^= c >> 31;
		d ^= d >> 31;
		s += 32;
		n -= 32;
	}
	h = a ^ (b * 3) ^ (c * 5) ^ (d * 7);
	while (n--) {
		h ^= *s++;
		h *= 0x100000001b3ull;
	}
	h ^= h >> 29;
	return h * k;
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

/* An index file's identity: the same one is the same content. The file
 * is never rewritten in place by us, and whoever else changes it in
 * place (its owner can) moves its ctime, which no one but root can set
 * back -- unlike the size and mtime. */
struct idx_ident {
	uint64_t dev, ino, size;
	int64_t mtime_s, mtime_ns, ctime_s, ctime_ns;
};

static struct idx_ident
ident_of(const struct stat *sb)
{
	return (struct idx_ident){ (uint64_t)sb->st_dev,        (uint64_t)sb->st_ino,
		                   (uint64_t)sb->st_size,       (int64_t)sb->st_mtim.tv_sec,
		                   (int64_t)sb->st_mtim.tv_nsec, (int64_t)sb->st_ctim.tv_sec,
		                   (int64_t)sb->st_ctim.tv_nsec };
}

static int
ident_eq(const struct idx_ident *a, const struct idx_ident *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_s == b->mtime_s &&
	       a->mtime_ns == b->mtime_ns && a->ctime_s == b->ctime_s && a->ctime_ns == b->ctime_ns;
}

/* Index files this process has checked (checksum and records), so the
 * next open of the folder by another session of the user skips the pass
 * over a big folder's index. */
#define CHECKED_MAX 8
static struct checked {
	struct idx_ident id;
	int dirty;
	size_t not_old;
} checked[CHECKED_MAX];
static unsigned checked_next;
static pthread_mutex_t checked_mu = PTHREAD_MUTEX_INITIALIZER;

static int
checked_find(const struct stat *isb, int *dirty, size_t *not_old)
{
	struct idx_ident id = ident_of(isb);
	int hit = 0;
	pthread_mutex_lock(&checked_mu);
	for (unsigned i = 0; i < CHECKED_MAX && !hit; i++)
		if (checked[i].id.ino != 0 && ident_eq(&checked[i].id, &id)) {
			*dirty = checked[i].dirty;
			*not_old = checked[i].not_old;
			hit = 1;
		}
	pthread_mutex_unlock(&checked_mu);
	return hit;
}

static void
checked_add(const struct stat *isb, int dirty, size_t not_old)
{
	pthread_mutex_lock(&checked_mu);
	checked[checked_next++ % CHECKED_MAX] = (struct checked){ ident_of(isb), dirty, not_old };
	pthread_mutex_unlock(&checked_mu);
}

/* The same knowledge across the user's mail processes (each session of
 * a user whose process retired in between starts a new one): after a
 * save, or a load that checked an index, postern.checked beside it names
 * that file (its identity) and the boot it was checked in. A torn index
 * comes from a crash, which means another boot; an index written or
 * checked in this boot and not touched since is the content that was
 * checked. So an open in a new process skips the pass over a big
 * folder's index (a checksum of 11 MB at 100k messages) unless the
 * system rebooted or the file changed. No boot id: no marker.
 * The marker lies in a directory its user owns, and a load it lets
 * through trusts the records' offsets: it carries an HMAC under a key
 * made when the module is loaded (before the daemon forks any process,
 * so all of one run share it; a process a user runs cannot read it),
 * and a marker the user wrote for a doctored index is not believed. */
#define CHECKED_NAME "postern.checked"
#define CHECKED_MAGIC "PTCHK002"

static unsigned char mark_key[32];
static int mark_key_ok;

__attribute__((constructor)) static void
mark_key_init(void)
{
	mark_key_ok = getrandom(mark_key, sizeof mark_key, GRND_NONBLOCK) == (ssize_t)sizeof mark_key;
}

struct checked_file {
	char magic[8];
	char boot[40];                 /* /proc/sys/kernel/random/boot_id */
	struct idx_ident id;
	uint64_t dirty, not_old;
	unsigned char mac[32];         /* HMAC-SHA256 of the fields above */
};

static int
mark_mac(const struct checked_file *c, unsigned char out[32])
{
	unsigned int len = 0;
	return mark_key_ok &&
	       HMAC(EVP_sha256(), mark_key, sizeof mark_key, (const unsigned char *)c,
	            offsetof(struct checked_file, mac), out, &len) != NULL &&
	       len == 32;
}

/* This boot's id (once per process); NULL when unknown. */
const char *
ms_boot_id(void)
{
	static char id[40];
	static int state;              /* 0 not read, 1 read, -1 none */
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_mutex_lock(&mu);
	if (state == 0) {
		state = -1;
		int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t got = read(fd, id, sizeof id - 1);
			close(fd);
			while (got > 0 && (id[got - 1] == '\n' || id[got - 1] == ' '))
				got--;
			if (got >= 16) {
				id[got] = '\0';
				state = 1;
			}
		}
	}
	pthread_mutex_unlock(&mu);
	return state == 1 ? id : NULL;
}

static int
checked_file_get(const struct ms_folder *f, const struct stat *isb, int *dirty, size_t *not_old)
{
	const char *boot = ms_boot_id();
	if (boot == NULL)
		return 0;
	char path[MS_PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/%s", f->idxdir, CHECKED_NAME);
	struct checked_file c;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	ssize_t got = pt_read_full(fd, &c, sizeof c);
	close(fd);
	struct idx_ident id = ident_of(isb);
	unsigned char mac[32];
	if (got != (ssize_t)sizeof c || memcmp(c.magic, CHECKED_MAGIC, 8) != 0 || !mark_mac(&c, mac) ||
	    CRYPTO_memcmp(mac, c.mac, sizeof mac) != 0 || strncmp(c.boot, boot, sizeof c.boot) != 0 ||
	    !ident_eq(&c.id, &id))
		return 0;
	*dirty = c.dirty != 0;
	*not_old = (size_t)c.not_old;
	return 1;
}

static void
checked_file_put(const struct ms_folder *f, const struct stat *isb, int dirty, size_t not_old)
{
	const char *boot = ms_boot_id();
	if (boot == NULL)
		return;
	char path[MS_PATH_MAX + 32], tmp[MS_PATH_MAX + 48];
	snprintf(path, sizeof path, "%s/%s", f->idxdir, CHECKED_NAME);
	snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
	struct checked_file c;
	memset(&c, 0, sizeof c);
	memcpy(c.magic, CHECKED_MAGIC, 8);
	snprintf(c.boot, sizeof c.boot, "%s", boot);
	c.id = ident_of(isb);
	c.dirty = (uint64_t)dirty;
	c.not_old = (uint64_t)not_old;
	if (!mark_mac(&c, c.mac))
		return;
	/* A cache of a cache: no sync; a torn one fails its MAC. */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return;
	int ok = pt_write_all(fd, &c, sizeof c) == 0;
	if (close(fd) != 0)
		ok = 0;
	if (!ok || rename(tmp, path) != 0)
		unlink(tmp);
}

static void tail_drop(const struct ms_folder *f);
static void briefs_of(const struct ms_msg *m, size_t n, struct pt_msg_brief *out);

static int
same_stat_(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

int
ms_index_save(struct ms_folder *f)
{
	return ms_index_save_as(f, MS_INDEX_BRIEFS);
}

int
ms_index_save_as(struct ms_folder *f, int form)
{
	int with_briefs = form != MS_INDEX_OLD;
	if (f->index_defer) {
		/* The caller logs the change to the append log instead. */
		f->index_deferred = 1;
		return 0;
	}
	char path[MS_PATH_MAX + 32], tmp[MS_PATH_MAX + 48];
	snprintf(path, sizeof path, "%s/%s", f->idxdir, INDEX_NAME);
	snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
	if (ms_mkdirs(f->idxdir, 1) != 0)
		return -1;
	struct index_head h;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, with_briefs ? INDEX_MAGIC : INDEX_MAGIC_OLD, 8);
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
	h.nvan = (uint32_t)f->nvan;
	h.van_floor = f->van_floor;
	for (size_t i = 0; i < f->nkw; i++)
		h.kwbytes += (uint32_t)strlen(f->kw[i]) + 1;
	/* The names as written (NUL-separated), then the rest. */
	char names[PT_KEYWORDS_MAX * 64];
	size_t nl = 0;
	for (size_t i = 0; i < f->nkw; i++) {
		size_t l = strlen(f->kw[i]) + 1;
		memcpy(names + nl, f->kw[i], l);
		nl += l;
	}
	uint64_t sum = ms_sum64(0xcbf29ce484222325ull, names, nl);
	sum = ms_sum64(sum, f->van, f->nvan * sizeof *f->van);
	int dirty = 0;
	size_t not_old = 0;
	struct pt_msg_brief bb[SUM_CHUNK];
	for (size_t i = 0; i < f->n; i += SUM_CHUNK) {
		size_t e = f->n - i < SUM_CHUNK ? f->n : i + SUM_CHUNK;
		/* MS_PLAIN is the parse's word for this process only. */
		for (size_t k = i; k < e; k++)
			if (f->m[k].state & MS_PLAIN)
				f->m[k].state &= ~MS_PLAIN;
		sum = ms_sum64(sum, f->m + i, (e - i) * sizeof *f->m);
		for (size_t k = i; k < e; k++) {
			if (f->m[k].state & (MS_DIRTY | MS_EXPUNGE))
				dirty = 1;
			if (!(f->m[k].state & MS_OLD))
				not_old++;
		}
		if (with_briefs) {
			briefs_of(f->m + i, e - i, bb);
			sum = ms_sum64(sum, bb, (e - i) * sizeof *bb);
		}
	}
	h.sum = sum;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	int rc = pt_write_all(fd, &h, sizeof h);
	if (rc == 0 && nl)
		rc = pt_write_all(fd, names, nl);
	static const char zeros[8];
	size_t pad = (size_t)(van_at(h.kwbytes) - sizeof h - h.kwbytes);
	if (rc == 0 && pad)
		rc = pt_write_all(fd, zeros, pad);
	if (rc == 0 && f->nvan)
		rc = pt_write_all(fd, f->van, f->nvan * sizeof *f->van);
	for (size_t i = 0; with_briefs && rc == 0 && i < f->n; i += SUM_CHUNK) {
		size_t e = f->n - i < SUM_CHUNK ? f->n : i + SUM_CHUNK;
		briefs_of(f->m + i, e - i, bb);
		if (form == MS_INDEX_SKEWED && i == 0)
			bb[0].flags ^= PT_F_FLAGGED;   /* the checksum says otherwise */
		rc = pt_write_all(fd, bb, (e - i) * sizeof *bb);
	}
	if (rc == 0 && f->n)
		rc = pt_write_all(fd, f->m, f->n * sizeof *f->m);
	/* A cache: no fsync; a torn file fails its checksum and is rebuilt.
	 * Its identity is taken after the rename, which moves its ctime. */
	struct stat isb;
	int renamed = rc == 0 && rename(tmp, path) == 0;
	if (!renamed || fstat(fd, &isb) != 0)
		rc = -1;
	if (close(fd) != 0)
		rc = -1;
	if (rc != 0)
		unlink(renamed ? path : tmp);   /* rebuilt at the next open */
	else {
		checked_add(&isb, dirty, not_old);   /* written here: known good */
		checked_file_put(f, &isb, dirty, not_old);
	}
	if (rc == 0) {
		if (f->locked)
			tail_drop(f);   /* the index holds what the append log had */
		/* Later batches continue from this state (any other one in the
		 * log is passed over). */
		memset(&f->tail_known, 0, sizeof f->tail_known);
		f->tail_end = f->known;
		f->tail_n = f->n;
		f->tail_uidnext = f->uidnext;
		f->tail_valid = f->known_valid;
	}
	return rc;
}

/* A record's brief as the index keeps it. */
static void
briefs_of(const struct ms_msg *m, size_t n, struct pt_msg_brief *out)
{
	for (size_t i = 0; i < n; i++) {
		out[i].uid = m[i].info.uid;
		out[i].flags = (m[i].info.flags & PT_F_SYSTEM) | (m[i].state & MS_OLD ? MS_BRIEF_OLD : 0);
		out[i].keywords = m[i].info.keywords;
		out[i].modseq = m[i].info.modseq;
	}
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
	    pt_read_full(fd, h, sizeof *h) != (ssize_t)sizeof *h ||
	    (memcmp(h->magic, INDEX_MAGIC, 8) != 0 && memcmp(h->magic, INDEX_MAGIC_OLD, 8) != 0)) {
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
	int has_brief = memcmp(h.magic, INDEX_MAGIC, 8) == 0;
	uint64_t brief_at = briefs_at(h.kwbytes, h.nvan);
	uint64_t rec_at = brief_at + (has_brief ? (uint64_t)h.nmsg * sizeof(struct pt_msg_brief) : 0);
	if (h.rec_size != sizeof(struct ms_msg) || h.nkw > PT_KEYWORDS_MAX ||
	    h.kwbytes > PT_KEYWORDS_MAX * 64 || h.nvan > MS_VAN_MAX ||
	    (uint64_t)isb.st_size != rec_at + (uint64_t)h.nmsg * sizeof(struct ms_msg) ||
	    (uint64_t)isb.st_size > SIZE_MAX)
		goto out;
	/* Private and writable: a flag change copies one page, never
	 * touching the file; unchanged pages stay shared. */
	map_len = (size_t)isb.st_size;
	/* Mapped read-only (the page cache's pages, no copies), then
	 * writable for the pages a change copies. Followed by anonymous room
	 * for records the append log (or a parse of the mbox's tail) adds,
	 * so that those need no copy of the list: address space only until
	 * used. */
	size_t pg = (size_t)sysconf(_SC_PAGESIZE), file_span = (map_len + pg - 1) & ~(pg - 1);
	size_t spare = (((size_t)h.nmsg / 8 + 1024) * sizeof(struct ms_msg) + pg - 1) & ~(pg - 1);
	char *resv = mmap(NULL, file_span + spare, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
	                  -1, 0);
	if (resv == MAP_FAILED)
		goto out;
	/* A file not checked before is read whole below. */
	int dirty = 0;
	size_t not_old = 0;
	int known = checked_find(&isb, &dirty, &not_old), known_here = known;
	if (!known)
		known = checked_file_get(f, &isb, &dirty, &not_old);
	/* Populated now (no fault per page later): what is read of every
	 * message -- all of it when it is to be checked, else what SELECT
	 * reads, the briefs when the file has them; records' pages then
	 * come as they are read. */
	int whole = !known || !has_brief;
	map = mmap(resv, map_len, PROT_READ, MAP_PRIVATE | MAP_FIXED | (whole ? MAP_POPULATE : 0), fd, 0);
	if (map == MAP_FAILED) {
		munmap(resv, file_span + spare);
		goto out;
	}
	if (!whole && h.nmsg) {
		size_t b0 = (size_t)brief_at & ~(pg - 1);
		(void)madvise(map + b0, (size_t)rec_at - b0, MADV_POPULATE_READ);   /* a hint */
	}
	map_len = file_span + spare;
	if (mprotect(map, map_len, PROT_READ | PROT_WRITE) != 0)
		goto out;
	const char *kwbuf = map + sizeof h;
	const struct ms_vanished *van = (const struct ms_vanished *)(const void *)(map + van_at(h.kwbytes));
	struct ms_msg *m = (struct ms_msg *)(void *)(map + rec_at);
	const struct pt_msg_brief *brief = (const struct pt_msg_brief *)(const void *)(map + brief_at);
	uint64_t sum = ms_sum64(0xcbf29ce484222325ull, kwbuf, h.kwbytes);
	sum = ms_sum64(sum, van, (size_t)h.nvan * sizeof *van);
	if (h.uidvalidity == 0 || h.uidnext == 0)
		goto out;
	for (uint32_t i = 0; i < h.nvan; i++)
		if (van[i].lo == 0 || van[i].lo > van[i].hi || (i && van[i].lo <= van[i - 1].hi) ||
		    van[i].modseq > h.highest_modseq)
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
	/* Records must be ordered by offset and UID. One pass with the
	 * checksum, chunk by chunk while the chunk is in the cache (a big
	 * folder's index is read once per open); what the store would
	 * otherwise scan the list for comes along. */
	for (uint32_t c = 0; !known && c < h.nmsg; c += SUM_CHUNK) {
		uint32_t e = h.nmsg - c < SUM_CHUNK ? h.nmsg : c + SUM_CHUNK;
		sum = ms_sum64(sum, m + c, (size_t)(e - c) * sizeof *m);
		if (has_brief) {
			/* Each brief must be its record's: a load the check
			 * mark lets pass later trusts them. */
			struct pt_msg_brief bb[SUM_CHUNK];
			briefs_of(m + c, e - c, bb);
			if (memcmp(bb, brief + c, (size_t)(e - c) * sizeof *bb) != 0)
				goto out;
			sum = ms_sum64(sum, bb, (size_t)(e - c) * sizeof *bb);
		}
		for (uint32_t i = c; i < e; i++) {
			const struct ms_msg *r = &m[i];
			if (r->info.uid == 0 || r->info.uid >= h.uidnext ||
			    (i && (r->info.uid <= m[i - 1].info.uid || r->from_off < m[i - 1].end)) ||
			    r->hdr_off < r->from_off || r->body_off < r->hdr_off || r->end < r->body_off ||
			    (uint64_t)r->end > h.size || r->info.modseq == 0 ||
			    r->info.modseq > h.highest_modseq || (r->state & MS_PLAIN))
				goto out;
			if (r->state & (MS_DIRTY | MS_EXPUNGE))
				dirty = 1;
			if (!(r->state & MS_OLD))
				not_old++;
		}
	}
	if (!known && sum != h.sum)
		goto out;
	if (!known_here)
		checked_add(&isb, dirty, not_old);
	if (!known)
		checked_file_put(f, &isb, dirty, not_old);
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
		uint64_t kw = 0, dkw = 0;
		for (size_t b = 0; b < nn; b++) {
			if (m[i].info.keywords >> b & 1u)
				kw |= 1ull << map_kw[b];
			if (m[i].disk_kw >> b & 1u)
				dkw |= 1ull << map_kw[b];
		}
		if (m[i].info.keywords != kw)
			m[i].info.keywords = kw;
		if (m[i].disk_kw != dkw)
			m[i].disk_kw = dkw;
	}
	/* The expunge list goes with the index's UIDVALIDITY (which f
	 * takes): a copy, small and bounded. */
	struct ms_vanished *v = h.nvan ? malloc(h.nvan * sizeof *v) : NULL;
	if (h.nvan && v == NULL)
		goto out;
	if (h.nvan)
		memcpy(v, van, h.nvan * sizeof *v);
	free(f->van);
	f->van = v;
	f->nvan = h.nvan;
	f->van_floor = h.van_floor;
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
		/* Briefs keep the index's keyword bits: only while those
		 * are the table's. */
		if (has_brief && same) {
			f->brief = brief;
			f->brief_m = m;
			f->brief_n = h.nmsg;
		}
	}
	f->n = f->cap = h.nmsg;
	if (f->map != NULL)
		f->cap = (f->map_len - (size_t)rec_at) / sizeof *f->m;
	f->junk = h.junk;
	f->dirty_hint = dirty;
	f->not_old_hint = not_old;
	rc = sb && head_matches(&h, sb) ? 1 : 2;
	/* Whether the file's X-IMAPbase is current: as saved when the file is
	 * the one the index describes (else as known here), and only while
	 * no keyword was added here. */
	f->base_ok = f->nkw == nn && (rc == 1 ? h.base_ok == 1 : base_ok);
	/* Appends made since the index was written, from the append log. */
	if (ms_tail_apply(f, idx_sb, 0) > 0) {
		rc = sb && same_stat_(idx_sb, sb) ? 1 : 2;
		if (rc != 1)
			f->base_ok = 0;   /* the mbox moved on: written anew to be sure */
	}
out:
	if (map != MAP_FAILED)
		munmap(map, map_len);
	close(fd);
	return rc;
}

void
ms_index_briefs(const struct ms_folder *f, size_t from, size_t n, struct pt_msg_brief *out,
                unsigned char *got)
{
	memset(got, 0, n);
	if (f->brief == NULL || f->m != f->brief_m || from >= f->brief_n || from >= f->n)
		return;
	size_t end = f->brief_n < f->n ? f->brief_n : f->n;
	if (n > end - from)
		n = end - from;
	const uint64_t *t = f->brief_touched;
	for (size_t k = 0; k < n; k++) {
		size_t i = from + k;
		if (t != NULL && (t[i / 64] >> (i % 64) & 1u))
			continue;
		out[k] = f->brief[i];
		got[k] = 1;
	}
}

void
ms_brief_touch_(struct ms_folder *f, size_t i)
{
	if (f->brief_touched == NULL &&
	    (f->brief_touched = calloc((f->brief_n + 63) / 64, sizeof *f->brief_touched)) == NULL) {
		ms_brief_drop(f);   /* no room to say which: none holds */
		return;
	}
	f->brief_touched[i / 64] |= 1ull << (i % 64);
}

void
ms_brief_drop(struct ms_folder *f)
{
	f->brief = NULL;
	f->brief_m = NULL;
	f->brief_n = 0;
	free(f->brief_touched);
	f->brief_touched = NULL;
}

/* ---- the flag log ---- */

struct log_head {
	char magic[4];                 /* "PTFL" */
	uint32_t nrec, kwbytes, uidvalidity;
	uint64_t sum;                  /* sum64 of the names and the records */
};

struct log_rec {
	uint32_t uid;
	uint16_t flags, base_flags;    /* PT_F_SYSTEM: now, and in the mbox */
	uint64_t kw, base_kw;          /* bits of the batch's keyword names */
	uint64_t modseq;
};

#define LOG_MAGIC "PTFL"

static void
log_path(const struct ms_folder *f, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", f->idxdir, LOG_NAME);
}

static void
log_absent(struct ms_folder *f)
{
	memset(&f->log_known, 0, sizeof f->log_known);
	f->log_valid = 1;
}

int
ms_flog_changed(const struct ms_folder *f)
{
	if (!f->log_valid)
		return 1;
	char path[MS_PATH_MAX + 32];
	log_path(f, path, sizeof path);
	struct stat sb;
	if (lstat(path, &sb) != 0)
		return errno == ENOENT ? f->log_known.st_ino != 0 : 1;
	const struct stat *k = &f->log_known;
	return sb.st_ino != k->st_ino || sb.st_dev != k->st_dev || sb.st_size != k->st_size ||
	       sb.st_mtim.tv_sec != k->st_mtim.tv_sec || sb.st_mtim.tv_nsec != k->st_mtim.tv_nsec;
}

/* One batch: the keyword names of the table, then a record for each
 * f->m[idx[k]] (idx NULL: every MS_LAZY message). */
static int
batch_put(struct pt_strbuf *b, const struct ms_folder *f, const size_t *idx, size_t n)
{
	size_t at = b->len;
	struct log_head h;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, LOG_MAGIC, 4);
	h.uidvalidity = f->uidvalidity;
	pt_strbuf_put(b, &h, sizeof h);
	for (size_t i = 0; i < f->nkw; i++)
		pt_strbuf_put(b, f->kw[i], strlen(f->kw[i]) + 1);
	h.kwbytes = (uint32_t)(b->len - at - sizeof h);
	static const char zeros[8];
	pt_strbuf_put(b, zeros, (8 - h.kwbytes % 8) % 8);
	size_t count = idx ? n : f->n;
	for (size_t k = 0; k < count; k++) {
		const struct ms_msg *r = &f->m[idx ? idx[k] : k];
		if (!idx && !(r->state & MS_LAZY))
			continue;
		struct log_rec rec = {
			.uid = r->info.uid,
			.flags = (uint16_t)(r->info.flags & PT_F_SYSTEM),
			.base_flags = (uint16_t)((r->state & MS_DISK_MASK) >> MS_DISK_SHIFT),
			.kw = r->info.keywords,
			.base_kw = r->disk_kw,
			.modseq = r->info.modseq,
		};
		pt_strbuf_put(b, &rec, sizeof rec);
		h.nrec++;
	}
	if (b->oom)
		return -1;
	size_t body = at + sizeof h;
	h.sum = ms_sum64(0x6c6f67ull, b->p + body, b->len - body);
	memcpy(b->p + at, &h, sizeof h);
	return 0;
}

/* Replace the log by one batch of every MS_LAZY message (none: no log). */
static int
log_rewrite(struct ms_folder *f)
{
	char path[MS_PATH_MAX + 32], tmp[MS_PATH_MAX + 48];
	log_path(f, path, sizeof path);
	size_t lazy = 0;
	for (size_t i = 0; i < f->n; i++)
		if (f->m[i].state & MS_LAZY)
			lazy++;
	if (lazy == 0) {
		if (unlink(path) != 0 && errno != ENOENT)
			return -1;
		log_absent(f);
		return 0;
	}
	snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
	struct pt_strbuf b = { 0 };
	int rc = -1, fd = -1;
	if (ms_mkdirs(f->idxdir, 1) != 0 || batch_put(&b, f, NULL, 0) != 0)
		goto out;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		goto out;
	struct stat sb;
	if (pt_write_all(fd, b.p, b.len) != 0 || fdatasync(fd) != 0 || fstat(fd, &sb) != 0 ||
	    rename(tmp, path) != 0) {
		unlink(tmp);
		goto out;
	}
	pt_fsync_dir(f->idxdir);
	f->log_known = sb;
	f->log_valid = 1;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	pt_strbuf_free(&b);
	return rc;
}

int
ms_flog_append(struct ms_folder *f, const size_t *idx, size_t n)
{
	if (!f->log_valid || f->uidvalidity == 0)
		return -1;
	char path[MS_PATH_MAX + 32];
	log_path(f, path, sizeof path);
	if (ms_mkdirs(f->idxdir, 1) != 0)
		return -1;
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	struct stat sb;
	int created = f->log_known.st_ino == 0;
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return -1;
	}
	/* Appends follow what was replayed, or the file is not what this
	 * open knows (a torn tail): then it is written anew, with these
	 * changes among every pending one. */
	if (created ? sb.st_size != 0
	            : sb.st_ino != f->log_known.st_ino || sb.st_dev != f->log_known.st_dev ||
	                  sb.st_size != f->log_known.st_size) {
		close(fd);
		return log_rewrite(f);
	}
	struct pt_strbuf b = { 0 };
	int rc = batch_put(&b, f, idx, n);
	if (rc == 0 && (pt_write_all(fd, b.p, b.len) != 0 || (f->set->flag_fsync && fdatasync(fd) != 0) ||
	                fstat(fd, &sb) != 0))
		rc = -1;
	pt_strbuf_free(&b);
	close(fd);
	if (rc != 0) {
		/* Whatever landed is unknown: rewritten at the next replay. */
		f->log_valid = 0;
		return -1;
	}
	if (created)
		pt_fsync_dir(f->idxdir);
	f->log_known = sb;
	if ((uint64_t)sb.st_size > LOG_MAX)
		return 1;
	return 0;
}

/* Apply one record; 0 when it no longer counts. */
static int
log_apply(struct ms_folder *f, const struct log_rec *rec, const int *map_kw, size_t nn)
{
	size_t i = ms_folder_find(f, rec->uid);
	if (i == (size_t)-1)
		return 0;
	ms_rec_touch(f, i);
	struct ms_msg *r = &f->m[i];
	uint64_t kw = 0, bkw = 0;
	for (size_t b = 0; b < nn; b++) {
		if (map_kw[b] < 0)
			continue;
		if (rec->kw >> b & 1u)
			kw |= 1ull << map_kw[b];
		if (rec->base_kw >> b & 1u)
			bkw |= 1ull << map_kw[b];
	}
	uint32_t disk = (r->state & MS_DISK_MASK) >> MS_DISK_SHIFT;
	if (rec->base_flags != disk || bkw != r->disk_kw)
		return 0;
	uint32_t fl = rec->flags & PT_F_SYSTEM;
	if (r->info.flags != fl || r->info.keywords != kw || r->info.modseq != rec->modseq) {
		r->info.flags = fl;
		r->info.keywords = kw;
		r->info.modseq = rec->modseq;
	}
	uint32_t st = fl != disk || kw != r->disk_kw ? r->state | MS_LAZY : r->state & ~MS_LAZY;
	if (st != r->state)
		r->state = st;
	if (rec->modseq > f->highest_modseq)
		f->highest_modseq = rec->modseq;
	return 1;
}

void
ms_flog_replay(struct ms_folder *f, int from_known, int locked)
{
	char path[MS_PATH_MAX + 32];
	log_path(f, path, sizeof path);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			log_absent(f);
		else
			f->log_valid = 0;
		return;
	}
	struct stat sb;
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		f->log_valid = 0;
		return;
	}
	off_t from = 0;
	if (from_known && f->log_valid && sb.st_ino == f->log_known.st_ino &&
	    sb.st_dev == f->log_known.st_dev && sb.st_size >= f->log_known.st_size)
		from = f->log_known.st_size;
	size_t len = (size_t)(sb.st_size - from);
	char *buf = len ? malloc(len) : NULL;
	int stale = 0;
	size_t pos = 0;
	if (len && (buf == NULL || pt_pread_full(fd, buf, len, from) != (ssize_t)len)) {
		/* Unreadable now: the next look tries again. */
		free(buf);
		close(fd);
		f->log_valid = 0;
		return;
	}
	close(fd);
	while (len - pos >= sizeof(struct log_head)) {
		struct log_head h;
		memcpy(&h, buf + pos, sizeof h);
		uint64_t kwpad = ((uint64_t)h.kwbytes + 7) & ~(uint64_t)7;
		if (memcmp(h.magic, LOG_MAGIC, 4) != 0 || h.kwbytes > PT_KEYWORDS_MAX * 64 ||
		    (uint64_t)h.nrec * sizeof(struct log_rec) + kwpad > len - pos - sizeof h)
			break;
		size_t body = pos + sizeof h;
		size_t total = sizeof h + (size_t)kwpad + (size_t)h.nrec * sizeof(struct log_rec);
		if (ms_sum64(0x6c6f67ull, buf + body, total - sizeof h) != h.sum)
			break;
		pos += total;
		if (h.uidvalidity != f->uidvalidity) {
			stale = 1;
			continue;
		}
		/* The batch's names onto the folder's table. */
		int map_kw[PT_KEYWORDS_MAX];
		size_t nn = 0, q = 0;
		while (q < h.kwbytes && nn < PT_KEYWORDS_MAX) {
			const char *name = buf + body + q;
			const char *nul = memchr(name, '\0', h.kwbytes - q);
			if (nul == NULL)
				break;
			map_kw[nn++] = ms_keyword_valid(name) ? ms_folder_keyword(f, name, 1) : -1;
			q = (size_t)(nul - (buf + body)) + 1;
		}
		const char *recs = buf + body + kwpad;
		for (uint32_t k = 0; k < h.nrec; k++) {
			struct log_rec rec;
			memcpy(&rec, recs + (size_t)k * sizeof rec, sizeof rec);
			if (!log_apply(f, &rec, map_kw, nn))
				stale = 1;
		}
	}
	free(buf);
	f->log_known = sb;
	f->log_valid = 1;
	if (pos < len) {
		/* A torn batch (a crash while appending) or one being written
		 * by an open that holds no lock: look again next time. */
		f->log_known.st_size = from + (off_t)pos;
		stale = 1;
	}
	/* Void records and torn tails go, so that a later append never
	 * follows garbage and an old record never meets its old mbox state
	 * again. Only under the mbox lock (appends are made under it). */
	if (stale && locked)
		log_rewrite(f);
}

void
ms_flog_drop(struct ms_folder *f)
{
	char path[MS_PATH_MAX + 32];
	log_path(f, path, sizeof path);
	if (unlink(path) == 0 || errno == ENOENT)
		log_absent(f);
	else
		f->log_valid = 0;
}

void
ms_msg_disk_set(struct ms_folder *f, struct ms_msg *r)
{
	(void)f;
	r->state = (r->state & ~(MS_DISK_MASK | MS_LAZY)) |
	           ((r->info.flags & PT_F_SYSTEM) << MS_DISK_SHIFT);
	r->disk_kw = r->info.keywords;
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

/* ---- the append log ----
 *
 * APPEND (and COPY/MOVE into a folder) used to load and rewrite the whole
 * index for each command, so a migration's cost grew with the square of
 * the folder. Now the appender adds one batch to postern.tail: the
 * records it added (and any old record it changed: the first message,
 * whose X-IMAPbase learnt the new last UID), with the mbox state before
 * and after. A load maps the index as before, then applies the batches
 * that continue from the index's mbox state, one after the other. The
 * index itself is never touched, so other opens keep their mapping. A
 * batch is checksummed: a torn one (crash) and everything after it is
 * ignored, and the mbox's tail is parsed instead (the mbox is the truth,
 * as for a lost index). Batches that do not continue the chain (an index
 * saved since by a reader holding no lock) are skipped. A full index save
 * under the lock removes the log; the appender does one when the log
 * passes a fraction of the index (TAIL_MIN, TAIL_FRACTION), so each
 * append costs a bounded amount of index writing on average. */

#define TAIL_NAME "postern.tail"
#define TAIL_MAGIC "PTTAIL01"
#define TAIL_MIN (64u << 10)
#define TAIL_FRACTION 8u

struct tail_state {
	uint64_t dev, ino, size;
	int64_t mtime_s, mtime_ns;
};

struct tail_head {
	char magic[8];
	struct tail_state pre, post;   /* the mbox before and after */
	uint32_t uidvalidity, pre_n, pre_uidnext, uidnext;
	uint32_t nrec, kwbytes, base_ok, pad;
	uint64_t highest_modseq;
	uint64_t sum;                  /* sum64 of the names and the records */
};

struct tail_rec {
	uint64_t at;                   /* index in the list; = its length: new */
	struct ms_msg r;
};

static void
tail_path(const struct ms_folder *f, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", f->idxdir, TAIL_NAME);
}

static void
state_put(struct tail_state *s, const struct stat *sb)
{
	s->dev = (uint64_t)sb->st_dev;
	s->ino = (uint64_t)sb->st_ino;
	s->size = (uint64_t)sb->st_size;
	s->mtime_s = (int64_t)sb->st_mtim.tv_sec;
	s->mtime_ns = (int64_t)sb->st_mtim.tv_nsec;
}

static int
state_is(const struct tail_state *s, const struct stat *sb)
{
	return s->dev == (uint64_t)sb->st_dev && s->ino == (uint64_t)sb->st_ino &&
	       s->size == (uint64_t)sb->st_size && s->mtime_s == (int64_t)sb->st_mtim.tv_sec &&
	       s->mtime_ns == (int64_t)sb->st_mtim.tv_nsec;
}

static void
state_get(struct stat *sb, const struct tail_state *s)
{
	memset(sb, 0, sizeof *sb);
	sb->st_dev = (dev_t)s->dev;
	sb->st_ino = (ino_t)s->ino;
	sb->st_size = (off_t)s->size;
	sb->st_mtim.tv_sec = (time_t)s->mtime_s;
	sb->st_mtim.tv_nsec = (long)s->mtime_ns;
}

/* Check the records of a batch that continues the list, then apply them.
 * 1 applied, 0 refused (nothing changed). */
static int
tail_batch_apply(struct ms_folder *f, const struct tail_head *h, const char *names,
                 const char *recs)
{
	/* The names are looked at now, added to the table only once the
	 * whole batch passed: a refused one changes nothing. */
	const char *kwname[PT_KEYWORDS_MAX];
	int map_kw[PT_KEYWORDS_MAX];
	size_t nn = 0, q = 0, missing = 0;
	while (q < h->kwbytes) {
		const char *nul = memchr(names + q, '\0', h->kwbytes - q);
		if (nul == NULL || nn == PT_KEYWORDS_MAX || !ms_keyword_valid(names + q))
			return 0;
		if (ms_folder_keyword(f, names + q, 0) < 0)
			missing++;
		kwname[nn++] = names + q;
		q = (size_t)(nul - names) + 1;
	}
	if (f->nkw + missing > PT_KEYWORDS_MAX)
		return 0;
	/* Pass one: every record sane and in order, as a load checks the
	 * index's. */
	size_t nnew = 0;
	struct ms_msg prev;
	memset(&prev, 0, sizeof prev);
	int have_prev = f->n > 0;
	if (have_prev)
		prev = f->m[f->n - 1];
	for (uint32_t k = 0; k < h->nrec; k++) {
		struct tail_rec tr;
		memcpy(&tr, recs + (size_t)k * sizeof tr, sizeof tr);
		const struct ms_msg *r = &tr.r;
		if (r->info.uid == 0 || r->info.uid >= h->uidnext || r->hdr_off < r->from_off ||
		    r->body_off < r->hdr_off || r->end < r->body_off || (uint64_t)r->end > h->post.size ||
		    r->info.modseq == 0 || r->info.modseq > h->highest_modseq || (r->state & MS_PLAIN))
			return 0;
		if (tr.at < f->n) {
			/* A changed record: the same message at the same place. */
			const struct ms_msg *o = &f->m[tr.at];
			if (nnew || o->info.uid != r->info.uid || o->from_off != r->from_off ||
			    o->end != r->end)
				return 0;
		} else {
			if (tr.at != f->n + nnew ||
			    (have_prev && (r->info.uid <= prev.info.uid || r->from_off < prev.end)))
				return 0;
			nnew++;
			prev = *r;
			have_prev = 1;
		}
	}
	/* Room with slack: a long log applies batch after batch. */
	if (nnew && (f->map != NULL || f->n + nnew > f->cap) &&
	    ms_folder_reserve(f, f->n + nnew + (f->n + nnew) / 8 + 64) != 0)
		return 0;
	for (size_t b = 0; b < nn; b++)
		if ((map_kw[b] = ms_folder_keyword(f, kwname[b], 1)) < 0)
			return 0;   /* out of memory (room was counted above) */
	for (uint32_t k = 0; k < h->nrec; k++) {
		struct tail_rec tr;
		memcpy(&tr, recs + (size_t)k * sizeof tr, sizeof tr);
		uint64_t kw = 0, dkw = 0;
		for (size_t b = 0; b < nn; b++) {
			if (tr.r.info.keywords >> b & 1u)
				kw |= 1ull << map_kw[b];
			if (tr.r.disk_kw >> b & 1u)
				dkw |= 1ull << map_kw[b];
		}
		tr.r.info.keywords = kw;
		tr.r.disk_kw = dkw;
		if (tr.r.state & (MS_DIRTY | MS_EXPUNGE))
			f->dirty_hint = 1;
		if (!(tr.r.state & MS_OLD))
			f->not_old_hint++;
		if (tr.at < f->n) {
			/* A flag change made after the batch, which this list
			 * took from the flag log before it saw the batch (an
			 * in-place write need not move the mbox's mtime), stays:
			 * the batch brings the message's mbox state. */
			const struct ms_msg *o = &f->m[tr.at];
			if (o->info.modseq > tr.r.info.modseq) {
				tr.r.info.flags = o->info.flags;
				tr.r.info.keywords = o->info.keywords;
				tr.r.info.modseq = o->info.modseq;
				uint32_t disk = (tr.r.state & MS_DISK_MASK) >> MS_DISK_SHIFT;
				if ((tr.r.info.flags & PT_F_SYSTEM) != disk || tr.r.info.keywords != tr.r.disk_kw)
					tr.r.state |= MS_LAZY;
				else
					tr.r.state &= ~MS_LAZY;
			}
			ms_rec_touch(f, tr.at);
			f->m[tr.at] = tr.r;
		} else {
			ms_rec_touch(f, f->n);
			f->m[f->n++] = tr.r;
		}
	}
	f->uidnext = h->uidnext;
	if (h->highest_modseq > f->highest_modseq)
		f->highest_modseq = h->highest_modseq;
	f->base_ok = h->base_ok && f->nkw == nn;
	if (f->base_ok)
		f->nkw_written = nn;
	return 1;
}

int
ms_tail_apply(struct ms_folder *f, struct stat *end, int from_known)
{
	char path[MS_PATH_MAX + 32];
	tail_path(f, path, sizeof path);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		int absent = fd < 0 && errno == ENOENT;
		if (fd >= 0)
			close(fd);
		memset(&f->tail_known, 0, sizeof f->tail_known);
		f->tail_end = *end;
		f->tail_n = f->n;
		f->tail_uidnext = f->uidnext;
		f->tail_valid = absent;
		return 0;
	}
	off_t from = 0;
	if (from_known && f->tail_valid && sb.st_ino == f->tail_known.st_ino &&
	    sb.st_dev == f->tail_known.st_dev && sb.st_size >= f->tail_known.st_size)
		from = f->tail_known.st_size;
	size_t len = (size_t)(sb.st_size - from);
	char *buf = len ? malloc(len) : NULL;
	if (len && (buf == NULL || pt_pread_full(fd, buf, len, from) != (ssize_t)len)) {
		free(buf);
		close(fd);
		f->tail_valid = 0;
		return 0;
	}
	close(fd);
	int applied = 0, skipped = 0;
	size_t pos = 0;
	while (len - pos >= sizeof(struct tail_head)) {
		struct tail_head h;
		memcpy(&h, buf + pos, sizeof h);
		uint64_t kwpad = ((uint64_t)h.kwbytes + 7) & ~(uint64_t)7;
		if (memcmp(h.magic, TAIL_MAGIC, 8) != 0 || h.kwbytes > PT_KEYWORDS_MAX * 64 ||
		    (uint64_t)h.nrec * sizeof(struct tail_rec) + kwpad > len - pos - sizeof h)
			break;
		size_t body = pos + sizeof h;
		size_t total = sizeof h + (size_t)kwpad + (size_t)h.nrec * sizeof(struct tail_rec);
		if (ms_sum64(0x7461696cull, buf + body, total - sizeof h) != h.sum)
			break;
		/* Only a batch made on exactly the list as it stands counts;
		 * one that does not (made before the index was saved anew) is
		 * passed over. */
		if (h.uidvalidity == f->uidvalidity && state_is(&h.pre, end) && h.pre_n == f->n &&
		    h.pre_uidnext == f->uidnext) {
			if (!tail_batch_apply(f, &h, buf + body, buf + body + kwpad))
				break;
			state_get(end, &h.post);
			applied++;
		} else {
			skipped++;
		}
		pos += total;
	}
	free(buf);
	f->tail_known = sb;
	/* A torn or refused batch: what follows is not trusted; the next
	 * look starts there again, and an append rewrites the index. */
	f->tail_known.st_size = from + (off_t)pos;
	f->tail_end = *end;
	f->tail_n = f->n;
	f->tail_uidnext = f->uidnext;
	/* Past what was read before, every batch continues the chain (an
	 * appender checks the log is as it read it): one that does not
	 * means this list's place in the chain is unknown. */
	f->tail_valid = !(from_known && from > 0 && skipped);
	return applied;
}

int
ms_tail_append(struct ms_folder *f, const struct stat *pre, size_t pre_n, uint32_t pre_uidnext,
               const size_t *at, size_t nat)
{
	if (!f->tail_valid || !f->known_valid || f->n < pre_n || f->uidvalidity == 0 ||
	    pre_n != f->tail_n || pre_uidnext != f->tail_uidnext)
		return -1;
	char path[MS_PATH_MAX + 32], ipath[MS_PATH_MAX + 32];
	tail_path(f, path, sizeof path);
	snprintf(ipath, sizeof ipath, "%s/%s", f->idxdir, INDEX_NAME);
	/* The index and the log must still be what this open read (an open
	 * holding no lock may have saved an index since), and end exactly at
	 * the state the append started from. */
	struct index_head ih;
	struct stat isb;
	int ifd = index_open(f, &ih, &isb);
	if (ifd < 0)
		return -1;
	close(ifd);
	if (ih.uidvalidity != f->uidvalidity)
		return -1;
	struct stat tsb;
	if (f->tail_known.st_ino == 0) {
		if (lstat(path, &tsb) == 0 || errno != ENOENT || !head_matches(&ih, pre))
			return -1;
	} else if (lstat(path, &tsb) != 0 || !S_ISREG(tsb.st_mode) ||
	           tsb.st_ino != f->tail_known.st_ino || tsb.st_dev != f->tail_known.st_dev ||
	           tsb.st_size != f->tail_known.st_size) {
		return -1;
	}
	const struct stat *e = &f->tail_end;
	if (e->st_dev != pre->st_dev || e->st_ino != pre->st_ino || e->st_size != pre->st_size ||
	    e->st_mtim.tv_sec != pre->st_mtim.tv_sec || e->st_mtim.tv_nsec != pre->st_mtim.tv_nsec)
		return -1;
	struct tail_head h;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, TAIL_MAGIC, 8);
	state_put(&h.pre, pre);
	state_put(&h.post, &f->known);
	h.uidvalidity = f->uidvalidity;
	h.pre_n = (uint32_t)pre_n;
	h.pre_uidnext = pre_uidnext;
	h.uidnext = f->uidnext;
	h.base_ok = f->base_ok;
	h.highest_modseq = f->highest_modseq;
	struct pt_strbuf b = { 0 };
	pt_strbuf_put(&b, &h, sizeof h);
	for (size_t i = 0; i < f->nkw; i++)
		pt_strbuf_put(&b, f->kw[i], strlen(f->kw[i]) + 1);
	h.kwbytes = (uint32_t)(b.len - sizeof h);
	static const char zeros[8];
	pt_strbuf_put(&b, zeros, (8 - h.kwbytes % 8) % 8);
	for (size_t k = 0; k < nat + (f->n - pre_n); k++) {
		struct tail_rec tr;
		memset(&tr, 0, sizeof tr);
		tr.at = k < nat ? at[k] : pre_n + (k - nat);
		if (tr.at >= f->n) {
			pt_strbuf_free(&b);
			return -1;
		}
		tr.r = f->m[tr.at];
		tr.r.state &= ~MS_PLAIN;
		pt_strbuf_put(&b, &tr, sizeof tr);
		h.nrec++;
	}
	if (b.oom || ms_mkdirs(f->idxdir, 1) != 0) {
		pt_strbuf_free(&b);
		return -1;
	}
	h.sum = ms_sum64(0x7461696cull, b.p + sizeof h, b.len - sizeof h);
	memcpy(b.p, &h, sizeof h);
	int created = f->tail_known.st_ino == 0;
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | (created ? O_CREAT | O_EXCL : 0),
	              0600);
	int rc = -1;
	struct stat sb;
	if (fd >= 0) {
		/* A cache like the index: no fsync (a lost batch means a parse
		 * of the mbox's tail). */
		if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size == (created ? 0 : tsb.st_size) &&
		    pt_write_all(fd, b.p, b.len) == 0 && fstat(fd, &sb) == 0)
			rc = 0;
		close(fd);
	}
	pt_strbuf_free(&b);
	if (rc != 0) {
		f->tail_valid = 0;
		return -1;
	}
	f->tail_known = sb;
	f->tail_end = f->known;
	f->tail_n = f->n;
	f->tail_uidnext = f->uidnext;
	/* Compact when the log is no longer small beside the index: a full
	 * save costs the index's size, paid once per that many bytes of log. */
	if ((uint64_t)sb.st_size > TAIL_MIN && (uint64_t)sb.st_size > (uint64_t)isb.st_size / TAIL_FRACTION)
		return 1;
	return 0;
}

int
ms_tail_at(const struct ms_folder *f, const struct stat *sb)
{
	if (!f->tail_valid || !same_stat_(&f->tail_end, sb))
		return 0;
	char path[MS_PATH_MAX + 32];
	tail_path(f, path, sizeof path);
	struct stat tsb;
	if (f->tail_known.st_ino == 0) {
		/* No log: the index alone, saved for exactly this state. */
		if (lstat(path, &tsb) == 0 || errno != ENOENT)
			return 0;
		return ms_index_matches(f, sb);
	}
	/* A writer under the lock either adds a batch here or saves a full
	 * index, which removes the log: the log as read means neither. */
	return lstat(path, &tsb) == 0 && S_ISREG(tsb.st_mode) && tsb.st_ino == f->tail_known.st_ino &&
	       tsb.st_dev == f->tail_known.st_dev && tsb.st_size == f->tail_known.st_size;
}

/* A full save under the lock supersedes the log. */
static void
tail_drop(const struct ms_folder *f)
{
	char path[MS_PATH_MAX + 32];
	tail_path(f, path, sizeof path);
	unlink(path);
}
