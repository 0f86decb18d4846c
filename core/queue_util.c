/* Small pieces every queue file uses: the worker's queue state, queue
 * ids, address qualification and delay formatting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "queue_int.h"

struct qstate pt_qs = { .local_fd = -1 };

void
pt_queue_new_id(char out[24])
{
	static unsigned long long last;
	static unsigned counter;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	unsigned long long now = (unsigned long long)tv.tv_sec * 1000000ULL + (unsigned long long)tv.tv_usec;
	if (now <= last) {
		now = last;
		counter++;
	} else {
		counter = 0;
	}
	if (counter > 0xff) {
		now = last + 1;
		counter = 0;
	}
	last = now;
	/* Seconds, microseconds, a bit of the pid and a counter: unique across
	 * the processes that may make ids at the same time. */
	snprintf(out, 24, "%08llX%05llX%02X%02X", (now / 1000000ULL) & 0xffffffffULL, now % 1000000ULL,
	         (unsigned)getpid() & 0xff, counter & 0xff);
}

const char *
pt_queue_myorigin(const struct pt_config *conf)
{
	const char *o = pt_conf_str(conf, "myorigin");
	return o ? o : "";
}

char *
pt_queue_qualify(const char *addr, const char *origin)
{
	if (!addr)
		return NULL;
	if (strchr(addr, '@') || !addr[0] || !origin || !origin[0])
		return strdup(addr);
	size_t n = strlen(addr) + strlen(origin) + 2;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "%s@%s", addr, origin);
	return s;
}

void
pt_queue_fmt_delay(double d, char *out, size_t len)
{
	if (d < 0.005)
		snprintf(out, len, "0");
	else if (d < 0.1)
		snprintf(out, len, "%.2f", d);
	else if (d < 10)
		snprintf(out, len, "%.1f", d);
	else
		snprintf(out, len, "%.0f", d);
}
