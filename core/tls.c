/* TLS server context: certificate and key from a path or inline PEM,
 * TLS 1.2 minimum, settings that keep idle TLS sessions small. */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config_int.h"
#include "conn_int.h"
#include "net.h"

static SSL_CTX *tls_ctx;

const char *
pt_tls_error_text(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	if (len == 0)
		return buf;
	buf[0] = '\0';
	if (e) {
		const char *reason = ERR_reason_error_string(e);

		if (reason)
			snprintf(buf, len, "%s", reason);
		else
			ERR_error_string_n(e, buf, len);
	}
	ERR_clear_error();
	return buf;
}

static int
is_pem_text(const char *v)
{
	return strncmp(v, "-----BEGIN", 10) == 0;
}

/* Leaf certificate then any chain certificates, from PEM text. */
static int
load_cert_pem(SSL_CTX *ctx, const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509 *x;
	int ok = 0;

	if (!bio)
		return 0;
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (x && SSL_CTX_use_certificate(ctx, x) == 1) {
		X509 *extra;

		ok = 1;
		while ((extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
			if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
				X509_free(extra);
				ok = 0;
				break;
			}
		}
		/* Running out of certificates ends the loop with a benign error. */
		if (ok)
			ERR_clear_error();
	}
	X509_free(x);
	BIO_free(bio);
	return ok;
}

/* Key from PEM text or a file, checked against the certificate first so
 * a mismatch gets its own sentence. Returns 1, 0 (unreadable) or -1
 * (does not match). */
static int
load_key(SSL_CTX *ctx, const char *key)
{
	BIO *bio = is_pem_text(key) ? BIO_new_mem_buf(key, -1) : BIO_new_file(key, "r");
	EVP_PKEY *k;
	X509 *cert = SSL_CTX_get0_certificate(ctx);
	int ok = 0;

	if (!bio)
		return 0;
	k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	if (k && cert && EVP_PKEY_eq(X509_get0_pubkey(cert), k) != 1)
		ok = -1;
	else if (k && SSL_CTX_use_PrivateKey(ctx, k) == 1)
		ok = 1;
	EVP_PKEY_free(k);
	BIO_free(bio);
	return ok;
}

static const char *
source_name(const char *v)
{
	return is_pem_text(v) ? "inline PEM" : v;
}

int
pt_tls_configure_pem(const char *cert, const char *key, const char *min_proto,
                     char *err, size_t errlen)
{
	SSL_CTX *ctx;
	int version = TLS1_2_VERSION;
	char why[256];

	if (!min_proto || !*min_proto || strcmp(min_proto, "TLSv1.2") == 0) {
		version = TLS1_2_VERSION;
	} else if (strcmp(min_proto, "TLSv1.3") == 0) {
		version = TLS1_3_VERSION;
	} else {
		snprintf(err, errlen, "ssl_min_protocol: unsupported value \"%s\" (use TLSv1.2 or TLSv1.3)",
		         min_proto);
		return -1;
	}
	if (!cert || !*cert || !key || !*key) {
		snprintf(err, errlen, "%s is set but %s is not: both are needed for TLS",
		         cert && *cert ? "ssl_cert" : "ssl_key", cert && *cert ? "ssl_key" : "ssl_cert");
		return -1;
	}
	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		snprintf(err, errlen, "cannot create TLS context: %s", pt_tls_error_text(why, sizeof why));
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, version);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	                    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* The output buffer may be compacted between retries of one write;
	 * RELEASE_BUFFERS gives OpenSSL's record buffers back while idle. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	                 SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

	if (!(is_pem_text(cert) ? load_cert_pem(ctx, cert)
	                        : SSL_CTX_use_certificate_chain_file(ctx, cert) == 1)) {
		snprintf(err, errlen, "ssl_cert: cannot load certificate from %s: %s", source_name(cert),
		         pt_tls_error_text(why, sizeof why));
		SSL_CTX_free(ctx);
		return -1;
	}
	switch (load_key(ctx, key)) {
	case 1:
		break;
	case -1:
		snprintf(err, errlen, "ssl_key (%s) does not match the certificate in ssl_cert (%s)",
		         source_name(key), source_name(cert));
		SSL_CTX_free(ctx);
		return -1;
	default:
		snprintf(err, errlen, "ssl_key: cannot load private key from %s: %s", source_name(key),
		         pt_tls_error_text(why, sizeof why));
		SSL_CTX_free(ctx);
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "ssl_key does not match the certificate in ssl_cert: %s",
		         pt_tls_error_text(why, sizeof why));
		SSL_CTX_free(ctx);
		return -1;
	}
	/* Sessions already running keep a reference to the old context. */
	SSL_CTX_free(tls_ctx);
	tls_ctx = ctx;
	return 0;
}

/* Read a parameter only when the loaded config declares it, so this file
 * works whichever owner (core or a module) declares the TLS names. */
static const char *
conf_str_opt(const struct pt_config *conf, const char *name)
{
	if (!pt_config_owner(conf, name))
		return NULL;
	return pt_conf_str(conf, name);
}

int
pt_tls_configure(const struct pt_config *conf, char *err, size_t errlen)
{
	const char *cert = conf_str_opt(conf, "ssl_cert");
	const char *key = conf_str_opt(conf, "ssl_key");
	const char *min = conf_str_opt(conf, "ssl_min_protocol");

	if ((!cert || !*cert) && (!key || !*key)) {
		pt_tls_clear();
		return 0;
	}
	return pt_tls_configure_pem(cert, key, min, err, errlen);
}

int
pt_tls_enabled(void)
{
	return tls_ctx != NULL;
}

void
pt_tls_clear(void)
{
	SSL_CTX_free(tls_ctx);
	tls_ctx = NULL;
}

SSL *
pt_tls_new_ssl(int fd)
{
	SSL *ssl;

	if (!tls_ctx)
		return NULL;
	ssl = SSL_new(tls_ctx);
	if (!ssl)
		return NULL;
	if (SSL_set_fd(ssl, fd) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_accept_state(ssl);
	return ssl;
}
