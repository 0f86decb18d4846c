/* The OpenMetrics endpoint (metrics_listen): the smallest HTTP/1.1 server
 * that a scraper needs, on the worker's event loop. One request per
 * connection: GET (or HEAD) /metrics answers the table as OpenMetrics
 * text, any other path 404, any other method 405. The request head is
 * bounded (8 KiB), and so is the time to send it (a deadline, not an idle
 * timeout, so a trickling client cannot hold the connection). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "metrics_int.h"
#include "postern/conn.h"
#include "postern/log.h"
#include "runtime.h"

#define HEAD_MAX 8192
#define REQUEST_DEADLINE_MS 10000

static int answered = 1; /* the proto pointer of an answered connection */

static void
respond(struct pt_conn *c, const char *status, const char *ctype, const char *extra, const char *body, size_t len,
        int head_only)
{
	pt_conn_printf(c,
	               "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sCache-Control: no-store\r\n"
	               "Connection: close\r\n\r\n",
	               status, ctype, len, extra ? extra : "");
	if (!head_only && len)
		pt_conn_write(c, body, len);
	pt_conn_set_handlers(c, NULL, &answered);
	pt_conn_close_after_write(c);
}

static void
error_page(struct pt_conn *c, const char *status, const char *extra, int head_only)
{
	char body[128];
	int n = snprintf(body, sizeof body, "%s\n", status);
	respond(c, status, "text/plain; charset=utf-8", extra, body, (size_t)n, head_only);
}

static void
serve_metrics(struct pt_conn *c, int head_only)
{
	const struct pt_metrics_header *h = pt_metrics_table();
	struct pt_msnap snap;
	const char *qdir = pt_live_conf ? pt_conf_str(pt_live_conf, "queue_directory") : NULL;
	char *text = NULL;
	size_t len = 0;
	if (h && pt_msnap_take(h, (size_t)h->size, qdir, &snap) == 0) {
		pt_msnap_sort(&snap);
		text = pt_msnap_openmetrics(&snap, &len);
		pt_msnap_free(&snap);
	}
	if (!text) {
		error_page(c, "503 Service Unavailable", NULL, head_only);
		return;
	}
	respond(c, "200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", NULL, text, len, head_only);
	free(text);
}

static void
on_read(struct pt_conn *c)
{
	size_t len;
	const char *buf = pt_conn_rbuf(c, &len);
	const char *end = NULL;
	for (size_t i = 0; i + 1 < len && !end; i++)
		if (buf[i] == '\n' && (buf[i + 1] == '\n' || (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')))
			end = buf + i;
	if (!end) {
		if (len >= HEAD_MAX) {
			pt_conn_consume(c, len);
			error_page(c, "431 Request Header Fields Too Large", NULL, 0);
		}
		return;
	}
	/* The request line: METHOD SP TARGET SP HTTP/1.x */
	char method[16] = "", target[256] = "", version[16] = "";
	size_t line = strcspn(buf, "\r\n");
	char first[300];
	int ok = 0;
	if (line < sizeof first) {
		memcpy(first, buf, line);
		first[line] = '\0';
		char extra;
		ok = sscanf(first, "%15s %255s %15s %c", method, target, version, &extra) == 3 &&
		     strncmp(version, "HTTP/1.", 7) == 0;
	}
	pt_conn_consume(c, len);
	if (!ok) {
		error_page(c, "400 Bad Request", NULL, 0);
		return;
	}
	int head_only = strcmp(method, "HEAD") == 0;
	if (strcmp(method, "GET") != 0 && !head_only) {
		error_page(c, "405 Method Not Allowed", "Allow: GET, HEAD\r\n", 0);
		return;
	}
	target[strcspn(target, "?#")] = '\0';
	if (strcmp(target, "/metrics") != 0) {
		error_page(c, "404 Not Found", NULL, head_only);
		return;
	}
	serve_metrics(c, head_only);
}

static void
on_close(struct pt_conn *c, const char *reason)
{
	(void)c;
	(void)reason;
}

static const struct pt_conn_handlers handlers = { on_read, on_close, NULL };

static void
metrics_accept(struct pt_conn *c, const struct pt_listener *l)
{
	(void)l;
	pt_conn_set_handlers(c, &handlers, NULL);
	pt_conn_set_deadline(c, REQUEST_DEADLINE_MS);
	/* A request may already wait (the kernel had it before accept). */
	on_read(c);
}

const struct pt_listener_decl pt_metrics_listener = { "metrics_listen", "metrics", 0, metrics_accept };
