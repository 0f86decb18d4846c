/* Test helper: a throwaway self-signed certificate made with OpenSSL's
 * API at run time, so no key is ever committed. */
#ifndef POSTERN_TESTCERT_H
#define POSTERN_TESTCERT_H

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

static inline char *
bio_string(BIO *b)
{
	char *p, *s;
	long n = BIO_get_mem_data(b, &p);

	s = malloc((size_t)n + 1);
	memcpy(s, p, (size_t)n);
	s[n] = '\0';
	return s;
}

/* A throwaway self-signed P-256 certificate for CN=localhost. */
static inline void
make_cert(char **cert, char **key)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;
	BIO *b;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, k);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509_sign(x, k, EVP_sha256());
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(b, x);
	*cert = bio_string(b);
	BIO_free(b);
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
	*key = bio_string(b);
	BIO_free(b);
	X509_free(x);
	EVP_PKEY_free(k);
}

#endif
