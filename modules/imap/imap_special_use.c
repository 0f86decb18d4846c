/* SPECIAL-USE folders (RFC 6154): the configured ones (imap_special_use,
 * "Sent:\Sent:subscribe", Dovecot's special_use + auto), those a client
 * made with CREATE ... (USE (...)) and the store records, and the
 * creation of configured folders at login. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/log.h"
#include "imap.h"

static const char *const attrs[] = { "\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash" };

const char *
imap_special_attr(const char *s, size_t len)
{
	for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++)
		if (strlen(attrs[i]) == len && strncasecmp(attrs[i], s, len) == 0)
			return attrs[i];
	return NULL;
}

int
imap_special_parse(const char *item, struct imap_special *out)
{
	/* NAME:\USE[:AUTO]; the name is the part before the last ":\". */
	const char *use = NULL;
	for (const char *p = strstr(item, ":\\"); p; p = strstr(p + 1, ":\\"))
		use = p;
	if (use == NULL || use == item)
		return -1;
	size_t nlen = (size_t)(use - item);
	use++;
	const char *colon = strchr(use, ':');
	size_t ulen = colon ? (size_t)(colon - use) : strlen(use);
	const char *canon = imap_special_attr(use, ulen);
	enum imap_auto a = IMAP_AUTO_NO;
	if (canon == NULL || nlen >= sizeof(out->name))
		return -1;
	if (colon) {
		if (strcasecmp(colon + 1, "create") == 0)
			a = IMAP_AUTO_CREATE;
		else if (strcasecmp(colon + 1, "subscribe") == 0)
			a = IMAP_AUTO_SUBSCRIBE;
		else if (strcasecmp(colon + 1, "no") != 0)
			return -1;
	}
	/* INBOX is no special-use folder; names are store names (no control
	 * characters, no empty level). */
	if ((nlen == 5 && strncasecmp(item, "INBOX", 5) == 0) || item[0] == '/' || item[nlen - 1] == '/')
		return -1;
	for (size_t i = 0; i < nlen; i++)
		if ((unsigned char)item[i] < 0x20 || item[i] == 0x7f)
			return -1;
	if (out) {
		memcpy(out->name, item, nlen);
		out->name[nlen] = 0;
		strcpy(out->use, canon);
		out->autocreate = a;
	}
	return 0;
}

void
imap_special_autocreate(struct imap_session *s)
{
	for (size_t i = 0; i < imap_set.nspecial; i++) {
		const struct imap_special *sp = &imap_set.special[i];
		struct pt_status st = { 0 };
		if (sp->autocreate == IMAP_AUTO_NO)
			continue;
		/* The create is the existence check (a stat when it exists);
		 * only a folder made now is subscribed, so a user's later
		 * UNSUBSCRIBE stands. */
		if (s->mbx->create(s->ms, sp->name, &st) != 0) {
			if (strcmp(st.dsn, "ALREADYEXISTS") != 0)
				pt_warn("imap(%s): cannot create special-use folder %s: %s", s->user.name, sp->name,
				        st.text);
			continue;
		}
		if (sp->autocreate == IMAP_AUTO_SUBSCRIBE && s->mbx->subscribe(s->ms, sp->name, 1, &st) != 0)
			pt_warn("imap(%s): cannot subscribe %s: %s", s->user.name, sp->name, st.text);
	}
}

struct imap_special_table {
	size_t n, cap;
	struct {
		char *name, *use;
	} *v;
	int oom;
};

static void
table_add(void *arg, const char *name, const char *use)
{
	struct imap_special_table *t = arg;

	if (t->oom)
		return;
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 8;
		void *v = realloc(t->v, cap * sizeof(*t->v));
		if (v == NULL) {
			t->oom = 1;
			return;
		}
		t->v = v;
		t->cap = cap;
	}
	t->v[t->n].name = strdup(name);
	t->v[t->n].use = strdup(use);
	if (t->v[t->n].name == NULL || t->v[t->n].use == NULL) {
		free(t->v[t->n].name);
		free(t->v[t->n].use);
		t->oom = 1;
		return;
	}
	t->n++;
}

struct imap_special_table *
imap_special_load(struct imap_session *s, int with_config)
{
	struct imap_special_table *t = calloc(1, sizeof(*t));
	struct pt_status st = { 0 };

	if (t == NULL)
		return NULL;
	/* What a client set comes first and so wins over the config. */
	if (s->mbx->special_uses && s->mbx->special_uses(s->ms, table_add, t, &st) != 0)
		pt_warn("imap(%s): cannot read special-use attributes: %s", s->user.name, st.text);
	for (size_t i = 0; with_config && i < imap_set.nspecial; i++)
		table_add(t, imap_set.special[i].name, imap_set.special[i].use);
	return t;
}

const char *
imap_special_of(const struct imap_special_table *t, const char *name)
{
	for (size_t i = 0; t != NULL && i < t->n; i++)
		if (strcmp(t->v[i].name, name) == 0)
			return t->v[i].use;
	return "";
}

size_t
imap_special_count(const struct imap_special_table *t)
{
	return t ? t->n : 0;
}

const char *
imap_special_name(const struct imap_special_table *t, size_t i)
{
	return t->v[i].name;
}

const char *
imap_special_use(const struct imap_special_table *t, size_t i)
{
	return t->v[i].use;
}

void
imap_special_free(struct imap_special_table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].name);
		free(t->v[i].use);
	}
	free(t->v);
	free(t);
}
