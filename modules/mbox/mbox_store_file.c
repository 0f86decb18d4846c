/* One folder's mbox as the store knows it: loading the message list
 * (index, tail parse after deliveries, or full parse with the reader),
 * UID assignment that keeps X-UIDs; writing it back is mbox_store_write.c. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "postern/fdio.h"
#include "postern/log.h"
#include "mbox_store.h"

#define CHUNK (256 * 1024)

/* ---- in-process change counter per mbox path: another open of the same
 * folder in this process notices writes even within one mtime tick ---- */

struct ms_shared {
	char path[MS_PATH_MAX];
	unsigned long gen;
	unsigned refs;
	struct ms_shared *next;
};
static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ms_shared *shared_list;

static struct ms_shared *
shared_get(const char *path)
{
	pthread_mutex_lock(&shared_mu);
	struct ms_shared *s;
	for (s = shared_list; s; s = s->next)
		if (strcmp(s->path, path) == 0)
			break;
	if (s == NULL && (s = calloc(1, sizeof *s)) != NULL) {
		snprintf(s->path, sizeof s->path, "%s", path);
		s->gen = 1;
		s->next = shared_list;
		shared_list = s;
	}
	if (s)
		s->refs++;
	pthread_mutex_unlock(&shared_mu);
	return s;
}

static void
shared_put(struct ms_shared *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&shared_mu);
	if (--s->refs == 0) {
		for (struct ms_shared **pp = &shared_list; *pp; pp = &(*pp)->next)
			if (*pp == s) {
				*pp = s->next;
				break;
			}
		free(s);
	}
	pthread_mutex_unlock(&shared_mu);
}

static unsigned long
shared_gen(struct ms_shared *s)
{
	if (s == NULL)
		return 0;
	pthread_mutex_lock(&shared_mu);
	unsigned long g = s->gen;
	pthread_mutex_unlock(&shared_mu);
	return g;
}

void
ms_shared_bump(struct ms_folder *f)
{
	if (f->sh == NULL)
		return;
	pthread_mutex_lock(&shared_mu);
	f->gen = ++f->sh->gen;
	pthread_mutex_unlock(&shared_mu);
}

/* ---- folder lifetime ---- */

int
ms_folder_init(struct ms_folder *f, const char *root, const char *name, const char *path,
               const struct mbox_settings *set, struct pt_status *st)
{
	memset(f, 0, sizeof *f);
	f->fd = -1;
	f->set = set;
	f->uidnext = 1;
	size_t ln = strlen(name), lp = strlen(path), lr = strlen(root);
	if (ln > MS_NAME_MAX || lp >= MS_PATH_MAX || lr >= MS_PATH_MAX ||
	    lr + 7 + ln >= MS_PATH_MAX) {
		pt_status_set(st, 501, "CANNOT", "Mailbox name too long");
		return -1;
	}
	f->strs = malloc(ln + 1 + lp + 1 + lr + 1 + lr + 7 + ln + 1);
	if (f->strs == NULL) {
		pt_status_set(st, 451, "SERVERBUG", "Out of memory");
		return -1;
	}
	f->name = f->strs;
	f->path = f->name + ln + 1;
	f->root = f->path + lp + 1;
	f->idxdir = f->root + lr + 1;
	memcpy(f->name, name, ln + 1);
	memcpy(f->path, path, lp + 1);
	memcpy(f->root, root, lr + 1);
	sprintf(f->idxdir, "%s/.imap/%s", root, name);
	f->sh = shared_get(path);
	f->gen = shared_gen(f->sh);
	/* mail_privileged_group is for the spool's dotlock only. */
	f->set_own = *set;
	if (strcmp(name, "INBOX") != 0)
		f->set_own.priv_gid = (gid_t)-1;
	f->set = &f->set_own;
	f->dfd = -1;
	const char *slash = strrchr(f->path, '/');
	if (slash == NULL) {
		pt_status_set(st, 451, "", "Mailbox path %s is not absolute", f->path);
		ms_folder_free(f);
		return -1;
	}
	f->leaf = slash + 1;
	int inbox = strcmp(name, "INBOX") == 0;
	size_t lr0 = strlen(root);
	if (!inbox || (strncmp(path, root, lr0) == 0 && path[lr0] == '/')) {
		/* Under the mail root: no symlink on the way. */
		const char *leaf;
		int dfd = ms_dir_open(root, inbox ? path + lr0 + 1 : name, 0, &leaf, st);
		if (dfd == -1) {
			ms_folder_free(f);
			return -1;
		}
		f->dfd = dfd < 0 ? -1 : dfd;
	} else {
		/* The spool directory is the administrator's (mail_location):
		 * only the file itself is the user's, opened without following
		 * a symlink and checked for its owner. */
		char dir[MS_PATH_MAX];
		size_t dl = slash == f->path ? 1 : (size_t)(slash - f->path);
		memcpy(dir, f->path, dl);
		dir[dl] = '\0';
		f->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (f->dfd < 0 && errno != ENOENT)
			f->dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	}
	return 0;
}

void
ms_folder_free(struct ms_folder *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	if (f->dfd >= 0)
		close(f->dfd);
	f->dfd = -1;
	for (size_t i = 0; i < f->nkw; i++)
		free(f->kw[i]);
	f->nkw = 0;
	ms_folder_drop_msgs(f);
	free(f->van);
	f->van = NULL;
	f->nvan = 0;
	shared_put(f->sh);
	f->sh = NULL;
	free(f->strs);
	f->strs = NULL;
}

void
ms_folder_drop_msgs(struct ms_folder *f)
{
	if (f->map != NULL)
		munmap(f->map, f->map_len);
	else
		free(f->m);
	f->map = NULL;
	f->map_len = 0;
	ms_brief_drop(f);
	f->m = NULL;
	f->n = f->cap = 0;
}

int
ms_folder_reserve(struct ms_folder *f, size_t want)
{
	if (want <= f->cap)
		return 0;   /* on the heap, or in the room after a mapped index */
	if (want > SIZE_MAX / sizeof *f->m)
		return -1;
	struct ms_msg *m;
	if (f->map == NULL) {
		m = realloc(f->m, want * sizeof *m);
		if (m == NULL)
			return -1;
	} else {
		if (want < f->n)
			want = f->n;
		m = malloc((want ? want : 1) * sizeof *m);
		if (m == NULL)
			return -1;
		if (f->n)
			memcpy(m, f->m, f->n * sizeof *m);
		munmap(f->map, f->map_len);
		f->map = NULL;
		f->map_len = 0;
		ms_brief_drop(f);
	}
	f->m = m;
	f->cap = want;
	return 0;
}

int
ms_folder_keyword(struct ms_folder *f, const char *name, int add)
{
	for (size_t i = 0; i < f->nkw; i++)
		if (strcmp(f->kw[i], name) == 0)
			return (int)i;
	if (!add || f->nkw >= PT_KEYWORDS_MAX || !ms_keyword_valid(name))
		return -1;
	char *d = strdup(name);
	if (d == NULL)
		return -1;
	f->kw[f->nkw] = d;
	f->base_ok = 0;
	return (int)f->nkw++;
}

size_t
ms_folder_find(const struct ms_folder *f, uint32_t uid)
{
	size_t lo = 0, hi = f->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->m[mid].info.uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < f->n && f->m[lo].info.uid == uid ? lo : (size_t)-1;
}

static int
same_stat(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* The folder's file as named now (not following a symlink). */
static int
leaf_stat(const struct ms_folder *f, struct stat *sb)
{
	if (f->dfd < 0) {
		errno = ENOENT;
		return -1;
	}
	return fstatat(f->dfd, f->leaf, sb, AT_SYMLINK_NOFOLLOW);
}

int
ms_folder_current(struct ms_folder *f)
{
	struct stat sb;
	if (leaf_stat(f, &sb) != 0)
		return f->fd < 0 && !f->known_valid && errno == ENOENT &&
		       shared_gen(f->sh) == f->gen;
	return f->fd >= 0 && f->known_valid && same_stat(&sb, &f->known) &&
	       shared_gen(f->sh) == f->gen && !ms_flog_changed(f);
}

int
ms_folder_text_current(struct ms_folder *f)
{
	struct stat sb;
	return f->fd >= 0 && f->known_valid && leaf_stat(f, &sb) == 0 && same_stat(&sb, &f->known) &&
	       shared_gen(f->sh) == f->gen;
}

int
ms_folder_exists(struct ms_folder *f, struct pt_status *st)
{
	struct stat sb;
	if (leaf_stat(f, &sb) != 0)
		return ms_errno_status(errno, f->name, st);
	if (S_ISLNK(sb.st_mode))
		return ms_errno_status(ELOOP, f->name, st);
	if (!S_ISREG(sb.st_mode))
		return ms_errno_status(ENOENT, f->name, st);
	return 0;
}

/* The size of the folder's file (what mailbox_size_limit measures);
 * the same refusals as ms_folder_exists. */
int
ms_folder_size(struct ms_folder *f, off_t *size, struct pt_status *st)
{
	struct stat sb;
	if (ms_folder_exists(f, st) != 0 || leaf_stat(f, &sb) != 0)
		return -1;
	*size = sb.st_size;
	return 0;
}

/* Create a missing INBOX in a spool directory only mail_privileged_group
 * may write: the group is this thread's fsgid for the one openat. */
static int
create_privileged(struct ms_folder *f, int flags)
{
	if (f->set->priv_gid == (gid_t)-1)
		return -1;
	gid_t saved = mbox_fsgid_enter(f->set->priv_gid);
	if (saved == (gid_t)-1) {
		errno = EACCES;
		return -1;
	}
	int fd = openat(f->dfd, f->leaf, O_RDWR | O_CREAT | O_EXCL | flags, 0600);
	int e = errno;
	mbox_fsgid_leave(saved);
	errno = e;
	return fd;
}

/* (Re)open the mbox file read-write if we may, else read-only. */
static int
open_file(struct ms_folder *f, int create, struct pt_status *st)
{
	if (f->fd >= 0) {
		struct stat a, b;
		if (fstat(f->fd, &a) == 0 && leaf_stat(f, &b) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino)
			return 0;
		close(f->fd);
		f->fd = -1;
		f->known_valid = 0;
	}
	if (f->dfd < 0)
		return 0;
	int flags = O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
	f->fd = openat(f->dfd, f->leaf, O_RDWR | flags | (create ? O_CREAT : 0), 0600);
	if (f->fd < 0 && create && errno == EACCES)
		f->fd = create_privileged(f, flags);
	f->writable = f->fd >= 0;
	if (f->fd < 0 && (errno == EACCES || errno == EROFS))
		f->fd = openat(f->dfd, f->leaf, O_RDONLY | flags);
	if (f->fd < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno == ELOOP) {
			pt_warn("mailbox %s: %s is a symbolic link, refused", f->name, f->path);
			return ms_errno_status(ELOOP, f->name, st);
		}
		pt_status_set(st, 450, "", "cannot open mailbox: %s", strerror(errno));
		return -1;
	}
	struct stat sb;
	if (fstat(f->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		pt_status_set(st, 450, "CANNOT", "Mailbox is not a regular file");
		close(f->fd);
		f->fd = -1;
		return -1;
	}
	/* Someone else's file (a hard link, or planted in a shared spool)
	 * is not this user's mailbox. Root (tests) may read anything. */
	if ((sb.st_uid != geteuid() && geteuid() != 0) ||
	    (strcmp(f->name, "INBOX") == 0 && sb.st_nlink > 1)) {
		pt_warn("mailbox %s: %s is owned by uid %lu with %lu links, refused", f->name, f->path,
		        (unsigned long)sb.st_uid, (unsigned long)sb.st_nlink);
		close(f->fd);
		f->fd = -1;
		return ms_errno_status(EACCES, f->name, st);
	}
	int fl = fcntl(f->fd, F_GETFL);
	if (fl >= 0)
		fcntl(f->fd, F_SETFL, fl & ~O_NONBLOCK);
	return 0;
}

int
ms_folder_lock(struct ms_folder *f, struct mbox_lock *lk, int create, struct pt_status *st)
{
	memset(lk, 0, sizeof *lk);
	lk->fd = -1;
	lk->dfd = -1;
	lk->lockfd = -1;
	for (int attempt = 0; attempt < 4; attempt++) {
		if (open_file(f, create, st) != 0)
			return -1;
		if (f->fd < 0 || !f->writable)
			return 0;
		struct pt_status why;
		if (mbox_lock_at(lk, f->fd, f->dfd, f->leaf, f->path, f->set, &why) != 0) {
			pt_status_set(st, 450, "INUSE", "Mailbox is locked, try again later");
			lk->fd = -1;
			return -1;
		}
		struct stat a, b;
		if (fstat(f->fd, &a) == 0 && leaf_stat(f, &b) == 0 && a.st_ino == b.st_ino &&
		    a.st_dev == b.st_dev) {
			if (ms_recover(f, st) != 0) {
				mbox_unlock(lk, f->set);
				lk->fd = -1;
				return -1;
			}
			f->locked = 1;
			return 0;
		}
		mbox_unlock(lk, f->set);
		lk->fd = -1;
	}
	pt_status_set(st, 450, "INUSE", "Mailbox keeps being replaced, try again later");
	return -1;
}

void
ms_folder_unlock(struct ms_folder *f, struct mbox_lock *lk)
{
	if (lk->fd >= 0)
		mbox_unlock(lk, f->set);
	lk->fd = -1;
	f->locked = 0;
}

/* ---- parsing ---- */

struct parse {
	struct ms_folder *f;
	struct pt_strbuf buf;          /* the window of the file being parsed */
	int64_t base;                  /* file offset of buf.p[0] */
	uint32_t limit;                /* X-UIDs below this are trusted */
	uint32_t next_new;
	struct ms_hdr h;
	int err;
};

/* Growth by an eighth: every open of a big folder keeps its list, so
 * doubling's slack (up to 100% after a delivery) would cost per session;
 * realloc of such blocks moves pages, not bytes. */
static int
grow_msgs(struct ms_folder *f)
{
	if (f->n < f->cap)
		return 0;
	return ms_folder_reserve(f, f->cap + f->cap / 8 + 64);
}

static int
kw_names_equal(struct ms_folder *f, const struct ms_hdr *h)
{
	if (h->nbase_kw != f->nkw)
		return 0;
	for (size_t i = 0; i < f->nkw; i++)
		if (strcmp(h->base_kw[i], f->kw[i]) != 0)
			return 0;
	return 1;
}

static int
on_message(void *arg, const struct mbox_msg *mm)
{
	struct parse *p = arg;
	struct ms_folder *f = p->f;
	if (grow_msgs(f) != 0) {
		p->err = ENOMEM;
		return 1;
	}
	const char *text = p->buf.p + (mm->from_off - p->base);
	const char *hdr = text + (mm->hdr_off - mm->from_off);
	struct ms_hdr *h = &p->h;
	uint64_t size = ms_header_parse_size(hdr, (size_t)(mm->body_off - mm->hdr_off),
	                                     (size_t)(mm->end - mm->hdr_off), h);
	int first = f->n == 0;
	if (first) {
		if (h->has_base) {
			uint32_t lim = h->base_last + 1 > h->base_last ? h->base_last + 1 : h->base_last;
			if (f->uidvalidity == h->base_validity && f->uidnext > lim)
				lim = f->uidnext;
			f->uidvalidity = h->base_validity;
			p->limit = lim;
			for (size_t i = 0; i < h->nbase_kw; i++)
				ms_folder_keyword(f, h->base_kw[i], 1);
			f->base_ok = h->base_last + 1 == lim && kw_names_equal(f, h);
		} else {
			/* No X-IMAPbase: the index's values, if any, still hold
			 * (the first message was removed by another program). */
			p->limit = f->uidvalidity ? f->uidnext : 1;
			f->base_ok = 0;
		}
		p->next_new = p->limit;
	}
	ms_rec_touch(f, f->n);
	struct ms_msg *r = &f->m[f->n];
	memset(r, 0, sizeof *r);
	r->from_off = mm->from_off;
	r->hdr_off = mm->hdr_off;
	r->body_off = mm->body_off;
	r->end = mm->end;
	r->blk_off = h->blk_len ? mm->hdr_off + h->blk_off : 0;
	r->blk_len = h->blk_len;
	r->meta_len = h->meta_len;
	r->clen_len = h->clen_len;
	r->state = (h->old ? MS_OLD : 0) | (h->has_base ? MS_HAS_BASE : 0) | (h->rd ? MS_RD : 0) |
	           ((h->flags & PT_F_SYSTEM) << MS_DISK_SHIFT);
	size_t hlen = (size_t)(mm->body_off - mm->hdr_off);
	if (h->meta_len == 0 && h->clen_len == 0 && mm->hdr_off == mm->from_off + (off_t)mm->from_len + 1 &&
	    hlen > 0 && h->fields_end == hlen - 1 && hdr[hlen - 1] == '\n')
		r->state |= MS_PLAIN;
	r->info.flags = h->flags;
	for (size_t i = 0; i < h->nkw; i++) {
		int k = ms_folder_keyword(f, h->kw[i], 1);
		if (k >= 0)
			r->info.keywords |= 1ull << k;
	}
	r->disk_kw = r->info.keywords;
	r->info.size = size;
	r->info.internal_date = ms_from_date(text, mm->from_len, &r->info.tz_minutes);
	uint32_t prev = f->n ? f->m[f->n - 1].info.uid : 0;
	if (h->has_uid && h->uid > prev && h->uid < p->limit) {
		r->info.uid = h->uid;
	} else {
		uint32_t u = p->next_new > prev ? p->next_new : prev + 1;
		if (u == 0 || u == UINT32_MAX) {
			p->err = EOVERFLOW;
			return 1;
		}
		r->info.uid = u;
		p->next_new = u + 1;
		r->state |= MS_DIRTY;
		f->base_ok = 0;
	}
	f->n++;
	return 0;
}

/* Parse [start, size) of the file and append the messages to f->m. */
static int
parse_range(struct ms_folder *f, int64_t start, int64_t size, struct pt_status *st)
{
	struct parse *p = calloc(1, sizeof *p);
	if (p == NULL) {
		pt_status_set(st, 451, "SERVERBUG", "Out of memory");
		return -1;
	}
	p->f = f;
	p->base = start;
	p->limit = f->uidnext;
	p->next_new = f->uidnext;
	struct mbox_reader r;
	mbox_reader_init(&r, on_message, p);
	r.off = r.line_off = start;
	int64_t off = start;
	int rc = 0;
	while (off < size && rc == 0) {
		if (pt_strbuf_reserve(&p->buf, CHUNK) != 0) {
			p->err = ENOMEM;
			break;
		}
		size_t want = (size_t)(size - off) < CHUNK ? (size_t)(size - off) : CHUNK;
		ssize_t got = pread(f->fd, p->buf.p + p->buf.len, want, (off_t)off);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			p->err = got < 0 ? errno : EIO;
			break;
		}
		rc = mbox_reader_feed(&r, p->buf.p + p->buf.len, (size_t)got);
		p->buf.len += (size_t)got;
		off += got;
		int64_t keep = r.in_msg ? (int64_t)r.cur.from_off : (int64_t)r.line_off;
		if (keep > p->base) {
			size_t drop = (size_t)(keep - p->base);
			memmove(p->buf.p, p->buf.p + drop, p->buf.len - drop);
			p->buf.len -= drop;
			p->base = keep;
		}
	}
	if (rc == 0 && p->err == 0)
		mbox_reader_finish(&r);
	if (start == 0 || f->n == 0)
		f->junk = r.junk;
	int err = p->err;
	if (err == 0 && f->n && f->m[f->n - 1].info.uid >= f->uidnext)
		f->uidnext = f->m[f->n - 1].info.uid + 1;
	if (err == 0 && p->limit > f->uidnext)
		f->uidnext = p->limit;
	pt_strbuf_free(&p->buf);
	free(p);
	if (err) {
		pt_status_set(st, 451, "SERVERBUG", "Cannot read mailbox: %s", strerror(err));
		return -1;
	}
	return 0;
}

/* A message's metadata as an earlier list had it. */
struct ms_seen {
	uint32_t uid, flags;
	uint64_t keywords, modseq;
};

/* The floor for a folder whose mod-sequences are lost (no index, or a
 * corrupt one): the clock in 2^-20 s steps. Every change takes one step
 * above the last, so the values handed out before the loss stay below
 * it unless more than a million changes a second were made on average
 * since the folder's first load -- far beyond what fsync'd mbox writes
 * allow. So HIGHESTMODSEQ never goes back for a UIDVALIDITY. */
static uint64_t
modseq_floor(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ((uint64_t)ts.tv_sec << 20) + ((uint64_t)ts.tv_nsec >> 10);
}

uint64_t
ms_folder_next_modseq(struct ms_folder *f)
{
	if (f->highest_modseq == 0)
		f->highest_modseq = modseq_floor();
	return ++f->highest_modseq;
}

static int
seen_cmp(const void *key, const void *elem)
{
	uint32_t u = *(const uint32_t *)key, v = ((const struct ms_seen *)elem)->uid;
	return u < v ? -1 : u > v;
}

/* Mod-sequences for f->m[from..n) after a parse: a message an earlier
 * list (was, ascending UIDs) had with the same flags keeps its value;
 * new ones and those another program changed get one new value. */
static void
modseq_assign(struct ms_folder *f, size_t from, const struct ms_seen *was, size_t nwas)
{
	uint64_t fresh = 0;
	for (size_t i = from; i < f->n; i++) {
		ms_rec_touch(f, i);
		struct pt_msg_info *m = &f->m[i].info;
		const struct ms_seen *o = nwas ? bsearch(&m->uid, was, nwas, sizeof *was, seen_cmp) : NULL;
		if (o != NULL && o->modseq && o->flags == m->flags && o->keywords == m->keywords) {
			m->modseq = o->modseq;
			continue;
		}
		if (fresh == 0)
			fresh = ms_folder_next_modseq(f);
		m->modseq = fresh;
	}
	/* Messages gone (another program expunged) are a change too, and
	 * QRESYNC's VANISHED names them. */
	uint32_t *gone = NULL;
	size_t ngone = 0;
	for (size_t k = 0; k < nwas; k++)
		if (ms_folder_find(f, was[k].uid) == (size_t)-1) {
			if (gone == NULL && (gone = malloc((nwas - k) * sizeof *gone)) == NULL)
				break;
			gone[ngone++] = was[k].uid;
		}
	if (fresh == 0 && (ngone || nwas != f->n - from))
		fresh = ms_folder_next_modseq(f);
	if (f->highest_modseq == 0)
		ms_folder_next_modseq(f);
	if (gone == NULL && nwas && nwas > f->n - from)
		f->van_floor = f->highest_modseq;  /* not kept (memory): from here on */
	ms_vanished_add(f, gone, ngone, fresh);
	free(gone);
}

/* Does a message start at off (the file only grew since)? */
static int
from_line_at(int fd, int64_t off)
{
	if (off == 0)
		return 1;
	char b[6];
	return pread(fd, b, 6, (off_t)off - 1) == 6 && b[0] == '\n' && memcmp(b + 1, "From ", 5) == 0;
}

int
ms_folder_load(struct ms_folder *f, int *changed, struct pt_status *st)
{
	*changed = 0;
	if (open_file(f, 0, st) != 0)
		return -1;
	unsigned long gen = shared_gen(f->sh);
	if (f->fd < 0) {
		/* No file (INBOX before its first delivery): an empty folder
		 * whose UIDVALIDITY lives in the index. */
		if (f->known_valid || f->n || f->uidvalidity == 0 || gen != f->gen)
			*changed = 1;
		f->known_valid = 0;
		f->n = 0;
		f->gen = gen;
		if (f->uidvalidity == 0) {
			struct stat isb;
			if (ms_index_load(f, NULL, &isb) == 0 || f->uidvalidity == 0) {
				f->uidvalidity = ms_new_uidvalidity(f->root);
				f->uidnext = 1;
			}
			f->n = 0;
			if (f->highest_modseq == 0)
				ms_folder_next_modseq(f);
			if (f->van_floor == 0)
				f->van_floor = f->highest_modseq;
			ms_index_save(f);
		}
		return 0;
	}
	struct stat sb;
	if (fstat(f->fd, &sb) != 0) {
		pt_status_set(st, 451, "", "Cannot stat mailbox: %s", strerror(errno));
		return -1;
	}
	if (f->known_valid && same_stat(&sb, &f->known) && gen == f->gen) {
		/* The mbox as known; flag changes may have come in the log. */
		if (ms_flog_changed(f)) {
			*changed = 1;
			ms_flog_replay(f, 1, f->locked);
		}
		return 0;
	}
	*changed = 1;
	f->dirty_hint = 1;
	f->not_old_hint = 1;
	/* An appender through the store logged its records: take them from
	 * the append log (the exact records and mod-sequences it made), as
	 * far as it reaches. Batches chain by mbox state, record count and
	 * UIDNEXT, so this holds also when another open of this process
	 * wrote (the generation moved). */
	if (f->known_valid && f->tail_valid && same_stat(&f->tail_end, &f->known) &&
	    sb.st_ino == f->known.st_ino && sb.st_dev == f->known.st_dev &&
	    sb.st_size > f->known.st_size) {
		struct stat end = f->known;
		if (ms_tail_apply(f, &end, 1) > 0) {
			f->known = end;
			if (same_stat(&end, &sb)) {
				f->gen = gen;
				ms_flog_replay(f, 1, f->locked);
				return 0;
			}
			if (sb.st_size <= f->known.st_size || !from_line_at(f->fd, f->known.st_size)) {
				/* Cannot happen for a chain of appends; read it all. */
				f->known_valid = 0;
				return ms_folder_load(f, changed, st);
			}
		}
	}
	int64_t tail = -1;
	/* Only grown since this open looked, and no writer of this store
	 * since: the index still describes the file as this open knows it
	 * (a writer saves it). Else another process may have rewritten the
	 * known part in place ('O' of a message it took as \Recent, flags)
	 * before the growth: the list is not this open's to keep. */
	if (f->known_valid && gen == f->gen && sb.st_ino == f->known.st_ino &&
	    sb.st_dev == f->known.st_dev && sb.st_size > f->known.st_size &&
	    from_line_at(f->fd, f->known.st_size) &&
	    (ms_index_matches(f, &f->known) || ms_tail_at(f, &f->known) || ms_index_matches(f, &sb))) {
		/* Another open that wrote or read the new mail saved an index
		 * of exactly this file: mapping it shares its pages with that
		 * open instead of growing a private copy of the list. */
		struct stat isb;
		int rc = ms_index_matches(f, &sb) ? ms_index_load(f, &sb, &isb) : 0;
		if (rc == 1) {
			f->known = sb;
			f->gen = gen;
			ms_flog_replay(f, 0, f->locked);
			return 0;
		}
		tail = rc == 0 ? f->known.st_size : -1;
		if (rc == 2 && isb.st_ino == sb.st_ino && isb.st_dev == sb.st_dev &&
		    isb.st_size < sb.st_size && from_line_at(f->fd, isb.st_size))
			tail = isb.st_size;
	} else {
		struct stat isb;
		int rc = ms_index_load(f, &sb, &isb);
		if (rc == 1) {
			f->known = sb;
			f->known_valid = 1;
			f->gen = gen;
			ms_flog_replay(f, 0, f->locked);
			return 0;
		}
		if (rc == 2 && isb.st_ino == sb.st_ino && isb.st_dev == sb.st_dev &&
		    isb.st_size < sb.st_size && from_line_at(f->fd, isb.st_size))
			tail = isb.st_size;
	}
	/* What the list said before (index or last load), to keep the
	 * mod-sequences of messages a full parse finds unchanged. */
	struct ms_seen *was = NULL;
	size_t nwas = 0, from = f->n;
	if (tail < 0) {
		/* Full parse: keep UIDVALIDITY/UIDNEXT as hints for a file
		 * whose X-IMAPbase went missing; the keyword table keeps its
		 * order so bit masks handed out stay meaningful. */
		if (f->n && (was = malloc(f->n * sizeof *was)) != NULL) {
			for (size_t i = 0; i < f->n; i++)
				was[i] = (struct ms_seen){ f->m[i].info.uid, f->m[i].info.flags,
				                           f->m[i].info.keywords, f->m[i].info.modseq };
			nwas = f->n;
		}
		ms_brief_drop(f);   /* the list is read anew over itself */
		f->n = 0;
		from = 0;
		tail = 0;
	}
	uint32_t validity_was = f->uidvalidity;
	if (parse_range(f, tail, sb.st_size, st) != 0) {
		free(was);
		f->known_valid = 0;
		f->n = 0;
		return -1;
	}
	/* New records: whatever the index said of the rest no longer
	 * covers them. */
	f->dirty_hint = 1;
	f->not_old_hint = 1;
	if (f->uidvalidity != validity_was && validity_was != 0) {
		/* Another folder now: its expunges are not the old one's. */
		nwas = 0;
		free(f->van);
		f->van = NULL;
		f->nvan = 0;
		f->van_floor = 0;
	}
	modseq_assign(f, from, was, nwas);
	free(was);
	/* No expunge known before this (a folder first seen, or its index
	 * lost): VANISHED is exact from here on. */
	if (f->van_floor == 0)
		f->van_floor = f->highest_modseq;
	/* A first parse leaves its growth slack behind: give it back. */
	if (tail == 0 && f->map == NULL && f->n && f->cap > f->n) {
		struct ms_msg *m = realloc(f->m, f->n * sizeof *m);
		if (m != NULL) {
			f->m = m;
			f->cap = f->n;
		}
	}
	if (f->uidvalidity == 0) {
		f->uidvalidity = ms_new_uidvalidity(f->root);
		f->base_ok = 0;
	}
	f->known = sb;
	f->known_valid = 1;
	f->gen = gen;
	/* Pending flag changes over what the mbox says (all of the log: the
	 * list was read anew, at least in part). */
	ms_flog_replay(f, 0, f->locked);
	int dirty = 0;
	for (size_t i = 0; i < f->n; i++)
		if (f->m[i].state & MS_DIRTY)
			dirty = 1;
	if (!dirty)
		ms_index_save(f);
	return 0;
}

int
ms_folder_read_raw(struct ms_folder *f, size_t i, struct pt_strbuf *b, struct pt_status *st)
{
	const struct ms_msg *r = &f->m[i];
	size_t len = (size_t)(r->end - r->from_off);
	char *p = malloc(len + 1);
	if (p == NULL) {
		pt_status_set(st, 451, "SERVERBUG", "Out of memory");
		return -1;
	}
	if (f->fd < 0 || ms_pread_all(f->fd, p, len, r->from_off) != 0 ||
	    (len < 5 || memcmp(p, "From ", 5) != 0)) {
		free(p);
		pt_status_set(st, 451, "", "Mailbox changed meanwhile, try again");
		return -1;
	}
	p[len] = '\0';
	b->p = p;
	b->len = len;
	b->cap = len + 1;
	return 0;
}

int
ms_errno_status(int err, const char *name, struct pt_status *st)
{
	switch (err) {
	case ELOOP:
	case EACCES:
	case EPERM:
		/* Dovecot's answer for a folder it may not use. */
		pt_status_set(st, 550, "NOPERM", "Permission denied");
		break;
	case ENOENT:
	case ENOTDIR:
		pt_status_set(st, 550, "NONEXISTENT", "Mailbox doesn't exist: %s", name);
		break;
	case ENOSPC:
	case EDQUOT:
		pt_status_set(st, 452, "OVERQUOTA", "Not enough disk space");
		break;
	default:
		pt_status_set(st, 451, "", "Cannot open mailbox %s: %s", name, strerror(err));
		break;
	}
	return -1;
}

int
ms_dir_open(const char *root, const char *rel, int create, const char **leaf,
            struct pt_status *st)
{
	int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
	int fd = open(root, flags);
	if (fd < 0 && errno == ENOENT && create && ms_mkdirs(root, 1) == 0)
		fd = open(root, flags);
	if (fd < 0) {
		if (errno == ENOENT)
			return -2;
		if (errno == ELOOP)
			pt_warn("mail root %s is a symbolic link: refused", root);
		return ms_errno_status(errno, rel, st);
	}
	const char *p = rel;
	for (;;) {
		const char *slash = strchr(p, '/');
		if (slash == NULL)
			break;
		char comp[MS_NAME_MAX + 1];
		size_t cl = (size_t)(slash - p);
		if (cl == 0 || cl > MS_NAME_MAX) {
			close(fd);
			pt_status_set(st, 550, "CANNOT", "Invalid mailbox name");
			return -1;
		}
		memcpy(comp, p, cl);
		comp[cl] = '\0';
		int nfd = openat(fd, comp, flags);
		if (nfd < 0 && errno == ENOENT && create) {
			if (mkdirat(fd, comp, 0700) == 0 || errno == EEXIST)
				nfd = openat(fd, comp, flags);
		}
		int e = errno;
		close(fd);
		if (nfd < 0) {
			if (e == ENOENT && !create)
				return -2;
			if (e == ELOOP)
				pt_warn("mailbox %s: %.*s is a symbolic link: refused", rel, (int)(slash - rel), rel);
			return ms_errno_status(e, rel, st);
		}
		fd = nfd;
		p = slash + 1;
	}
	*leaf = p;
	return fd;
}

/* ---- append fast path (see ms_tail_append) ---- */

int
ms_folder_write_base(struct ms_folder *f, struct pt_status *st)
{
	/* Only when nothing else waits to be written (no expunge, no
	 * message needing a UID): then the first record is the first live
	 * message and its block is all there is to write. Pending flag
	 * changes stay in the flag log. */
	if (f->fd < 0 || !f->writable || !f->known_valid || f->dirty_hint || f->n == 0 ||
	    (f->m[0].state & (MS_DIRTY | MS_EXPUNGE)))
		return 0;
	int rc = ms_write_in_place(f, &f->m[0], 1);
	if (rc == 0)
		return 0;
	/* No sync of its own: the append's fdatasync covers both. Should a
	 * crash keep the messages but lose this line, their X-UIDs are above
	 * the old last UID and get renumbered from it, in order -- the same
	 * numbers, none of them acknowledged yet. */
	if (rc < 0) {
		pt_status_set(st, 451, "", "Cannot write mailbox: %s", strerror(errno));
		f->known_valid = 0;
		return -1;
	}
	f->base_ok = 1;
	f->nkw_written = f->nkw;
	if (fstat(f->fd, &f->known) != 0) {
		f->known_valid = 0;
		return -1;
	}
	ms_shared_bump(f);
	return 1;
}

int
ms_folder_load_tail(struct ms_folder *f, struct pt_status *st)
{
	struct stat sb;
	if (f->fd < 0 || !f->known_valid || fstat(f->fd, &sb) != 0 || sb.st_ino != f->known.st_ino ||
	    sb.st_dev != f->known.st_dev || sb.st_size <= f->known.st_size ||
	    !from_line_at(f->fd, f->known.st_size))
		return -1;
	size_t from = f->n;
	if (parse_range(f, f->known.st_size, sb.st_size, st) != 0) {
		f->n = from;
		return -1;
	}
	modseq_assign(f, from, NULL, 0);
	if (f->van_floor == 0)
		f->van_floor = f->highest_modseq;
	int dirty = 0;
	for (size_t i = from; i < f->n; i++) {
		if (f->m[i].state & (MS_DIRTY | MS_EXPUNGE))
			dirty = 1;
		if (!(f->m[i].state & MS_OLD))
			f->not_old_hint++;
	}
	if (dirty)
		f->dirty_hint = 1;
	f->known = sb;
	f->known_valid = 1;
	f->gen = shared_gen(f->sh);
	return dirty;
}

int
ms_folder_load_appended(struct ms_folder *f, struct pt_status *st)
{
	/* Anything else that may have moved (an open of this process wrote,
	 * flag changes pending in the log, a store writer's batch or index)
	 * is the full load's to sort out. */
	if (f->fd < 0 || !f->known_valid || shared_gen(f->sh) != f->gen || !f->log_valid ||
	    f->log_known.st_ino != 0 || ms_flog_changed(f) || !ms_tail_at(f, &f->known))
		return -1;
	return ms_folder_load_tail(f, st);
}
