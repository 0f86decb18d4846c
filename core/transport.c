/* The core's side of the transport service (postern/transport.h): finding
 * a transport by the name routing gave, and the one delivery log line
 * every transport writes. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "postern/log.h"
#include "postern/metrics.h"
#include "postern/record.h"
#include "postern/transport.h"
#include "loader.h"
#include "queue.h"

const struct pt_transport_ops *
pt_transport_get(const char *name)
{
	char svc[64];
	if (!name || snprintf(svc, sizeof svc, PT_SVC_TRANSPORT("%s"), name) >= (int)sizeof svc)
		return NULL;
	return pt_service_get(svc);
}

int
pt_transport_known(const char *name)
{
	char svc[64];
	if (!name || snprintf(svc, sizeof svc, PT_SVC_TRANSPORT("%s"), name) >= (int)sizeof svc)
		return 0;
	if (strcmp(name, "local") == 0)
		return 1;
	for (size_t i = 0; i < pt_modules_count(); i++)
		for (const char *const *p = pt_modules_get(i)->provides; p && *p; p++)
			if (strcmp(*p, svc) == 0)
				return 1;
	return 0;
}

size_t
pt_transport_names(char *out, size_t len)
{
	size_t n = 0, count = 1;
	snprintf(out, len, "local");
	n = strlen(out);
	for (size_t i = 0; i < pt_modules_count(); i++)
		for (const char *const *p = pt_modules_get(i)->provides; p && *p; p++)
			if (strncmp(*p, "transport/", 10) == 0 && n < len) {
				n += (size_t)snprintf(out + n, len - n, ", %s", *p + 10);
				count++;
			}
	return count;
}

void
pt_delivery_log(const char *service, const char *queue_id, const char *to, const char *orig, const char *relay,
                const double delays[4], const struct pt_status *st)
{
	char d[4][16], all[16];
	double total = 0;
	for (int i = 0; i < 4; i++) {
		pt_queue_fmt_delay(delays[i], d[i], sizeof d[i]);
		total += delays[i];
	}
	pt_queue_fmt_delay(total, all, sizeof all);
	const char *status = st->code == 0 ? "sent" : st->code >= 500 ? "bounced" : "deferred";
	pt_metric_inc(pt_metric_counter("postern_deliveries", "delivery attempts per transport and status",
	                                "transport", service, "status", status, NULL));
	if (st->code == 0)
		pt_metric_observe(pt_metric_histogram("postern_delivery_delay_seconds",
		                                      "from arrival to delivered (mailbox or next hop)", "transport",
		                                      service, NULL),
		                  total);
	const char *dsn = st->dsn[0] ? st->dsn : st->code == 0 ? "2.0.0" : st->code >= 500 ? "5.0.0" : "4.0.0";
	char origpart[600] = "";
	if (orig && orig[0] && strcasecmp(orig, to) != 0)
		snprintf(origpart, sizeof origpart, ", orig_to=<%s>", orig);
	pt_log_as(service, PT_LOG_INFO, "%s: to=<%s>%s, relay=%s, delay=%s, delays=%s/%s/%s/%s, dsn=%s, status=%s (%s)",
	          queue_id, to, origpart, relay ? relay : "none", all, d[0], d[1], d[2], d[3], dsn, status, st->text);
	/* Every transport reports here: the decision record gets each attempt. */
	pt_record_delivery(service, queue_id, to, orig, relay ? relay : "none", total, st);
}
