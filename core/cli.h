/* Verbs of the postern command, each implemented beside the code it
 * drives. Each returns the process exit status; conf is the -c / POSTERN_CONF
 * path (never NULL). Bad usage: one line on stderr and 2. */
#ifndef POSTERN_CLI_H
#define POSTERN_CLI_H

int pt_cmd_run(const char *conf, int argc, char **argv);      /* core/master.c */
int pt_cmd_check(const char *conf, int argc, char **argv);    /* core/main.c */
int pt_cmd_config(const char *conf, int argc, char **argv);   /* core/main.c */
int pt_cmd_signal(const char *conf, int sig);                 /* reload/stop: core/signal_cli.c */
int pt_cmd_queue(const char *conf, int argc, char **argv);    /* core/queue_cli.c */
int pt_cmd_sendmail(const char *conf, int argc, char **argv); /* core/sendmail.c */
/* argv0 named sendmail, mailq or newaliases: act as that (exit status);
 * -1 for any other name. core/sendmail.c */
int pt_sendmail_personality(const char *argv0, int argc, char **argv);
int pt_cmd_map(const char *conf, int argc, char **argv);      /* core/map_cli.c */
int pt_cmd_policy(const char *conf, int argc, char **argv);   /* core/policy_cli.c */
int pt_cmd_why(const char *conf, int argc, char **argv);      /* core/why_cli.c */
int pt_cmd_stats(const char *conf, int argc, char **argv);    /* core/stats_cli.c */
int pt_cmd_user(const char *conf, int argc, char **argv);     /* core/auth_cli.c */
int pt_cmd_auth(const char *conf, int argc, char **argv);     /* core/auth_cli.c */

#endif
