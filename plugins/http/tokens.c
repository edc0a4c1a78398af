/*
 * plugins/http/tokens.c — the bearer tokens that let a vendor's system post events to the
 * http plugin's ingress, one or more per named client, each optionally limited to some
 * event types and to some sources (the `source` values it owns, as a CURVE client's
 * `sources:`); and the secret file of the webhook's own token.
 *
 * A tokens file is a secret: it is refused unless only its owner may read it (mode 0600 or
 * 0400), like ssh refuses a private key others can read. Tokens are kept only as SHA-256
 * digests, and a presented token is compared with every digest by CRYPTO_memcmp, looking
 * at all of them whatever matched, so the time a check takes tells nothing about any
 * token. No function here logs or returns a token.
 */
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#define TOKENS_MIN_LEN 16
#define TOKENS_MAX_FILE (1u << 20)

struct tokens_client {
	char *name;
	unsigned char digest[SHA256_DIGEST_LENGTH];
	char **types;   /* NULL-terminated patterns; NULL: any type */
	char **sources; /* NULL-terminated source patterns; NULL: any source */
};

/* A client's token bucket for client_rate (tokens_client_take). */
typedef struct bucket {
	double tokens;
	int64_t at_ms;
	bool used;
} bucket_t;

struct tokens {
	tokens_client_t *clients;
	size_t n;
	bucket_t *buckets; /* one per line; a client's first line holds its bucket */
};

/* Reads a secret file after checking who may read it. Returns 0 and a malloc'd, NUL-ended
 * *out (its length in *len), or KANAL_ECONFIG / KANAL_EIO with why filled. */
static int s_read_private(const char *path, const char *what, char **out, size_t *len, char *why,
			  size_t why_size)
{
	struct stat st;
	char *buf = NULL;
	size_t used = 0;
	int fd;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ELOOP)
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, why_size, "%s %s cannot be read: %s", what, path, strerror(errno));
		return errno == ENOENT ? KANAL_ECONFIG : KANAL_EIO;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(why, why_size, "%s %s: %s", what, path, strerror(errno));
		close(fd);
		return KANAL_EIO;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, why_size, "%s %s is not a regular file", what, path);
		close(fd);
		return KANAL_ECONFIG;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(why, why_size,
			 "%s %s may be read or written by group or others (mode %04o): it holds "
			 "secrets, so its mode must be 0600 or 0400 (chmod 600 %s)",
			 what, path, (unsigned)(st.st_mode & 07777), path);
		close(fd);
		return KANAL_ECONFIG;
	}
	if ((size_t)st.st_size > TOKENS_MAX_FILE) {
		snprintf(why, why_size, "%s %s is larger than %u bytes", what, path,
			 TOKENS_MAX_FILE);
		close(fd);
		return KANAL_ECONFIG;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		snprintf(why, why_size, "out of memory");
		return KANAL_ENOMEM;
	}
	while (used < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + used, (size_t)st.st_size - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	buf[used] = '\0';
	*out = buf;
	*len = used;
	return 0;
}

/* Wipes and frees a buffer that held secrets. */
static void s_wipe_free(char *buf, size_t len)
{
	if (!buf)
		return;
	OPENSSL_cleanse(buf, len);
	free(buf);
}

static void s_client_free(tokens_client_t *c)
{
	free(c->name);
	for (size_t i = 0; c->types && c->types[i]; i++)
		free(c->types[i]);
	free(c->types);
	for (size_t i = 0; c->sources && c->sources[i]; i++)
		free(c->sources[i]);
	free(c->sources);
	OPENSSL_cleanse(c->digest, sizeof c->digest);
}

void tokens_destroy(tokens_t **tokens_p)
{
	tokens_t *t = tokens_p ? *tokens_p : NULL;

	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		s_client_free(&t->clients[i]);
	free(t->clients);
	free(t->buckets);
	free(t);
	*tokens_p = NULL;
}

size_t tokens_count(const tokens_t *tokens)
{
	return tokens ? tokens->n : 0;
}

/* Checks a type pattern: dot-separated tokens of [a-z0-9_-], '*' or a final '>'. */
static bool s_pattern_ok(const char *p)
{
	const char *tok = p;

	if (!*p)
		return false;
	for (;; p++) {
		if (*p == '.' || *p == '\0') {
			size_t n = (size_t)(p - tok);
			if (n == 0)
				return false;
			if (memchr(tok, '*', n) && n != 1)
				return false;
			if (memchr(tok, '>', n) && (n != 1 || *p != '\0'))
				return false;
			if (*p == '\0')
				return true;
			tok = p + 1;
		} else if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) &&
			   *p != '_' && *p != '-' && *p != '*' && *p != '>') {
			return false;
		}
	}
}

/* Checks a source pattern: printable ASCII without blanks (a URI-reference with '*'). */
static bool s_source_pattern_ok(const char *p)
{
	if (!*p)
		return false;
	for (; *p; p++)
		if (*p <= ' ' || *p >= 0x7F)
			return false;
	return true;
}

/* Splits "a,b,c" into a NULL-terminated list of patterns, each accepted by ok. Returns NULL
 * and sets *bad to the first invalid pattern's text (malloc'd) or leaves it NULL when out
 * of memory. */
static char **s_split(const char *text, bool (*ok)(const char *), char **bad)
{
	size_t n = 1, k = 0;
	char **list;
	const char *p = text;

	*bad = NULL;
	for (const char *q = text; *q; q++)
		n += *q == ',';
	list = calloc(n + 1, sizeof *list);
	if (!list)
		return NULL;
	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char *item = strndup(p, len);

		if (!item || !ok(item)) {
			*bad = item;
			goto fail;
		}
		list[k++] = item;
		p += len + (end ? 1 : 0);
	}
	if (k == 0) {
		*bad = strdup("");
		goto fail;
	}
	return list;
fail:
	for (size_t i = 0; i < k; i++)
		free(list[i]);
	free(list);
	return NULL;
}

int tokens_load(const char *path, tokens_t **out, char *why, size_t why_size)
{
	tokens_t *t = NULL;
	char *text = NULL, *line, *next;
	size_t len = 0, cap = 0;
	int rc, lineno = 0;

	*out = NULL;
	rc = s_read_private(path, "tokens_file", &text, &len, why, why_size);
	if (rc < 0)
		return rc;
	rc = KANAL_ECONFIG;
	if (!(t = calloc(1, sizeof *t))) {
		rc = KANAL_ENOMEM;
		goto fail;
	}
	for (line = text; line; line = next) {
		char *fields[5] = { NULL, NULL, NULL, NULL, NULL };
		const char *types = NULL, *sources = NULL;
		char *p = line, *hash;
		size_t nf = 0;
		tokens_client_t *c;

		lineno++;
		if ((next = strchr(line, '\n')))
			*next++ = '\0';
		hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		while (nf < 5) {
			while (*p == ' ' || *p == '\t' || *p == '\r')
				p++;
			if (!*p)
				break;
			fields[nf++] = p;
			while (*p && *p != ' ' && *p != '\t' && *p != '\r')
				p++;
			if (*p)
				*p++ = '\0';
		}
		if (nf == 0)
			continue;
		/* After the token: types=…, sources=…, or (as before sources existed) a bare
		 * list of types. */
		for (size_t f = 2; f < nf; f++) {
			const char **slot = !strncmp(fields[f], "sources=", 8) ? &sources : &types;
			const char *value = fields[f] + (slot == &sources                   ? 8
							 : !strncmp(fields[f], "types=", 6) ? 6
											    : 0);
			if (*slot) {
				nf = 5; /* the same field twice */
				break;
			}
			*slot = value;
		}
		if (nf < 2 || nf > 4) {
			snprintf(why, why_size,
				 "tokens_file %s: line %d: expected 'client-name token "
				 "[types=type-pattern,…] [sources=source-pattern,…]'",
				 path, lineno);
			goto fail;
		}
		if (strlen(fields[1]) < TOKENS_MIN_LEN) {
			snprintf(why, why_size,
				 "tokens_file %s: line %d: the token of client '%s' is shorter "
				 "than %d "
				 "characters; make one with: openssl rand -hex 32",
				 path, lineno, fields[0], TOKENS_MIN_LEN);
			goto fail;
		}
		if (t->n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			tokens_client_t *nc = realloc(t->clients, ncap * sizeof *nc);
			if (!nc) {
				rc = KANAL_ENOMEM;
				goto fail;
			}
			t->clients = nc;
			cap = ncap;
		}
		c = &t->clients[t->n];
		memset(c, 0, sizeof *c);
		SHA256((const unsigned char *)fields[1], strlen(fields[1]), c->digest);
		for (size_t i = 0; i < t->n; i++) {
			if (!CRYPTO_memcmp(t->clients[i].digest, c->digest, sizeof c->digest)) {
				snprintf(why, why_size,
					 "tokens_file %s: line %d: client '%s' has the same token "
					 "as "
					 "client '%s': every token must be different",
					 path, lineno, fields[0], t->clients[i].name);
				s_client_free(c);
				goto fail;
			}
		}
		if (!(c->name = strdup(fields[0]))) {
			rc = KANAL_ENOMEM;
			goto fail;
		}
		if (types || sources) {
			char *bad = NULL;
			if ((types && !(c->types = s_split(types, s_pattern_ok, &bad))) ||
			    (sources &&
			     !(c->sources = s_split(sources, s_source_pattern_ok, &bad)))) {
				if (bad)
					snprintf(
						why, why_size,
						"tokens_file %s: line %d: '%s' is not a %s", path,
						lineno, bad,
						types && !c->types
							? "type pattern (dotted lower-case tokens, "
							  "'*' "
							  "for one token, a final '>' for the rest)"
							: "source pattern (a URI-reference such as "
							  "/vendors/acme/* without blanks; '*' is "
							  "any run "
							  "of characters)");
				else
					rc = KANAL_ENOMEM;
				free(bad);
				s_client_free(c);
				goto fail;
			}
		}
		t->n++;
	}
	if (t->n == 0) {
		snprintf(why, why_size,
			 "tokens_file %s names no client: add lines "
			 "'client-name token'",
			 path);
		goto fail;
	}
	s_wipe_free(text, len);
	*out = t;
	return 0;
fail:
	if (rc == KANAL_ENOMEM)
		snprintf(why, why_size, "tokens_file %s: out of memory", path);
	s_wipe_free(text, len);
	tokens_destroy(&t);
	return rc;
}

const tokens_client_t *tokens_check(const tokens_t *tokens, const char *presented, size_t len)
{
	unsigned char digest[SHA256_DIGEST_LENGTH];
	const tokens_client_t *found = NULL;

	if (!tokens)
		return NULL;
	SHA256((const unsigned char *)presented, len, digest);
	/* Every entry is compared: the loop's time does not depend on which one matched. */
	for (size_t i = 0; i < tokens->n; i++) {
		int differs = CRYPTO_memcmp(digest, tokens->clients[i].digest, sizeof digest);
		if (!differs)
			found = &tokens->clients[i];
	}
	OPENSSL_cleanse(digest, sizeof digest);
	return found;
}

const char *tokens_client_name(const tokens_client_t *client)
{
	return client ? client->name : NULL;
}

bool tokens_type_matches(const char *pattern, const char *type)
{
	const char *p = pattern, *t = type;

	for (;;) {
		const char *pe = strchr(p, '.'), *te = strchr(t, '.');
		size_t pl = pe ? (size_t)(pe - p) : strlen(p);
		size_t tl = te ? (size_t)(te - t) : strlen(t);

		if (pl == 1 && *p == '>')
			return tl > 0;
		if (!(pl == 1 && *p == '*') && (pl != tl || memcmp(p, t, pl)))
			return false;
		if (!pe || !te)
			return !pe && !te;
		p = pe + 1;
		t = te + 1;
	}
}

bool tokens_client_allows(const tokens_client_t *client, const char *type)
{
	if (!client || !client->types)
		return true;
	for (size_t i = 0; client->types[i]; i++)
		if (tokens_type_matches(client->types[i], type))
			return true;
	return false;
}

bool tokens_client_owns(const tokens_client_t *client, const char *source)
{
	if (!client || !client->sources)
		return true;
	for (size_t i = 0; client->sources[i]; i++)
		if (kanal_source_matches(client->sources[i], source))
			return true;
	return false;
}

int64_t tokens_client_take(tokens_t *tokens, const tokens_client_t *client, size_t n,
			   double per_second, double burst, int64_t now_ms)
{
	size_t i = 0;
	bucket_t *b;

	if (!tokens || !client || per_second <= 0)
		return 0;
	if (!tokens->buckets && !(tokens->buckets = calloc(tokens->n, sizeof *tokens->buckets)))
		return 0; /* out of memory: no limit rather than no service */
	/* One bucket per client name, whichever of its tokens it used. */
	while (i < tokens->n && strcmp(tokens->clients[i].name, client->name))
		i++;
	if (i == tokens->n)
		return 0;
	b = &tokens->buckets[i];
	if (burst < 1)
		burst = 1;
	if (!b->used)
		*b = (bucket_t){ burst, now_ms, true };
	if (now_ms > b->at_ms) {
		b->tokens += (double)(now_ms - b->at_ms) * per_second / 1000.0;
		if (b->tokens > burst)
			b->tokens = burst;
		b->at_ms = now_ms;
	}
	if (b->tokens >= (double)n) {
		b->tokens -= (double)n;
		return 0;
	}
	/* Never enough when a request holds more events than the burst: wait for a full one. */
	return (int64_t)(((double)n > burst ? burst : (double)n - b->tokens) * 1000.0 /
			 per_second) +
	       1;
}
