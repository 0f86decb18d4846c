/* In-process cost of one check_lua_policy call (policy.lua, the policy of
 * bench.py): no network, no SMTP, no logging around it. Built and run by run.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "restrict/restrict.h"

static void
done(void *arg, const struct restrict_lua_result *r)
{
	if (r->error) {
		fprintf(stderr, "policy error: %s: %s\n", r->where, r->why);
		exit(1);
	}
	(*(long *)arg)++;
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: lua_call_bench POLICY.lua [CALLS]\n");
		return 2;
	}
	char err[512];
	struct restrict_lua_slot *slot = restrict_lua_open(argv[1], err, sizeof err);
	if (slot == NULL) {
		fprintf(stderr, "%s: %s\n", argv[1], err);
		return 1;
	}
	struct pt_policy_request q;
	memset(&q, 0, sizeof q);
	q.stage = PT_STAGE_RCPT;
	q.protocol_name = "ESMTP";
	q.client_address = "127.0.0.2";
	q.helo_name = "client2.example.com.ar";
	q.sender = "someone@example.com.ar";
	q.recipient = "alice@example.com.ar";
	long n = argc > 2 ? atol(argv[2]) : 500000, calls = 0;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		restrict_lua_call(slot, NULL, &q, done, &calls);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double us = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / (double)n / 1000.0;
	printf("| Lua policy call, in process | %.2f µs (%ld calls) |\n", us, calls);
	restrict_lua_close(slot);
	return 0;
}
