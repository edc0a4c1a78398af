/*
 * plugins/common/kc_cert.h — the municipality's function certificate (OCES3), the one
 * identity every Serviceplatformen call uses: the TLS client certificate of each HTTPS
 * call, the proof key (UseKey) of each token request, and the key that signs SOAP
 * messages. Loaded once from private files — a PKCS#12 bundle, or a PEM certificate and
 * its PEM key — and then handed to libcurl in memory, so the key never lands anywhere else.
 *
 * Not part of the public SDK: linked into each bundled plugin as a static library
 * (build/lib/libkanalconn.a). Functions are prefixed kc_ ("kanal connector").
 */
#ifndef KANAL_PLUGINS_KC_CERT_H
#define KANAL_PLUGINS_KC_CERT_H

#include <stddef.h>
#include <stdint.h>

#include <kanal/kanal.h>

#include "kc_http.h"

typedef struct kc_cert kc_cert_t;

/* Where the certificate is. Either pkcs12_file, or cert_file and key_file (key_file NULL:
 * the key is in cert_file). password_file holds the PKCS#12 password or the PEM key's
 * passphrase on its first line (NULL: none). The files that hold the key and the password
 * must be private (mode 0600 or 0400), as kc_secret_read requires. The option names are
 * used in errors: keep them as the plugin's options table spells them. */
typedef struct kc_cert_conf {
	const char *pkcs12_file;   /* option certificate_p12 */
	const char *cert_file;     /* option certificate */
	const char *key_file;      /* option certificate_key */
	const char *password_file; /* option certificate_password_file */
} kc_cert_conf_t;

/* The options-table entries of the four options above, bound to a kc_cert_conf_t `member`
 * of the plugin's `state_type` (as KC_HTTP_OPT_* do for the HTTP options): one name and one
 * help text in every connector that takes the municipality's function certificate. */
#define KC_CERT_OPTS(state_type, member)                                                           \
	{ .name = "certificate_p12",                                                               \
	  .type = KANAL_OPT_PATH,                                                                  \
	  KANAL_OPT_AT(state_type, member.pkcs12_file),                                            \
	  .help = "The municipality's function certificate (OCES3) as PKCS#12 (mode 0600): "       \
		  "the TLS client certificate, and the key SF1514 tokens are bound to." },         \
		{ .name = "certificate",                                                           \
		  .type = KANAL_OPT_PATH,                                                          \
		  KANAL_OPT_AT(state_type, member.cert_file),                                      \
		  .help = "The function certificate as PEM (instead of certificate_p12)." },       \
		{ .name = "certificate_key",                                                       \
		  .type = KANAL_OPT_PATH,                                                          \
		  KANAL_OPT_AT(state_type, member.key_file),                                       \
		  .help = "The PEM private key of certificate (mode 0600); unset: in "             \
			  "certificate." },                                                        \
	{                                                                                          \
		.name = "certificate_password_file", .type = KANAL_OPT_PATH,                       \
		KANAL_OPT_AT(state_type, member.password_file),                                    \
		.help = "File (mode 0600) whose first line is the PKCS#12 password or the key's "  \
			"passphrase."                                                              \
	}

/* Loads the certificate and its private key, checks that they belong together, and keeps
 * what the calls need: the DER certificate as one line of base64, and both as PEM text
 * for libcurl. The password is wiped after use. Does not check the validity period (see
 * kc_cert_check_time): an expired certificate still loads, so that the error can come
 * when it matters and say what to do. Returns 0 and *out, or KANAL_ECONFIG (a file that
 * cannot be read or is not private, a wrong password, a key that does not match) with err
 * naming the option and the file — never the password — or KANAL_ENOMEM.
 * Ownership: borrows conf; *out is the caller's (kc_cert_destroy); fills err. */
int kc_cert_load(const kc_cert_conf_t *conf, kc_cert_t **out, kanal_error_t *err);

/* Frees the certificate, wiping its key material. Accepts NULL; nulls *cert_p.
 * Ownership: takes *cert_p. */
void kc_cert_destroy(kc_cert_t **cert_p);

/* Checks that the certificate is valid at now_ms (kanal_wall_ms), allowing skew_ms either
 * way for clocks that disagree. Returns 0, or KANAL_ECONFIG with err saying whether it
 * expired or is not yet valid, since when, and what to do (renew it in KOMBIT's
 * administration module, then replace the file). Ownership: borrows cert; fills err. */
int kc_cert_check_time(const kc_cert_t *cert, int64_t now_ms, int64_t skew_ms, kanal_error_t *err);

/* The validity period, in ms since the epoch. Ownership: none (plain values). */
int64_t kc_cert_not_before_ms(const kc_cert_t *cert);
int64_t kc_cert_not_after_ms(const kc_cert_t *cert);

/* The certificate as DER in base64 on one line without PEM armour: what the STS wants as
 * UseKey and WS-Security as a BinarySecurityToken. Ownership: borrowed from cert. */
const char *kc_cert_der_base64(const kc_cert_t *cert);

/* The certificate's subject ("CN=…,O=…"), for errors and logs. Ownership: borrowed. */
const char *kc_cert_subject(const kc_cert_t *cert);

/* Points opts' in-memory client certificate and key (client_cert_pem, client_key_pem) at
 * this certificate, for mutual TLS; kc_http_new copies them, so cert may go afterwards.
 * Ownership: borrows cert; opts' strings are borrowed from it until kc_http_new. */
void kc_cert_http_opts(const kc_cert_t *cert, kc_http_opts_t *opts);

/* Signs data with the certificate's key, RSA PKCS#1 v1.5 with SHA-256 (XML-DSig's
 * rsa-sha256), and returns the signature in base64 on one line. Returns 0 and *b64_out
 * (malloc'd), KANAL_EINVAL when the key is not RSA, or KANAL_ENOMEM.
 * Ownership: borrows cert and data; *b64_out is the caller's (free). */
int kc_cert_sign_sha256(const kc_cert_t *cert, const void *data, size_t len, char **b64_out,
			kanal_error_t *err);

/* Base64 of len bytes on one line (no newlines), malloc'd; NULL when out of memory.
 * Ownership: borrows data; the result is the caller's (free). */
char *kc_base64(const void *data, size_t len);

/* Decodes base64 (whitespace ignored). Returns a malloc'd buffer of *len bytes with a NUL
 * after them, or NULL when the text is not base64 or memory ran out.
 * Ownership: borrows text; the result is the caller's (free). */
unsigned char *kc_base64_decode(const char *text, size_t *len);

#endif
