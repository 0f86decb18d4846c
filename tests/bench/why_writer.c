/* The decision record's writer alone, in one process, no network: N
 * messages, each an accepted SMTP transaction (one recipient) and its
 * local delivery, fed to pt_record_smtp / pt_record_delivery as fast as
 * the loop can (1000 at a time, 20 ms apart), then the CPU time of the
 * writer thread (process CPU - the feeding thread's) per message. Not
 * built by CMake (a measuring tool, not a test); from the source tree
 * after `make build`:
 *
 *   W=$PWD; gcc -O2 -I$W/include -I$W/core tests/bench/why_writer.c -o /tmp/why_writer \
 *     -Wl,--whole-archive build/libpostern_core.a -Wl,--no-whole-archive \
 *     $(pkg-config --libs lua5.4 sqlite3) -lssl -lcrypto -lcrypt -lpam -lz -ldl -lpthread -lm
 *   /tmp/why_writer N DB PREFILL TRACE [same] [norec]
 *
 * TRACE 1: a 400-byte restriction trace per transaction. same: one
 * sender and recipient (smtp-source's traffic) instead of 2000 senders
 * on 50 domains. norec: no record (what the feeding costs by itself). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "postern/record.h"
#include "postern/services.h"
#include "record_int.h"
#include "runtime.h"
#include "config_int.h"

static double cpu_now(clockid_t c){struct timespec t;clock_gettime(c,&t);return t.tv_sec+t.tv_nsec/1e9;}

int main(int argc,char**argv){
	int n = argc>1?atoi(argv[1]):20000;
	const char *path = argc>2?argv[2]:"/tmp/wb/d.db";
	int prefill = argc>3?atoi(argv[3]):0;
	int trace = argc>4?atoi(argv[4]):0;
	char conf[2048];
	snprintf(conf,sizeof conf,"decision_log_file = %s\ndecision_log_max_size = 1g\n",path);
	struct pt_config *c = pt_runtime_load_text("x", conf, strlen(conf));
	if(!c){fprintf(stderr,"conf\n");return 1;}
	if (!(argc>6)) pt_record_open(c);
	char tr[2000] = "";
	if (trace) snprintf(tr, sizeof tr, "RCPT <alice@example.com.ar>:\n  smtpd_helo_restrictions: permit_mynetworks -> no decision\n"
         "  smtpd_helo_restrictions: reject_invalid_helo_hostname -> no decision\n"
         "  smtpd_sender_restrictions: reject_unknown_sender_domain -> no decision\n"
         "  smtpd_recipient_restrictions: permit_mynetworks -> no decision\n"
         "  smtpd_recipient_restrictions: reject_unauth_destination -> no decision\n");
	usleep(300000);
	double p0 = cpu_now(CLOCK_PROCESS_CPUTIME_ID), t0 = cpu_now(CLOCK_THREAD_CPUTIME_ID);
	int total = n + prefill;
	for (int i = 0; i < total; i++) {
		char qid[32], mid[64], rc[64], snd[64];
		snprintf(qid,sizeof qid,"6B15%013X", 0x1000000+i*7919);
		snprintf(mid,sizeof mid,"<%x.%04x.0000@vm>", i*31, i);
		snprintf(rc,sizeof rc,"%s@example.com.ar", argc>5?"alice":i%50==0?"alice":(i%3?"user":"bob"));
		if (argc>5) snprintf(snd,sizeof snd,"bench@example.com.ar"); else snprintf(snd,sizeof snd,"u%d@d%d.example.net", i%2000, i%50);
		struct pt_record_rcpt r = { rc, "250 2.1.5 Ok", NULL };
		char reply[80]; snprintf(reply,sizeof reply,"250 2.0.0 Ok: queued as %s",qid);
		struct pt_record_smtp e = { .service="smtpd", .outcome="accepted", .queue_id=qid, .message_id=mid,
			.client_address="127.0.0.1", .client_name="localhost", .helo="vm", .sender=snd, .rcpt=&r, .nrcpt=1,
			.stage="END-OF-MESSAGE", .reply=reply, .trace = trace ? tr : NULL, .size=4300 };
		struct pt_status st; memset(&st,0,sizeof st); snprintf(st.text,sizeof st.text,"delivered to mailbox");
		if (i & 1) { pt_record_delivery("local", qid, rc, rc, "local", 0.01, &st); pt_record_smtp(&e); }
		else { pt_record_smtp(&e); pt_record_delivery("local", qid, rc, rc, "local", 0.01, &st); }
		if (i == prefill - 1 || (i % 1000) == 999) usleep(i == prefill-1 ? 3000000 : 20000);
		if (i == prefill - 1) { p0 = cpu_now(CLOCK_PROCESS_CPUTIME_ID); t0 = cpu_now(CLOCK_THREAD_CPUTIME_ID); }
	}
	double t1 = cpu_now(CLOCK_THREAD_CPUTIME_ID);
	usleep(1500000);
	double p1 = cpu_now(CLOCK_PROCESS_CPUTIME_ID);
	pt_record_close();
	double loop = t1 - t0, writer = (p1 - p0) - loop;
	printf("%d msgs: loop %.2f us/msg (incl. bench), writer %.2f us/msg\n", n, loop*1e6/n, writer*1e6/n);
	pt_config_free(c);
	return 0;
}
