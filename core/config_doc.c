/* `postern config -d`: every declared parameter with its owner, declared
 * default and one-line doc — the config reference, generated from the
 * tables so it cannot drift from the code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_priv.h"

static int
by_owner_then_name(const void *a, const void *b)
{
	const struct pt_cfg_slot *x = *(const struct pt_cfg_slot *const *)a;
	const struct pt_cfg_slot *y = *(const struct pt_cfg_slot *const *)b;
	int core_x = strcmp(x->owner, "core") == 0, core_y = strcmp(y->owner, "core") == 0;
	if (core_x != core_y)
		return core_y - core_x;
	int o = strcmp(x->owner, y->owner);
	return o ? o : strcmp(x->name, y->name);
}

/* Text for roff: a backslash is \e, a minus \- (so that it copies as
 * one), and a line may not start with a control character. */
static void
roff_text(FILE *out, const char *s)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", out);
	for (const char *p = s; *p; p++) {
		if (*p == '\\')
			fputs("\\e", out);
		else if (*p == '-')
			fputs("\\-", out);
		else if (*p == '\n')
			fputc(' ', out);
		else
			fputc(*p, out);
	}
}

/* The man(7) form of pt_cfg_doc_listeners: the per-listener syntax and
 * the modules' built-in values for each listener. */
static void
man_listeners(const struct pt_config *c, FILE *out)
{
	fputs(".SS Per-listener settings\n"
	      ".IB LISTENER . PARAMETER \" = \" value\n"
	      "gives one listener its own value, as Postfix's master.cf \\-o does;\n"
	      ".I LISTENER\n"
	      "is a\n.B *_listen\n"
	      "parameter without\n.B _listen\n(", out);
	for (size_t i = 0; i < c->nlisteners; i++) {
		fputs(i ? ", " : "", out);
		roff_text(out, c->listeners[i].name);
	}
	fputs(").\nThe parameters marked \"Per listener\" above can be set so.\n"
	      "Built\\-in values, which a line in the file replaces:\n", out);
	for (size_t i = 0; i < c->nlisteners; i++)
		for (size_t k = 0; k < c->nbuiltins; k++) {
			const struct pt_cfg_override *o = &c->builtins[k];
			const struct pt_cfg_slot *s = pt_cfg_find(c, o->param);

			if (strcmp(o->listener, c->listeners[i].name) != 0 || s == NULL || s->decl == NULL)
				continue;
			fputs(".TP\n.B ", out);
			roff_text(out, o->listener);
			fputs(".", out);
			roff_text(out, o->param);
			fputs("\n.br\n", out);
			if (*o->raw)
				roff_text(out, o->raw);
			else
				fputs("(empty)", out);
			fputs("\n", out);
		}
}

/* markdown 1: one table per owner; 2: man(7) sections of tagged
 * paragraphs, for postern.conf(5) (scripts/gen-config-doc.sh --man);
 * 0: "name = default  # (owner) doc". */
int
pt_config_doc(const struct pt_config *c, FILE *out, int markdown, char **names, int nnames)
{
	const struct pt_cfg_slot **v = calloc(c->nslots + 1, sizeof *v);
	size_t n = 0;
	int rc = 0;
	if (v == NULL)
		return 1;
	if (names && nnames > 0) {
		for (int i = 0; i < nnames; i++) {
			const struct pt_cfg_slot *s = pt_cfg_find(c, names[i]);
			if (s == NULL || s->decl == NULL) {
				fprintf(stderr, "postern: unknown parameter \"%s\"\n", names[i]);
				rc = 1;
				continue;
			}
			v[n++] = s;
		}
	} else {
		for (size_t i = 0; i < c->nslots; i++)
			if (c->slots[i].decl != NULL)
				v[n++] = &c->slots[i];
		qsort(v, n, sizeof *v, by_owner_then_name);
	}
	const char *owner = NULL;
	for (size_t i = 0; i < n; i++) {
		const struct pt_cfg_slot *s = v[i];
		const char *def = s->decl->def ? s->decl->def : "";
		const char *doc = s->decl->doc ? s->decl->doc : "";
		if (!markdown) {
			fprintf(out, "%s = %s\t# (%s) %s\n", s->name, def, s->owner, doc);
			continue;
		}
		if (markdown == 2) {
			if (owner == NULL || strcmp(owner, s->owner) != 0) {
				owner = s->owner;
				fprintf(out, ".SS %s%s\n", strcmp(owner, "core") == 0 ? "core" : "module ",
				        strcmp(owner, "core") == 0 ? "" : owner);
			}
			/* .br: a name narrower than the indent would otherwise
			 * share its line with the text. */
			fputs(".TP\n.B ", out);
			roff_text(out, s->name);
			fputs("\n.br\n", out);
			roff_text(out, doc);
			if (*def) {
				fputs("\n.br\nDefault: \\fI", out);
				roff_text(out, def);
				fputs("\\fR", out);
			}
			if (pt_cfg_listener_param(c, s->name))
				fputs("\n.br\nPer listener.", out);
			fputs("\n", out);
			continue;
		}
		if (owner == NULL || strcmp(owner, s->owner) != 0) {
			owner = s->owner;
			fprintf(out, "%s### %s%s\n\n| parameter | default | meaning |\n| --- | --- | --- |\n",
			        i ? "\n" : "", strcmp(owner, "core") == 0 ? "core" : "module ", 
			        strcmp(owner, "core") == 0 ? "" : owner);
		}
		fprintf(out, "| `%s` | ", s->name);
		/* A table cell: pipes escaped, no line breaks. */
		for (const char *p = def; *p; p++)
			fputs(*p == '|' ? "\\|" : *p == '\n' ? " " : (char[2]){ *p, 0 }, out);
		fputs(" | ", out);
		for (const char *p = doc; *p; p++)
			fputs(*p == '|' ? "\\|" : *p == '\n' ? " " : (char[2]){ *p, 0 }, out);
		fputs(pt_cfg_listener_param(c, s->name) ? " *(per listener)* |\n" : " |\n", out);
	}
	if (markdown == 2 && !(names && nnames > 0))
		man_listeners(c, out);
	else if (markdown && !(names && nnames > 0))
		pt_cfg_doc_listeners(c, out);
	free(v);
	return rc;
}
