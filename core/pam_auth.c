/* System users' passwords: PAM service "postern", and /etc/shadow with
 * crypt(3) when PAM itself cannot run. Blocking: called on a pool thread,
 * in the auth agent or by the CLI. */
#include <errno.h>
#include <pwd.h>
#include <shadow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <security/pam_appl.h>

#include <openssl/crypto.h>

#include "passdb.h"

struct conv_data {
	const char *user;
	const char *password;
};

/* Answers the password prompt; a prompt with echo is the user name. */
static int
conversation(int n, const struct pam_message **msg, struct pam_response **resp, void *appdata)
{
	struct conv_data *cd = appdata;
	struct pam_response *r;

	if (n <= 0 || n > PAM_MAX_NUM_MSG)
		return PAM_CONV_ERR;
	r = calloc((size_t)n, sizeof *r);
	if (!r)
		return PAM_BUF_ERR;
	for (int i = 0; i < n; i++) {
		const char *answer = NULL;
		switch (msg[i]->msg_style) {
		case PAM_PROMPT_ECHO_OFF:
			answer = cd->password;
			break;
		case PAM_PROMPT_ECHO_ON:
			answer = cd->user;
			break;
		case PAM_ERROR_MSG:
		case PAM_TEXT_INFO:
			continue;
		default:
			goto fail;
		}
		if (!(r[i].resp = strdup(answer)))
			goto fail;
	}
	*resp = r;
	return PAM_SUCCESS;
fail:
	for (int i = 0; i < n; i++)
		if (r[i].resp) {
			OPENSSL_cleanse(r[i].resp, strlen(r[i].resp));
			free(r[i].resp);
		}
	free(r);
	return PAM_CONV_ERR;
}

/* libpam would sleep on failure inside this thread; the event loop applies
 * auth_failure_delay with a timer instead. */
static void
no_fail_delay(int retval, unsigned usec, void *appdata)
{
	(void)retval;
	(void)usec;
	(void)appdata;
}

/* Errors that say PAM cannot do its job, not that the password is wrong. */
static int
pam_broken(int rc)
{
	return rc == PAM_ABORT || rc == PAM_SYSTEM_ERR || rc == PAM_BUF_ERR ||
	       rc == PAM_CONV_ERR || rc == PAM_SERVICE_ERR || rc == PAM_OPEN_ERR ||
	       rc == PAM_SYMBOL_ERR;
}

static int
system_user_exists(const char *user)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	return getpwnam_r(user, &pw, buf, sizeof buf, &res) == 0 && res != NULL;
}

int
pt_pam_verify(const char *pam_service, const struct pt_passdb_req *req, char *why, size_t whylen)
{
	struct conv_data cd = { req->user, req->password };
	struct pam_conv conv = { conversation, &cd };
	pam_handle_t *h = NULL;
	int rc;

	rc = pam_start(pam_service, req->user, &conv, &h);
	if (rc != PAM_SUCCESS) {
		if (h)
			pam_end(h, rc);
		return pt_shadow_verify(req->user, req->password, why, whylen);
	}
	if (req->rip && *req->rip)
		pam_set_item(h, PAM_RHOST, req->rip);
	pam_set_item(h, PAM_FAIL_DELAY, (const void *)no_fail_delay);
	rc = pam_authenticate(h, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
	if (rc == PAM_SUCCESS) {
		rc = pam_acct_mgmt(h, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
		if (rc == PAM_NEW_AUTHTOK_REQD)
			rc = PAM_SUCCESS;  /* an expired password still proves who it is */
		if (rc != PAM_SUCCESS)
			snprintf(why, whylen, "account not usable (%s)", pam_strerror(h, rc));
	} else if (!pam_broken(rc)) {
		int known = system_user_exists(req->user);
		snprintf(why, whylen, "%s", known ? "password mismatch" : "unknown user");
		/* pam_unix answers unknown users without hashing: spend the time. */
		if (!known)
			pt_pwscheme_dummy_verify_system(req->password);
	}
	int broken = pam_broken(rc);
	pam_end(h, rc);
	if (broken)
		return pt_shadow_verify(req->user, req->password, why, whylen);
	return rc == PAM_SUCCESS ? 1 : 0;
}

int
pt_shadow_verify(const char *user, const char *password, char *why, size_t whylen)
{
	struct spwd sp, *res = NULL;
	char buf[4096];
	int rc;

	if (!password || !*password) {
		snprintf(why, whylen, "empty password");
		pt_pwscheme_dummy_verify("");
		return 0;
	}
	rc = getspnam_r(user, &sp, buf, sizeof buf, &res);
	if (rc != 0 && rc != ENOENT) {
		snprintf(why, whylen, "cannot read shadow: %s", strerror(rc));
		OPENSSL_cleanse(buf, sizeof buf);
		return -1;
	}
	if (!res) {
		snprintf(why, whylen, "unknown user");
		pt_pwscheme_dummy_verify_system(password);
		return 0;
	}
	/* "!..." locked, "*" no password: never a match, and said so in the log. */
	if (!res->sp_pwdp || res->sp_pwdp[0] == '!' || res->sp_pwdp[0] == '*' || !res->sp_pwdp[0]) {
		snprintf(why, whylen, "account locked or without password");
		pt_pwscheme_dummy_verify_system(password);
		OPENSSL_cleanse(buf, sizeof buf);
		return 0;
	}
	char stored[1024];
	snprintf(stored, sizeof stored, "{CRYPT}%s", res->sp_pwdp);
	OPENSSL_cleanse(buf, sizeof buf);
	int r = pt_pwscheme_verify(stored, password);
	OPENSSL_cleanse(stored, sizeof stored);
	if (r < 0)
		snprintf(why, whylen, "unusable shadow hash");
	else if (r == 0)
		snprintf(why, whylen, "password mismatch");
	return r;
}
