/*
 * sdk/pseudonym.c — pseudonyms for persons: "person:" + HMAC-SHA256 of the CPR number with a
 * key only the municipality holds. The same person gets the same pseudonym everywhere the
 * key is shared, so events can be correlated (subject) and calendars addressed without the
 * number itself ever leaving `data`. HMAC from libcrypto (OpenSSL).
 */
#include "kanal/cpr.h"
#include "kanal/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define KEY_MIN 16
#define KEY_MAX 4096

struct kanal_pseudonym_key {
	size_t len;
	unsigned char bytes[];
};

/* Each reason names the file in its text (err's source is left empty), as a line of
 * kanald's log or a plugin's error reads best. */
#define KEY_ERROR(err, ...) kanal_error_set((err), NULL, 0, 0, NULL, __VA_ARGS__)

int kanal_pseudonym_key_load(const char *path, kanal_pseudonym_key_t **out, kanal_error_t *err)
{
	kanal_pseudonym_key_t *key;
	unsigned char buf[KEY_MAX + 1];
	struct stat st;
	ssize_t n;
	int fd;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		KEY_ERROR(err, "%s: cannot open the pseudonym key: %s", path, strerror(errno));
		return KANAL_EIO;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		KEY_ERROR(err, "%s: the pseudonym key is not a regular file", path);
		close(fd);
		return KANAL_ECONFIG;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		KEY_ERROR(err,
			  "%s: the pseudonym key may be read or changed by others (mode %04o); "
			  "make it 0600 (chmod 600 %s)",
			  path, (unsigned)(st.st_mode & 07777), path);
		close(fd);
		return KANAL_ECONFIG;
	}
	n = read(fd, buf, sizeof buf);
	close(fd);
	if (n < 0) {
		KEY_ERROR(err, "%s: cannot read the pseudonym key: %s", path, strerror(errno));
		return KANAL_EIO;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (n < KEY_MIN || n > KEY_MAX) {
		KEY_ERROR(err, "%s: a pseudonym key must be %d to %d bytes, not %zd", path, KEY_MIN,
			  KEY_MAX, n);
		OPENSSL_cleanse(buf, sizeof buf);
		return KANAL_ECONFIG;
	}
	key = malloc(sizeof *key + (size_t)n);
	if (!key) {
		OPENSSL_cleanse(buf, sizeof buf);
		KEY_ERROR(err, "%s: out of memory reading the pseudonym key", path);
		return KANAL_ENOMEM;
	}
	key->len = (size_t)n;
	memcpy(key->bytes, buf, (size_t)n);
	OPENSSL_cleanse(buf, sizeof buf);
	*out = key;
	return 0;
}

/* The SDK 1.0 signature, kept under its old symbol for plugins built against it (the
 * header binds kanal_pseudonym_key_load to kanal_pseudonym_key_load_v1_1). */
int kanal__pseudonym_key_load_v1_0(const char *path, kanal_pseudonym_key_t **out, char *why,
				   size_t why_size) __asm__("kanal_pseudonym_key_load")
	__attribute__((visibility("default")));
int kanal__pseudonym_key_load_v1_0(const char *path, kanal_pseudonym_key_t **out, char *why,
				   size_t why_size)
{
	kanal_error_t err;
	int rc;

	kanal_error_clear(&err);
	rc = kanal_pseudonym_key_load(path, out, &err);
	if (why && why_size)
		snprintf(why, why_size, "%s", rc ? err.text : "");
	return rc;
}

void kanal_pseudonym_key_destroy(kanal_pseudonym_key_t **key_p)
{
	kanal_pseudonym_key_t *key = key_p ? *key_p : NULL;

	if (!key)
		return;
	OPENSSL_cleanse(key->bytes, key->len);
	free(key);
	*key_p = NULL;
}

int kanal_cpr_pseudonym(const kanal_pseudonym_key_t *key, const char *text, char *buf, size_t size)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	kanal_cpr_t cpr;

	if (size)
		buf[0] = '\0';
	if (!key || size < KANAL_PSEUDONYM_SIZE || kanal_cpr_parse(text, &cpr, NULL) != 0)
		return KANAL_EINVAL;
	if (!HMAC(EVP_sha256(), key->bytes, (int)key->len, (const unsigned char *)cpr.digits, 10,
		  mac, &mac_len) ||
	    mac_len != 32)
		return KANAL_EINVAL;
	memcpy(buf, "person:", 7);
	for (unsigned i = 0; i < mac_len; i++) {
		buf[7 + 2 * i] = hex[mac[i] >> 4];
		buf[8 + 2 * i] = hex[mac[i] & 15];
	}
	buf[7 + 2 * mac_len] = '\0';
	OPENSSL_cleanse(&cpr, sizeof cpr);
	return 0;
}
