/*
 * plugins/common/kc_cert.c — loads the function certificate with OpenSSL from private
 * files (PKCS#12, or PEM certificate + key), keeps it as OpenSSL objects for signing and
 * as PEM text for libcurl's in-memory client certificate, and says in plain words when it
 * cannot be used: unreadable, not private, wrong password, key not matching, expired.
 */
#include "kc_cert.h"
#include "kc_files.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include <kanal/time.h>

struct kc_cert {
	X509 *x509;
	EVP_PKEY *key;
	char *der_b64;
	char *cert_pem;
	char *key_pem; /* unencrypted; wiped on destroy */
	char subject[256];
	int64_t not_before_ms, not_after_ms;
};

static void s_wipe_free(char *p, size_t len)
{
	if (p) {
		OPENSSL_cleanse(p, len);
		free(p);
	}
}

char *kc_base64(const void *data, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	if (out)
		EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

unsigned char *kc_base64_decode(const char *text, size_t *len)
{
	size_t n = strlen(text), k = 0;
	char *clean = malloc(n + 1);
	unsigned char *out = NULL;
	int got;

	if (!clean)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (text[i] != ' ' && text[i] != '\n' && text[i] != '\r' && text[i] != '\t')
			clean[k++] = text[i];
	clean[k] = '\0';
	if (k % 4 || !(out = malloc(k / 4 * 3 + 1)))
		goto done;
	got = EVP_DecodeBlock(out, (unsigned char *)clean, (int)k);
	if (got < 0) {
		free(out);
		out = NULL;
		goto done;
	}
	/* EVP_DecodeBlock counts the padding as data. */
	while (k > 0 && clean[k - 1] == '=' && got > 0) {
		k--;
		got--;
	}
	out[got] = '\0';
	*len = (size_t)got;
done:
	free(clean);
	return out;
}

static int64_t s_asn1_ms(const ASN1_TIME *t)
{
	struct tm tm;

	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm) * 1000;
}

/* The PEM text of what write() writes into a memory BIO, malloc'd. */
static char *s_pem(int (*write)(BIO *, void *), void *obj)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *out = NULL;
	long n;

	if (b && write(b, obj) == 1 && (n = BIO_get_mem_data(b, &data)) > 0 &&
	    (out = malloc((size_t)n + 1))) {
		memcpy(out, data, (size_t)n);
		out[n] = '\0';
		OPENSSL_cleanse(data, (size_t)n);
	}
	BIO_free(b);
	return out;
}

static int s_write_cert(BIO *b, void *x)
{
	return PEM_write_bio_X509(b, x);
}

static int s_write_key(BIO *b, void *k)
{
	return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
}

static const char *s_ssl_error(void)
{
	static __thread char buf[160];
	unsigned long e = ERR_get_error();

	ERR_clear_error();
	if (!e)
		return "not a certificate or key OpenSSL can read";
	ERR_error_string_n(e, buf, sizeof buf);
	return buf;
}

static int s_load_p12(const kc_cert_conf_t *conf, const char *password, kc_cert_t *c,
		      kanal_error_t *err)
{
	char *data = NULL;
	size_t len = 0;
	const unsigned char *p;
	PKCS12 *p12;
	int rc;

	if ((rc = kc_private_file_read("certificate_p12", conf->pkcs12_file, &data, &len, err)))
		return rc;
	p = (const unsigned char *)data;
	p12 = d2i_PKCS12(NULL, &p, (long)len);
	s_wipe_free(data, len);
	if (!p12) {
		kanal_error_set(err, NULL, 0, 0, "certificate_p12",
				"option 'certificate_p12': '%s' is not a PKCS#12 file (%s)",
				conf->pkcs12_file, s_ssl_error());
		return KANAL_ECONFIG;
	}
	rc = PKCS12_parse(p12, password ? password : "", &c->key, &c->x509, NULL);
	PKCS12_free(p12);
	if (rc != 1 || !c->key || !c->x509) {
		kanal_error_set(
			err, NULL, 0, 0, "certificate_p12",
			"option 'certificate_p12': cannot open '%s' (%s): check the password "
			"in certificate_password_file",
			conf->pkcs12_file, s_ssl_error());
		return KANAL_ECONFIG;
	}
	return 0;
}

static int s_load_pem(const kc_cert_conf_t *conf, const char *password, kc_cert_t *c,
		      kanal_error_t *err)
{
	const char *key_path = conf->key_file ? conf->key_file : conf->cert_file;
	const char *key_opt = conf->key_file ? "certificate_key" : "certificate";
	char *cert_text = NULL, *key_text = NULL;
	size_t cert_len = 0, key_len = 0;
	BIO *b;
	int rc;

	if ((rc = kc_file_read(NULL, conf->cert_file, &cert_text, &cert_len)) != 0) {
		kanal_error_set(err, NULL, 0, 0, "certificate",
				"option 'certificate': cannot read '%s': %s", conf->cert_file,
				kanal_strerror(rc));
		return KANAL_ECONFIG;
	}
	b = BIO_new_mem_buf(cert_text, (int)cert_len);
	c->x509 = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	free(cert_text);
	if (!c->x509) {
		kanal_error_set(err, NULL, 0, 0, "certificate",
				"option 'certificate': '%s' holds no PEM certificate (%s)",
				conf->cert_file, s_ssl_error());
		return KANAL_ECONFIG;
	}
	if ((rc = kc_private_file_read(key_opt, key_path, &key_text, &key_len, err)))
		return rc;
	b = BIO_new_mem_buf(key_text, (int)key_len);
	c->key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, (void *)(password ? password : ""))
		   : NULL;
	BIO_free(b);
	s_wipe_free(key_text, key_len);
	if (!c->key) {
		kanal_error_set(err, NULL, 0, 0, key_opt,
				"option '%s': cannot read the private key in '%s' (%s): is it PEM, "
				"and is certificate_password_file right?",
				key_opt, key_path, s_ssl_error());
		return KANAL_ECONFIG;
	}
	return 0;
}

int kc_cert_load(const kc_cert_conf_t *conf, kc_cert_t **out, kanal_error_t *err)
{
	kc_cert_t *c;
	char *password = NULL;
	unsigned char *der = NULL;
	int der_len, rc;

	*out = NULL;
	if (!conf->pkcs12_file == !conf->cert_file) {
		kanal_error_set(err, NULL, 0, 0, "certificate",
				"give the function certificate either as 'certificate_p12' or as "
				"'certificate' (and 'certificate_key'), exactly one of them");
		return KANAL_ECONFIG;
	}
	if (!(c = calloc(1, sizeof *c)))
		return KANAL_ENOMEM;
	if (conf->password_file) {
		size_t len = 0;

		rc = kc_private_file_read("certificate_password_file", conf->password_file,
					  &password, &len, err);
		if (rc)
			goto fail;
		password[strcspn(password, "\r\n")] = '\0';
	}
	rc = conf->pkcs12_file ? s_load_p12(conf, password, c, err)
			       : s_load_pem(conf, password, c, err);
	if (password)
		s_wipe_free(password, strlen(password));
	if (rc)
		goto fail;
	if (X509_check_private_key(c->x509, c->key) != 1) {
		ERR_clear_error();
		kanal_error_set(err, NULL, 0, 0, "certificate",
				"the private key does not belong to the certificate ('%s')",
				conf->pkcs12_file ? conf->pkcs12_file : conf->cert_file);
		rc = KANAL_ECONFIG;
		goto fail;
	}
	X509_NAME_oneline(X509_get_subject_name(c->x509), c->subject, sizeof c->subject);
	c->not_before_ms = s_asn1_ms(X509_get0_notBefore(c->x509));
	c->not_after_ms = s_asn1_ms(X509_get0_notAfter(c->x509));
	rc = KANAL_ENOMEM;
	if ((der_len = i2d_X509(c->x509, &der)) <= 0 || !(c->der_b64 = kc_base64(der, der_len)) ||
	    !(c->cert_pem = s_pem(s_write_cert, c->x509)) ||
	    !(c->key_pem = s_pem(s_write_key, c->key)))
		goto fail;
	OPENSSL_free(der);
	*out = c;
	return 0;
fail:
	OPENSSL_free(der);
	kc_cert_destroy(&c);
	return rc;
}

void kc_cert_destroy(kc_cert_t **cert_p)
{
	kc_cert_t *c = cert_p ? *cert_p : NULL;

	if (!c)
		return;
	X509_free(c->x509);
	EVP_PKEY_free(c->key);
	free(c->der_b64);
	free(c->cert_pem);
	if (c->key_pem)
		s_wipe_free(c->key_pem, strlen(c->key_pem));
	free(c);
	*cert_p = NULL;
}

int kc_cert_check_time(const kc_cert_t *c, int64_t now_ms, int64_t skew_ms, kanal_error_t *err)
{
	char when[KANAL_TIME_RFC3339_SIZE];

	if (now_ms - skew_ms >= c->not_after_ms) {
		kanal_time_rfc3339(c->not_after_ms, when, sizeof when);
		kanal_error_set(err, NULL, 0, 0, "certificate",
				"the function certificate '%s' expired on %s: renew it (OCES3, in "
				"KOMBIT's administration module, on the same IT system), then "
				"replace the certificate file and restart the instance",
				c->subject, when);
		return KANAL_ECONFIG;
	}
	if (now_ms + skew_ms < c->not_before_ms) {
		kanal_time_rfc3339(c->not_before_ms, when, sizeof when);
		kanal_error_set(err, NULL, 0, 0, "certificate",
				"the function certificate '%s' is not valid until %s: check this "
				"machine's clock, or wait until then",
				c->subject, when);
		return KANAL_ECONFIG;
	}
	return 0;
}

int64_t kc_cert_not_before_ms(const kc_cert_t *cert)
{
	return cert->not_before_ms;
}

int64_t kc_cert_not_after_ms(const kc_cert_t *cert)
{
	return cert->not_after_ms;
}

const char *kc_cert_der_base64(const kc_cert_t *cert)
{
	return cert->der_b64;
}

const char *kc_cert_subject(const kc_cert_t *cert)
{
	return cert->subject;
}

void kc_cert_http_opts(const kc_cert_t *cert, kc_http_opts_t *opts)
{
	opts->client_cert_pem = cert->cert_pem;
	opts->client_key_pem = cert->key_pem;
	opts->client_cert = opts->client_key = NULL;
}

int kc_cert_sign_sha256(const kc_cert_t *cert, const void *data, size_t len, char **b64_out,
			kanal_error_t *err)
{
	EVP_MD_CTX *md;
	unsigned char *sig = NULL;
	size_t sig_len = 0;
	int rc = KANAL_ENOMEM;

	*b64_out = NULL;
	if (EVP_PKEY_get_base_id(cert->key) != EVP_PKEY_RSA) {
		kanal_error_set(
			err, NULL, 0, 0, "certificate",
			"the certificate's key is not RSA; Serviceplatformen signs RSA-SHA256");
		return KANAL_EINVAL;
	}
	if (!(md = EVP_MD_CTX_new()))
		return KANAL_ENOMEM;
	if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, cert->key) == 1 &&
	    EVP_DigestSign(md, NULL, &sig_len, data, len) == 1 && (sig = malloc(sig_len)) &&
	    EVP_DigestSign(md, sig, &sig_len, data, len) == 1 &&
	    (*b64_out = kc_base64(sig, sig_len)))
		rc = 0;
	ERR_clear_error();
	EVP_MD_CTX_free(md);
	free(sig);
	return rc;
}
