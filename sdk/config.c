/*
 * sdk/config.c — a plugin instance's options: validation against the plugin's options
 * table, the built kanal_config_t with its getters, and the value parsers they share.
 *
 * kanald (from kanald.yaml) and the test harness (from kanal_harness_option) both turn the
 * options an instance was given into kanal_optval_t records and call kanal__config_build,
 * so a plugin sees the same validation and the same defaults wherever it runs. Errors say
 * where (file:line:col of the key, or of the instance for a missing option), which instance
 * and option, what was expected and what was found — every bad option of the instance, not
 * only the first, so that an operator fixes them in one go. ABI 1.1 tables add bounds (min,
 * max, allowed values), checked here too, and offsets into the plugin's state struct, which
 * kanal_config_bind fills. The loader checks the options table itself with
 * kanal__options_check before a plugin is accepted, using the same parsers for defaults and
 * bounds; it hands the hosts a copy of the table in today's layout, whatever minor the
 * plugin was built with (kanal__options_import).
 *
 * The file also holds the host's wall-clock helpers.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "host.h"

/* The most entries an options table may have; also catches a missing NULL end marker. */
#define MAX_OPTIONS 256

/* One option of a built config: declared in the table, holding its given or default value
 * (or none: an optional option without a default that was not given). */
typedef struct config_entry {
	char *name;
	kanal_opt_type_t type;
	bool given;
	bool has_value;
	char *text;   /* scalar text as written (every scalar type) */
	int64_t ival; /* INT, SIZE (bytes), DURATION (ms) */
	double dval;  /* DOUBLE */
	bool bval;    /* BOOL */
	char **items; /* LIST */
	size_t n_items;
	bool bound; /* ABI 1.1: kanal_config_bind stores it at offset */
	size_t offset;
} config_entry_t;

struct kanal_config {
	config_entry_t *entries;
	size_t count;
	char *instance; /* for the getters' complaint about an undeclared option */
};

/* Where the errors of one config build go: each to fn, counted. */
typedef struct reporter {
	kanal_error_fn fn;
	void *arg;
	size_t count;
} reporter_t;

static void s_report(reporter_t *r, const char *file, int line, int column, const char *attribute,
		     const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void s_report(reporter_t *r, const char *file, int line, int column, const char *attribute,
		     const char *fmt, ...)
{
	kanal_error_t e;
	char text[sizeof e.text];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	kanal_error_clear(&e);
	kanal_error_set(&e, file, line, column, attribute, "%s", text);
	r->count++;
	if (r->fn)
		r->fn(r->arg, &e);
}

/* ---- parsers -------------------------------------------------------------------------------- */

/* Reads a non-negative decimal number "12" or "1.25" at the start of s into an integer part
 * and a fraction (value frac / 10^frac_digits, at most 9 digits kept exactly; more must be
 * zeros). Returns the rest of the string, or NULL when there is no number or it overflows. */
static const char *s_read_decimal(const char *s, int64_t *ip, int64_t *frac, int *frac_digits)
{
	int64_t v = 0, f = 0;
	int nd = 0, fd = 0;

	while (*s >= '0' && *s <= '9') {
		if (v > (INT64_MAX - (*s - '0')) / 10)
			return NULL;
		v = v * 10 + (*s - '0');
		s++;
		nd++;
	}
	if (*s == '.') {
		s++;
		while (*s >= '0' && *s <= '9') {
			if (fd < 9) {
				f = f * 10 + (*s - '0');
				fd++;
			} else if (*s != '0') {
				return NULL; /* more precision than anything here needs */
			}
			s++;
		}
		if (!fd)
			return NULL; /* "1." */
	}
	if (!nd && !fd)
		return NULL;
	*ip = v;
	*frac = f;
	*frac_digits = fd;
	return s;
}

/* Computes (ip + frac/10^fd) * mult exactly. Returns 0, or KANAL_EINVAL when it overflows or
 * is not a whole number. */
static int s_scale(int64_t ip, int64_t frac, int fd, int64_t mult, int64_t *out)
{
	int64_t pow10 = 1, whole, part;

	for (int i = 0; i < fd; i++)
		pow10 *= 10;
	if (ip > INT64_MAX / mult)
		return KANAL_EINVAL;
	whole = ip * mult;
	/* frac < 10^9 times mult <= 2^40 can overflow 64 bits: multiply in 128. */
	if (frac) {
		__int128 p = (__int128)frac * mult;
		if (p % pow10)
			return KANAL_EINVAL;
		part = (int64_t)(p / pow10);
	} else {
		part = 0;
	}
	if (whole > INT64_MAX - part)
		return KANAL_EINVAL;
	*out = whole + part;
	return 0;
}

int kanal__parse_duration_ms(const char *text, int64_t *out)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {
		{ "", 1 },      { "ms", 1 },      { "s", 1000 },
		{ "m", 60000 }, { "h", 3600000 }, { "d", 86400000 },
	};
	int64_t ip, frac, v;
	int fd;
	const char *rest;

	if (!text || !out)
		return KANAL_EINVAL;
	rest = s_read_decimal(text, &ip, &frac, &fd);
	if (!rest)
		return KANAL_EINVAL;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(rest, units[i].unit) != 0)
			continue;
		if (s_scale(ip, frac, fd, units[i].ms, &v) != 0)
			return KANAL_EINVAL;
		*out = v;
		return 0;
	}
	return KANAL_EINVAL;
}

int kanal__parse_size(const char *text, int64_t *out)
{
	static const struct {
		const char *unit;
		int64_t bytes;
	} units[] = {
		{ "", 1 },
		{ "b", 1 },
		{ "kb", 1000 },
		{ "mb", 1000000 },
		{ "gb", 1000000000 },
		{ "tb", 1000000000000LL },
		{ "kib", 1LL << 10 },
		{ "mib", 1LL << 20 },
		{ "gib", 1LL << 30 },
		{ "tib", 1LL << 40 },
	};
	int64_t ip, frac, v;
	int fd;
	const char *rest;

	if (!text || !out)
		return KANAL_EINVAL;
	rest = s_read_decimal(text, &ip, &frac, &fd);
	if (!rest)
		return KANAL_EINVAL;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcasecmp(rest, units[i].unit) != 0)
			continue;
		if (s_scale(ip, frac, fd, units[i].bytes, &v) != 0)
			return KANAL_EINVAL;
		*out = v;
		return 0;
	}
	return KANAL_EINVAL;
}

int kanal__parse_bool(const char *text, bool *out)
{
	static const char *yes[] = { "true", "yes", "on" };
	static const char *no[] = { "false", "no", "off" };

	if (!text || !out)
		return KANAL_EINVAL;
	for (size_t i = 0; i < 3; i++) {
		if (!strcasecmp(text, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(text, no[i])) {
			*out = false;
			return 0;
		}
	}
	return KANAL_EINVAL;
}

/* A whole base-10 int64, optional sign, nothing else. */
static int s_parse_int(const char *text, int64_t *out)
{
	char *end;
	long long v;

	if (!*text || isspace((unsigned char)*text))
		return KANAL_EINVAL;
	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno || *end)
		return KANAL_EINVAL;
	*out = v;
	return 0;
}

/* A finite decimal number; no "nan", "inf" or hex. */
static int s_parse_double(const char *text, double *out)
{
	char *end;
	double v;

	if (!*text || isspace((unsigned char)*text))
		return KANAL_EINVAL;
	for (const char *p = text; *p; p++)
		if (!strchr("0123456789+-.eE", *p))
			return KANAL_EINVAL;
	errno = 0;
	v = strtod(text, &end);
	if (errno || *end || !isfinite(v))
		return KANAL_EINVAL;
	*out = v;
	return 0;
}

/* What a type's value looks like, for "option 'x' expects …, got 'y'". */
static const char *s_expects(kanal_opt_type_t type)
{
	switch (type) {
	case KANAL_OPT_STRING:
		return "a string";
	case KANAL_OPT_INT:
		return "an integer";
	case KANAL_OPT_DOUBLE:
		return "a number like 0.5";
	case KANAL_OPT_BOOL:
		return "true or false";
	case KANAL_OPT_DURATION:
		return "a duration like 250ms, 2s or 5m";
	case KANAL_OPT_SIZE:
		return "a size like 512, 64KiB or 8MiB";
	case KANAL_OPT_LIST:
		return "a list like [a, b]";
	case KANAL_OPT_PATH:
		return "a path";
	}
	return "a value";
}

const char *kanal_opt_type_name(kanal_opt_type_t type)
{
	switch (type) {
	case KANAL_OPT_STRING:
		return "string";
	case KANAL_OPT_INT:
		return "int";
	case KANAL_OPT_DOUBLE:
		return "double";
	case KANAL_OPT_BOOL:
		return "bool";
	case KANAL_OPT_DURATION:
		return "duration";
	case KANAL_OPT_SIZE:
		return "size";
	case KANAL_OPT_LIST:
		return "list";
	case KANAL_OPT_PATH:
		return "path";
	}
	return "unknown";
}

static bool s_type_known(kanal_opt_type_t type)
{
	return type >= KANAL_OPT_STRING && type <= KANAL_OPT_PATH;
}

/* Parses scalar `text` as `type` into e (not LIST). Returns 0 or KANAL_EINVAL. */
static int s_parse_scalar(kanal_opt_type_t type, const char *text, config_entry_t *e)
{
	switch (type) {
	case KANAL_OPT_STRING:
		return 0;
	case KANAL_OPT_PATH:
		return *text ? 0 : KANAL_EINVAL;
	case KANAL_OPT_INT:
		return s_parse_int(text, &e->ival);
	case KANAL_OPT_DOUBLE:
		return s_parse_double(text, &e->dval);
	case KANAL_OPT_BOOL:
		return kanal__parse_bool(text, &e->bval);
	case KANAL_OPT_DURATION:
		return kanal__parse_duration_ms(text, &e->ival);
	case KANAL_OPT_SIZE:
		return kanal__parse_size(text, &e->ival);
	case KANAL_OPT_LIST:
		break;
	}
	return KANAL_EINVAL;
}

/* ---- lists ------------------------------------------------------------------------------------ */

static void s_free_items(char **items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(items[i]);
	free(items);
}

/* Copies n items into e. Returns 0 or KANAL_ENOMEM. */
static int s_set_items(config_entry_t *e, const char *const *items, size_t n)
{
	char **copy = calloc(n ? n : 1, sizeof *copy);

	if (!copy)
		return KANAL_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		copy[i] = strdup(items[i] ? items[i] : "");
		if (!copy[i]) {
			s_free_items(copy, i);
			return KANAL_ENOMEM;
		}
	}
	e->items = copy;
	e->n_items = n;
	return 0;
}

/* Splits a list default as a plugin writes it in its table — "[a, b]" or "a, b"; "" and
 * "[]" are empty — into e. Blank items are dropped. Returns 0, KANAL_EINVAL (unbalanced
 * brackets) or KANAL_ENOMEM. */
static int s_split_list_default(const char *text, config_entry_t *e)
{
	size_t len = strlen(text);
	char *buf, *save = NULL;
	const char **parts;
	size_t n = 0;
	int rc;

	while (len && isspace((unsigned char)text[len - 1]))
		len--;
	while (len && isspace((unsigned char)*text))
		text++, len--;
	if (len && *text == '[') {
		if (text[len - 1] != ']')
			return KANAL_EINVAL;
		text++;
		len -= 2;
	} else if (len && text[len - 1] == ']') {
		return KANAL_EINVAL;
	}
	buf = strndup(text, len);
	parts = calloc(len / 2 + 2, sizeof *parts);
	if (!buf || !parts) {
		free(buf);
		free(parts);
		return KANAL_ENOMEM;
	}
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *end = tok + strlen(tok);
		while (isspace((unsigned char)*tok))
			tok++;
		while (end > tok && isspace((unsigned char)end[-1]))
			*--end = '\0';
		if (*tok)
			parts[n++] = tok;
	}
	rc = s_set_items(e, parts, n);
	free(parts);
	free(buf);
	return rc;
}

/* Quotes a value for an error message: at most 60 characters (then "..."), and control
 * characters shown as '?', so that one bad value cannot flood or garble the message. */
static const char *s_quote(const char *text, char *buf, size_t size)
{
	size_t n = 0, max = size - 4;

	if (max > 60)
		max = 60;
	for (const char *p = text ? text : ""; *p && n < size - 1; p++) {
		if (n == max && p[0]) {
			strcpy(buf + n, "...");
			return buf;
		}
		buf[n++] = iscntrl((unsigned char)*p) ? '?' : *p;
	}
	buf[n] = '\0';
	return buf;
}

/* ---- bounds (ABI 1.1) ------------------------------------------------------------------------ */

static bool s_has_range(kanal_opt_type_t type)
{
	return type == KANAL_OPT_INT || type == KANAL_OPT_SIZE || type == KANAL_OPT_DURATION ||
	       type == KANAL_OPT_DOUBLE;
}

/* Compares a parsed value with the bound written as `text`: <0, 0, >0. The bound has been
 * checked to parse (kanal__options_check). */
static int s_compare(kanal_opt_type_t type, const config_entry_t *e, const char *text)
{
	config_entry_t b = { 0 };

	if (s_parse_scalar(type, text, &b) != 0)
		return 0;
	if (type == KANAL_OPT_DOUBLE)
		return (e->dval > b.dval) - (e->dval < b.dval);
	return (e->ival > b.ival) - (e->ival < b.ival);
}

static bool s_allowed(const kanal_option_t *o, const char *text)
{
	if (!o->allowed)
		return true;
	for (size_t i = 0; o->allowed[i]; i++)
		if (!strcmp(o->allowed[i], text ? text : ""))
			return true;
	return false;
}

/* "json, text" for messages. Returns buf. */
static const char *s_allowed_list(const kanal_option_t *o, char *buf, size_t size)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; o->allowed && o->allowed[i] && used < size; i++)
		used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "",
					 o->allowed[i]);
	return buf;
}

/* Whether a value held in e fits o's bounds: 0 yes, 1 below min, 2 above max, 3 not one of
 * the allowed values (for a list: one of its items is not). */
static int s_out_of_bounds(const kanal_option_t *o, const config_entry_t *e)
{
	if (s_has_range(o->type)) {
		if (o->min && s_compare(o->type, e, o->min) < 0)
			return 1;
		if (o->max && s_compare(o->type, e, o->max) > 0)
			return 2;
	}
	if (o->type == KANAL_OPT_LIST) {
		for (size_t i = 0; i < e->n_items; i++)
			if (!s_allowed(o, e->items[i]))
				return 3;
	} else if (o->type == KANAL_OPT_STRING && !s_allowed(o, e->text)) {
		return 3;
	}
	return 0;
}

/* Checks an entry's bounds themselves: only where they mean something, readable as the
 * option's type, min not above max, and the default within them. Returns 0 or KANAL_EINVAL
 * with why filled. */
static int s_check_table_bounds(const kanal_option_t *o, char *why, size_t why_size)
{
	config_entry_t lo = { 0 }, hi = { 0 }, def = { 0 };
	char q[80];
	int rc = 0;

	if ((o->min || o->max) && !s_has_range(o->type)) {
		snprintf(why, why_size,
			 "option '%s' has min or max, which an option of type %s "
			 "cannot have",
			 o->name, kanal_opt_type_name(o->type));
		return KANAL_EINVAL;
	}
	if (o->allowed && o->type != KANAL_OPT_STRING && o->type != KANAL_OPT_LIST) {
		snprintf(why, why_size,
			 "option '%s' has allowed values, which an option of type "
			 "%s cannot have",
			 o->name, kanal_opt_type_name(o->type));
		return KANAL_EINVAL;
	}
	for (int i = 0; i < 2; i++) {
		const char *bound = i ? o->max : o->min;
		if (bound && s_parse_scalar(o->type, bound, i ? &hi : &lo) != 0) {
			snprintf(why, why_size, "option '%s' has an invalid %s '%s': expected %s",
				 o->name, i ? "max" : "min", s_quote(bound, q, sizeof q),
				 s_expects(o->type));
			return KANAL_EINVAL;
		}
	}
	if (o->min && o->max && s_compare(o->type, &lo, o->max) > 0) {
		snprintf(why, why_size, "option '%s' has min '%s' above its max '%s'", o->name,
			 o->min, o->max);
		return KANAL_EINVAL;
	}
	if (!o->default_value)
		return 0;
	if (o->type == KANAL_OPT_LIST) {
		if (s_split_list_default(o->default_value, &def) != 0)
			return 0; /* reported by the caller */
	} else if (s_parse_scalar(o->type, o->default_value, &def) != 0) {
		return 0;
	}
	def.text = (char *)o->default_value;
	if (s_out_of_bounds(o, &def)) {
		snprintf(why, why_size, "option '%s' has a default '%s' outside its own bounds",
			 o->name, s_quote(o->default_value, q, sizeof q));
		rc = KANAL_EINVAL;
	}
	s_free_items(def.items, def.n_items);
	return rc;
}

/* ---- the options table --------------------------------------------------------------------------- */

static bool s_option_name_ok(const char *name)
{
	if (!name || !*name || strlen(name) > 64)
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	return true;
}

static size_t s_table_count(const kanal_option_t *table)
{
	size_t n = 0;

	while (table && n <= MAX_OPTIONS && table[n].name)
		n++;
	return n;
}

int kanal__options_check(const kanal_option_t *table, char *why, size_t why_size)
{
	char q[80];
	size_t n;

	if (why && why_size)
		why[0] = '\0';
	if (!table)
		return 0;
	n = s_table_count(table);
	if (n > MAX_OPTIONS) {
		snprintf(why, why_size,
			 "more than %d options, or the table lacks its end entry "
			 "(name NULL)",
			 MAX_OPTIONS);
		return KANAL_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		const kanal_option_t *o = &table[i];
		config_entry_t scratch = { 0 };

		if (!s_option_name_ok(o->name)) {
			snprintf(why, why_size,
				 "option #%zu has an invalid name '%s' (use 1-64 of "
				 "a-z, 0-9 and _)",
				 i + 1, s_quote(o->name, q, sizeof q));
			return KANAL_EINVAL;
		}
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(table[j].name, o->name)) {
				snprintf(why, why_size, "option '%s' is declared twice", o->name);
				return KANAL_EINVAL;
			}
		}
		if (!s_type_known(o->type)) {
			snprintf(why, why_size, "option '%s' has an unknown type (%d)", o->name,
				 (int)o->type);
			return KANAL_EINVAL;
		}
		if (o->required && o->default_value) {
			snprintf(why, why_size,
				 "option '%s' is required and also has a default "
				 "('%s'): a required option cannot have one",
				 o->name, s_quote(o->default_value, q, sizeof q));
			return KANAL_EINVAL;
		}
		if (s_check_table_bounds(o, why, why_size) != 0)
			return KANAL_EINVAL;
		if (!o->default_value)
			continue;
		if (o->type == KANAL_OPT_LIST) {
			int rc = s_split_list_default(o->default_value, &scratch);
			s_free_items(scratch.items, scratch.n_items);
			if (rc == KANAL_ENOMEM)
				return rc;
			if (rc == 0)
				continue;
		} else if (s_parse_scalar(o->type, o->default_value, &scratch) == 0) {
			continue;
		}
		snprintf(why, why_size, "option '%s' has an invalid default '%s': expected %s",
			 o->name, s_quote(o->default_value, q, sizeof q), s_expects(o->type));
		return KANAL_EINVAL;
	}
	return 0;
}

/* ---- building a config ------------------------------------------------------------------------------ */

void kanal__config_destroy(kanal_config_t **cfg_p)
{
	kanal_config_t *cfg;

	if (!cfg_p || !*cfg_p)
		return;
	cfg = *cfg_p;
	*cfg_p = NULL;
	for (size_t i = 0; i < cfg->count; i++) {
		free(cfg->entries[i].name);
		free(cfg->entries[i].text);
		s_free_items(cfg->entries[i].items, cfg->entries[i].n_items);
	}
	free(cfg->entries);
	free(cfg->instance);
	free(cfg);
}

/* Levenshtein distance of two short names, capped: anything above 3 is 3. */
static size_t s_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[66];

	if (la > 64 || lb > 64)
		return 3;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t cost = tolower((unsigned char)a[i - 1]) != b[j - 1];
			size_t best = diag + cost;
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb] > 3 ? 3 : row[lb];
}

/* Reports an unknown key, suggesting the closest declared name when one is close (one edit
 * for short names, two for longer ones), else listing them all. */
static void s_unknown_option(const kanal_option_t *table, size_t n_table, const kanal_optval_t *v,
			     const char *file, const char *instance, reporter_t *r)
{
	char q[80], list[400];
	const char *best = NULL;
	size_t best_d = 3, used = 0;

	for (size_t i = 0; i < n_table; i++) {
		size_t d = s_distance(v->key, table[i].name);
		if (d < best_d) {
			best_d = d;
			best = table[i].name;
		}
	}
	if (best && best_d <= (strlen(v->key) <= 4 ? 1u : 2u)) {
		s_report(r, file, v->line, v->column, v->key,
			 "instance '%s': unknown option '%s' (did you mean '%s'?)", instance,
			 s_quote(v->key, q, sizeof q), best);
		return;
	}
	if (!n_table) {
		s_report(r, file, v->line, v->column, v->key,
			 "instance '%s': unknown option '%s' (the plugin takes no options)",
			 instance, s_quote(v->key, q, sizeof q));
		return;
	}
	list[0] = '\0';
	for (size_t i = 0; i < n_table && used < sizeof list; i++)
		used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
					 table[i].name);
	s_report(r, file, v->line, v->column, v->key,
		 "instance '%s': unknown option '%s' (options: %s)", instance,
		 s_quote(v->key, q, sizeof q), list);
}

/* Stores the given value v of option o into e, or reports why it does not fit. Returns 0,
 * KANAL_ECONFIG or KANAL_ENOMEM. */
/* A relative path given in a config file means relative to that file's folder, as the
 * broker's own paths do — not to wherever kanald happened to be started. "-" (stdout or
 * stdin by convention) and absolute paths are kept as they are. */
static int s_resolve_path(const char *file, const char *text, char **out)
{
	const char *slash = file ? strrchr(file, '/') : NULL;

	if (text[0] == '/' || !strcmp(text, "-") || !slash) {
		*out = strdup(text);
	} else if (asprintf(out, "%.*s/%s", (int)(slash - file), file, text) < 0) {
		*out = NULL;
	}
	return *out ? 0 : KANAL_ENOMEM;
}

static int s_take_given(const kanal_option_t *o, const kanal_optval_t *v, config_entry_t *e,
			const char *file, const char *instance, reporter_t *r)
{
	char q[80];
	const char *text = v->value ? v->value : "";

	if (o->type == KANAL_OPT_LIST) {
		if (!v->is_list) {
			s_report(r, file, v->line, v->column, v->key,
				 "instance '%s': option '%s' expects a list like [a, b], "
				 "got a single value '%s'",
				 instance, o->name, s_quote(text, q, sizeof q));
			return KANAL_ECONFIG;
		}
		return s_set_items(e, (const char *const *)v->items, v->n_items);
	}
	if (v->is_list) {
		s_report(r, file, v->line, v->column, v->key,
			 "instance '%s': option '%s' expects %s, got a list", instance, o->name,
			 s_expects(o->type));
		return KANAL_ECONFIG;
	}
	if (s_parse_scalar(o->type, text, e) != 0) {
		s_report(r, file, v->line, v->column, v->key,
			 "instance '%s': option '%s' expects %s, got '%s'", instance, o->name,
			 s_expects(o->type), s_quote(text, q, sizeof q));
		return KANAL_ECONFIG;
	}
	if (o->type == KANAL_OPT_PATH)
		return s_resolve_path(file, text, &e->text);
	e->text = strdup(text);
	return e->text ? 0 : KANAL_ENOMEM;
}

/* Fills e from the option's default. The loader has checked defaults already; a bad one
 * here means the table was not checked, and is reported against the plugin. */
static int s_take_default(const kanal_option_t *o, config_entry_t *e, const char *file, int line,
			  int column, const char *instance, reporter_t *r)
{
	int rc;

	if (o->type == KANAL_OPT_LIST)
		rc = s_split_list_default(o->default_value, e);
	else
		rc = s_parse_scalar(o->type, o->default_value, e);
	if (rc == KANAL_ENOMEM)
		return rc;
	if (rc) {
		s_report(r, file, line, column, o->name,
			 "instance '%s': the plugin's default for option '%s' is invalid "
			 "(expected %s)",
			 instance, o->name, s_expects(o->type));
		return KANAL_ECONFIG;
	}
	if (o->type != KANAL_OPT_LIST) {
		e->text = strdup(o->default_value);
		if (!e->text)
			return KANAL_ENOMEM;
	}
	return 0;
}

static const kanal_optval_t *s_find_given(const kanal_optval_t *given, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (given[i].key && !strcmp(given[i].key, name))
			return &given[i];
	return NULL;
}

/* Checks the given keys: each declared, none twice — all of them, each reported. Returns
 * the number of bad keys. */
static size_t s_check_keys(const kanal_option_t *table, size_t n_table, const kanal_optval_t *given,
			   size_t n, const char *file, const char *instance, reporter_t *r)
{
	size_t before = r->count;
	char q[80];

	for (size_t i = 0; i < n; i++) {
		const kanal_optval_t *v = &given[i];
		bool declared = false;

		if (!v->key) {
			s_report(r, file, v->line, v->column, NULL,
				 "instance '%s': an option has no name", instance);
			continue;
		}
		for (size_t j = 0; j < n_table && !declared; j++)
			declared = !strcmp(table[j].name, v->key);
		if (!declared) {
			s_unknown_option(table, n_table, v, file, instance, r);
			continue;
		}
		for (size_t j = 0; j < i; j++) {
			if (!given[j].key || strcmp(given[j].key, v->key) != 0)
				continue;
			if (given[j].line > 0)
				s_report(r, file, v->line, v->column, v->key,
					 "instance '%s': option '%s' is given twice (first at "
					 "line %d)",
					 instance, s_quote(v->key, q, sizeof q), given[j].line);
			else
				s_report(r, file, v->line, v->column, v->key,
					 "instance '%s': option '%s' is given twice", instance,
					 s_quote(v->key, q, sizeof q));
			break;
		}
	}
	return r->count - before;
}

/* Checks a given value against the option's bounds (ABI 1.1: min, max, allowed). Returns 0
 * or KANAL_ECONFIG after reporting. */
static int s_check_bounds(const kanal_option_t *o, const kanal_optval_t *v, const config_entry_t *e,
			  const char *file, const char *instance, reporter_t *r)
{
	char q[80], list[300];
	int why;

	why = s_out_of_bounds(o, e);
	if (why == 1 || why == 2) {
		s_report(r, file, v->line, v->column, v->key,
			 "instance '%s': option '%s' must be at %s %s, got '%s'", instance, o->name,
			 why == 1 ? "least" : "most", why == 1 ? o->min : o->max,
			 s_quote(v->value, q, sizeof q));
		return KANAL_ECONFIG;
	}
	if (why == 3) {
		const char *bad = e->text;
		for (size_t i = 0; o->type == KANAL_OPT_LIST && i < e->n_items; i++)
			if (!s_allowed(o, e->items[i]))
				bad = e->items[i];
		s_report(r, file, v->line, v->column, v->key,
			 "instance '%s': option '%s' must be one of %s; got '%s'", instance,
			 o->name, s_allowed_list(o, list, sizeof list), s_quote(bad, q, sizeof q));
		return KANAL_ECONFIG;
	}
	return 0;
}

int kanal__config_build_all(const kanal_option_t *table, const kanal_optval_t *given, size_t n,
			    const char *file, const char *instance, int inst_line, int inst_column,
			    kanal_config_t **out, kanal_error_fn report, void *arg)
{
	reporter_t r = { report, arg, 0 };
	kanal_config_t *cfg = NULL;
	size_t n_table = s_table_count(table);
	int rc = 0;

	if (!out)
		return KANAL_EINVAL;
	*out = NULL;
	if (!instance)
		instance = "?";
	if (n_table > MAX_OPTIONS) {
		s_report(&r, file, inst_line, inst_column, NULL,
			 "instance '%s': the plugin's options table lacks its end entry", instance);
		return KANAL_ECONFIG;
	}
	s_check_keys(table, n_table, given, given ? n : 0, file, instance, &r);

	cfg = calloc(1, sizeof *cfg);
	if (!cfg || !(cfg->entries = calloc(n_table ? n_table : 1, sizeof *cfg->entries)) ||
	    !(cfg->instance = strdup(instance))) {
		if (cfg)
			free(cfg->entries);
		free(cfg);
		return KANAL_ENOMEM;
	}
	/* Every option is looked at even after a bad one, so that all are reported. */
	for (size_t i = 0; i < n_table; i++) {
		const kanal_option_t *o = &table[i];
		const kanal_optval_t *v = s_find_given(given, given ? n : 0, o->name);
		config_entry_t *e = &cfg->entries[i];
		int erc;

		cfg->count = i + 1;
		e->type = o->type;
		e->bound = o->bound;
		e->offset = o->offset;
		e->name = strdup(o->name);
		if (!e->name) {
			rc = KANAL_ENOMEM;
			goto fail;
		}
		if (v) {
			erc = s_take_given(o, v, e, file, instance, &r);
			if (!erc)
				erc = s_check_bounds(o, v, e, file, instance, &r);
			e->given = true;
		} else if (o->required) {
			s_report(&r, file, inst_line, inst_column, o->name,
				 "instance '%s': missing required option '%s' (%s)", instance,
				 o->name, kanal_opt_type_name(o->type));
			erc = KANAL_ECONFIG;
		} else if (o->default_value) {
			erc = s_take_default(o, e, file, inst_line, inst_column, instance, &r);
		} else {
			continue; /* optional, no default: getters give their fallback */
		}
		if (erc == KANAL_ENOMEM) {
			rc = erc;
			goto fail;
		}
		if (!erc)
			e->has_value = true;
	}
	if (r.count) {
		rc = KANAL_ECONFIG;
		goto fail;
	}
	*out = cfg;
	return 0;
fail:
	if (rc == KANAL_ENOMEM)
		s_report(&r, file, inst_line, inst_column, NULL,
			 "instance '%s': out of memory building its options", instance);
	kanal__config_destroy(&cfg);
	return rc;
}

/* Keeps the first error in the caller's record (kanal_error_set is first-error-wins). */
static void s_first_error(void *arg, const kanal_error_t *e)
{
	kanal_error_t *err = arg;

	if (err && !err->text[0])
		*err = *e;
}

int kanal__config_build(const kanal_option_t *table, const kanal_optval_t *given, size_t n,
			const char *file, const char *instance, int inst_line, int inst_column,
			kanal_config_t **out, kanal_error_t *err)
{
	return kanal__config_build_all(table, given, n, file, instance, inst_line, inst_column, out,
				       s_first_error, err);
}

/* ---- getters ------------------------------------------------------------------------------------------ */

/* Says on standard error, in kanald's log format, that the plugin asked for an option its
 * table does not declare (or with the getter of another type): a bug to fix in the plugin,
 * which a silent fallback would hide. */
static void s_complain(const kanal_config_t *cfg, const char *name, const char *why)
{
	char ts[40], q[80];

	kanal_time_rfc3339(kanal_wall_ms(), ts, sizeof ts);
	fprintf(stderr, "%s error %s: the plugin asked for option '%s', %s\n", ts,
		cfg->instance ? cfg->instance : "?", s_quote(name, q, sizeof q), why);
}

static const config_entry_t *s_declared(const kanal_config_t *cfg, const char *name)
{
	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->count; i++)
		if (!strcmp(cfg->entries[i].name, name))
			return &cfg->entries[i];
	s_complain(cfg, name, "which its options table does not declare");
	return NULL;
}

/* The entry for `name` when it is declared with one of the types in `types` (a bit mask of
 * 1 << type) and has a value; else NULL, which makes the getter return its fallback. */
static const config_entry_t *s_entry(const kanal_config_t *cfg, const char *name, unsigned types)
{
	const config_entry_t *e = s_declared(cfg, name);

	if (!e)
		return NULL;
	if (!(types & (1u << e->type))) {
		s_complain(cfg, name, "with the getter of another type");
		return NULL;
	}
	return e->has_value ? e : NULL;
}

#define T_(type) (1u << (type))

const char *kanal_config_string(const kanal_config_t *cfg, const char *name)
{
	const config_entry_t *e = s_entry(cfg, name, T_(KANAL_OPT_STRING) | T_(KANAL_OPT_PATH));
	return e ? e->text : NULL;
}

int64_t kanal_config_int(const kanal_config_t *cfg, const char *name)
{
	const config_entry_t *e = s_entry(cfg, name, T_(KANAL_OPT_INT) | T_(KANAL_OPT_SIZE));
	return e ? e->ival : 0;
}

double kanal_config_double(const kanal_config_t *cfg, const char *name)
{
	const config_entry_t *e = s_entry(cfg, name, T_(KANAL_OPT_DOUBLE));
	return e ? e->dval : 0.0;
}

bool kanal_config_bool(const kanal_config_t *cfg, const char *name)
{
	const config_entry_t *e = s_entry(cfg, name, T_(KANAL_OPT_BOOL));
	return e ? e->bval : false;
}

int64_t kanal_config_duration_ms(const kanal_config_t *cfg, const char *name)
{
	const config_entry_t *e = s_entry(cfg, name, T_(KANAL_OPT_DURATION));
	return e ? e->ival : 0;
}

size_t kanal_config_list_count(const kanal_config_t *cfg, const char *name)
{
	const config_entry_t *e = s_entry(cfg, name, T_(KANAL_OPT_LIST));
	return e ? e->n_items : 0;
}

const char *kanal_config_list(const kanal_config_t *cfg, const char *name, size_t i)
{
	const config_entry_t *e = s_entry(cfg, name, T_(KANAL_OPT_LIST));
	return e && i < e->n_items ? e->items[i] : NULL;
}

bool kanal_config_given(const kanal_config_t *cfg, const char *name)
{
	const config_entry_t *e = s_declared(cfg, name);
	return e ? e->given : false;
}

int kanal_config_has(const kanal_config_t *cfg, const char *name)
{
	return s_declared(cfg, name) ? 0 : KANAL_EINVAL;
}

int kanal_config_bind(const kanal_config_t *cfg, void *state)
{
	if (!cfg || !state)
		return KANAL_EINVAL;
	for (size_t i = 0; i < cfg->count; i++) {
		const config_entry_t *e = &cfg->entries[i];
		char *at = (char *)state + e->offset;

		if (!e->bound || !e->has_value)
			continue;
		/* memcpy: the offset is the plugin's word; it need not be aligned for us. */
		switch (e->type) {
		case KANAL_OPT_STRING:
		case KANAL_OPT_PATH: {
			const char *text = e->text;
			memcpy(at, &text, sizeof text);
			break;
		}
		case KANAL_OPT_INT:
		case KANAL_OPT_SIZE:
		case KANAL_OPT_DURATION:
			memcpy(at, &e->ival, sizeof e->ival);
			break;
		case KANAL_OPT_DOUBLE:
			memcpy(at, &e->dval, sizeof e->dval);
			break;
		case KANAL_OPT_BOOL:
			memcpy(at, &e->bval, sizeof e->bval);
			break;
		case KANAL_OPT_LIST: {
			kanal_strlist_t list = { (const char *const *)e->items, e->n_items };
			memcpy(at, &list, sizeof list);
			break;
		}
		}
	}
	return 0;
}

/* ---- a plugin's table in today's layout ---------------------------------------------------- */

size_t kanal__option_stride(const kanal_plugin_t *desc)
{
	return desc->abi_minor == 0 ? KANAL_OPTION_V1_0_SIZE : sizeof(kanal_option_t);
}

int kanal__options_import(const kanal_plugin_t *desc, kanal_option_t **out, char *why,
			  size_t why_size)
{
	size_t stride = kanal__option_stride(desc), n = 0;
	const char *raw = (const char *)desc->options;
	kanal_option_t *copy;

	*out = NULL;
	if (!raw)
		return 0;
	/* Each entry is read at the plugin's stride; only the fields its minor knows are copied,
	 * the rest stay zero. Reading a 1.0 entry as today's struct would run into the next. */
	while (n <= MAX_OPTIONS) {
		const char *name;
		memcpy(&name, raw + n * stride + offsetof(kanal_option_t, name), sizeof name);
		if (!name)
			break;
		n++;
	}
	if (n > MAX_OPTIONS) {
		snprintf(why, why_size,
			 "more than %d options, or the table lacks its end entry "
			 "(name NULL)",
			 MAX_OPTIONS);
		return KANAL_EINVAL;
	}
	copy = calloc(n + 1, sizeof *copy);
	if (!copy)
		return KANAL_ENOMEM;
	for (size_t i = 0; i < n; i++)
		memcpy(&copy[i], raw + i * stride, stride);
	*out = copy;
	return 0;
}
