/*
 * tests/util/testca.c — the test CA of testca.h: RSA keys and X.509 certificates made with
 * libcrypto, written as PEM (and one PKCS#12) into the test's temporary folder.
 */
#include "testca.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define DAY (24L * 3600)

static FILE *s_open(const char *dir, const char *name, mode_t mode)
{
	char path[1024];
	int fd;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	return fd < 0 ? NULL : fdopen(fd, "w");
}

static void s_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v;
	X509_EXTENSION *e;

	X509V3_set_ctx(&v, issuer, x, NULL, NULL, 0);
	if ((e = X509V3_EXT_conf_nid(NULL, &v, nid, value))) {
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
}

/* A certificate for key, valid from now+from_s to now+to_s, signed by ca_key (self-signed
 * when ca is NULL). kind: 'a' authority, 's' server, 'c' client. */
static X509 *s_cert(EVP_PKEY *key, const char *cn, long from_s, long to_s, X509 *ca,
		    EVP_PKEY *ca_key, char kind)
{
	static long serial = 1;
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++ + (long)getpid() * 100);
	X509_gmtime_adj(X509_getm_notBefore(x), from_s);
	X509_gmtime_adj(X509_getm_notAfter(x), to_s);
	X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"kanal test", -1,
				   -1, 0);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, ca ? X509_get_subject_name(ca) : n);
	X509_set_pubkey(x, key);
	if (kind == 'a') {
		s_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
		s_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		s_ext(x, ca, NID_basic_constraints, "CA:FALSE");
		s_ext(x, ca, NID_key_usage, "critical,digitalSignature,keyEncipherment");
		s_ext(x, ca, NID_ext_key_usage, kind == 's' ? "serverAuth" : "clientAuth");
		if (kind == 's')
			s_ext(x, ca, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
	}
	X509_sign(x, ca_key ? ca_key : key, EVP_sha256());
	X509_NAME_free(n);
	return x;
}

static int s_write(const char *dir, const char *name, X509 *x, EVP_PKEY *key)
{
	char file[256];
	FILE *f;
	int ok;

	snprintf(file, sizeof file, "%s.pem", name);
	if (!(f = s_open(dir, file, 0644)))
		return -1;
	ok = PEM_write_X509(f, x);
	fclose(f);
	if (!key)
		return ok ? 0 : -1;
	snprintf(file, sizeof file, "%s.key", name);
	if (!(f = s_open(dir, file, 0600)))
		return -1;
	ok = ok && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	return ok ? 0 : -1;
}

/* A key and certificate signed by ca, written as name.pem and name.key. */
static int s_issue(const char *dir, const char *name, const char *cn, long from_s, long to_s,
		   X509 *ca, EVP_PKEY *ca_key, char kind, X509 **x_out, EVP_PKEY **key_out)
{
	EVP_PKEY *key = EVP_RSA_gen(2048);
	X509 *x = key ? s_cert(key, cn, from_s, to_s, ca, ca_key, kind) : NULL;
	int rc = x ? s_write(dir, name, x, key) : -1;

	if (x_out && !rc) {
		*x_out = x;
		*key_out = key;
		return 0;
	}
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

int testca_make(const char *dir)
{
	EVP_PKEY *ca_key = EVP_RSA_gen(2048), *other_key = EVP_RSA_gen(2048), *ck = NULL;
	X509 *ca = ca_key ? s_cert(ca_key, "kanal test CA", -DAY, 30 * DAY, NULL, NULL, 'a') : NULL;
	X509 *other =
		other_key ? s_cert(other_key, "someone else's CA", -DAY, 30 * DAY, NULL, NULL, 'a')
			  : NULL;
	X509 *cx = NULL;
	PKCS12 *p12 = NULL;
	FILE *f;
	int rc = -1;

	if (!ca || !other || s_write(dir, "ca", ca, NULL) ||
	    s_issue(dir, "server", "127.0.0.1", -DAY, 30 * DAY, ca, ca_key, 's', NULL, NULL) ||
	    s_issue(dir, "client", "kanal test kommune - FOCES", -DAY, 30 * DAY, ca, ca_key, 'c',
		    &cx, &ck) ||
	    s_issue(dir, "expired", "kanal test kommune - expired", -30 * DAY, -DAY, ca, ca_key,
		    'c', NULL, NULL) ||
	    s_issue(dir, "future", "kanal test kommune - future", DAY, 30 * DAY, ca, ca_key, 'c',
		    NULL, NULL) ||
	    s_issue(dir, "stranger", "kanal test kommune - stranger", -DAY, 30 * DAY, other,
		    other_key, 'c', NULL, NULL))
		goto done;
	p12 = PKCS12_create("test-p12-pass", "kanal test", ck, cx, NULL, 0, 0, 0, 0, 0);
	if (!p12 || !(f = s_open(dir, "client.p12", 0600)))
		goto done;
	rc = i2d_PKCS12_fp(f, p12) ? 0 : -1;
	fclose(f);
	if (rc || !(f = s_open(dir, "client.pass", 0600)))
		goto done;
	rc = fputs("test-p12-pass\n", f) >= 0 ? 0 : -1;
	fclose(f);
done:
	if (rc)
		fprintf(stderr, "testca: cannot make the test certificates in %s\n", dir);
	PKCS12_free(p12);
	X509_free(cx);
	EVP_PKEY_free(ck);
	X509_free(ca);
	X509_free(other);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(other_key);
	return rc;
}
