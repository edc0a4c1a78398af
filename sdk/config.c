/*
 * sdk/config.c — a plugin instance's options: validation against the plugin's options
 * table, the built kanal_config_t with its getters, and the value parsers they share.
 *
 * kanald (from kanald.yaml) and the test harness (from kanal_harness_option) both turn the
 * options an instance was given into kanal_optval_t records and call kanal__config_build,
 * so a plugin sees the same validation and the same defaults wherever it runs. Errors say
 * where (file:line:col of the key, or of the instance for a missing option), which instance
 * and option, what was expected and what was found; only the first error is kept
 * (kanal_error_t is first-error-wins). The loader checks the options table itself with
 * kanal__options_check before a plugin is accepted, using the same parsers for defaults.
 */
#include <ctype.h>
#include <errno.h>
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
	char *text;       /* scalar text as written (every scalar type) */
	int64_t ival;     /* INT, SIZE (bytes), DURATION (ms) */
	double dval;      /* DOUBLE */
	bool bval;        /* BOOL */
	char **items;     /* LIST */
	size_t n_items;
} config_entry_t;

struct kanal_config {
	config_entry_t *entries;
	size_t count;
};

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
	static const struct { const char *unit; int64_t ms; } units[] = {
		{ "", 1 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 },
		{ "h", 3600000 }, { "d", 86400000 },
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
	static const struct { const char *unit; int64_t bytes; } units[] = {
		{ "", 1 }, { "b", 1 },
		{ "kb", 1000 }, { "mb", 1000000 }, { "gb", 1000000000 },
		{ "tb", 1000000000000LL },
		{ "kib", 1LL << 10 }, { "mib", 1LL << 20 }, { "gib", 1LL << 30 },
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
		snprintf(why, why_size, "more than %d options, or the table lacks its end entry "
			 "(name NULL)", MAX_OPTIONS);
		return KANAL_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		const kanal_option_t *o = &table[i];
		config_entry_t scratch = { 0 };

		if (!s_option_name_ok(o->name)) {
			snprintf(why, why_size, "option #%zu has an invalid name '%s' (use 1-64 of "
				 "a-z, 0-9 and _)", i + 1, s_quote(o->name, q, sizeof q));
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
			snprintf(why, why_size, "option '%s' is required and also has a default "
				 "('%s'): a required option cannot have one", o->name,
				 s_quote(o->default_value, q, sizeof q));
			return KANAL_EINVAL;
		}
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
			     const char *file, const char *instance, kanal_error_t *err)
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
		kanal_error_set(err, file, v->line, v->column, v->key,
				"instance '%s': unknown option '%s' (did you mean '%s'?)", instance,
				s_quote(v->key, q, sizeof q), best);
		return;
	}
	if (!n_table) {
		kanal_error_set(err, file, v->line, v->column, v->key,
				"instance '%s': unknown option '%s' (the plugin takes no options)",
				instance, s_quote(v->key, q, sizeof q));
		return;
	}
	list[0] = '\0';
	for (size_t i = 0; i < n_table && used < sizeof list; i++)
		used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
					 table[i].name);
	kanal_error_set(err, file, v->line, v->column, v->key,
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
			const char *file, const char *instance, kanal_error_t *err)
{
	char q[80];
	const char *text = v->value ? v->value : "";

	if (o->type == KANAL_OPT_LIST) {
		if (!v->is_list) {
			kanal_error_set(err, file, v->line, v->column, v->key,
					"instance '%s': option '%s' expects a list like [a, b], "
					"got a single value '%s'", instance, o->name,
					s_quote(text, q, sizeof q));
			return KANAL_ECONFIG;
		}
		return s_set_items(e, (const char *const *)v->items, v->n_items);
	}
	if (v->is_list) {
		kanal_error_set(err, file, v->line, v->column, v->key,
				"instance '%s': option '%s' expects %s, got a list", instance,
				o->name, s_expects(o->type));
		return KANAL_ECONFIG;
	}
	if (s_parse_scalar(o->type, text, e) != 0) {
		kanal_error_set(err, file, v->line, v->column, v->key,
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
static int s_take_default(const kanal_option_t *o, config_entry_t *e, const char *file,
			  int line, int column, const char *instance, kanal_error_t *err)
{
	int rc;

	if (o->type == KANAL_OPT_LIST)
		rc = s_split_list_default(o->default_value, e);
	else
		rc = s_parse_scalar(o->type, o->default_value, e);
	if (rc == KANAL_ENOMEM)
		return rc;
	if (rc) {
		kanal_error_set(err, file, line, column, o->name,
				"instance '%s': the plugin's default for option '%s' is invalid "
				"(expected %s)", instance, o->name, s_expects(o->type));
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

/* Checks the given keys: each declared, none twice. Returns 0 or KANAL_ECONFIG. */
static int s_check_keys(const kanal_option_t *table, size_t n_table, const kanal_optval_t *given,
			size_t n, const char *file, const char *instance, kanal_error_t *err)
{
	char q[80];

	for (size_t i = 0; i < n; i++) {
		const kanal_optval_t *v = &given[i];
		bool declared = false;

		if (!v->key) {
			kanal_error_set(err, file, v->line, v->column, NULL,
					"instance '%s': an option has no name", instance);
			return KANAL_ECONFIG;
		}
		for (size_t j = 0; j < n_table && !declared; j++)
			declared = !strcmp(table[j].name, v->key);
		if (!declared) {
			s_unknown_option(table, n_table, v, file, instance, err);
			return KANAL_ECONFIG;
		}
		for (size_t j = 0; j < i; j++) {
			if (!given[j].key || strcmp(given[j].key, v->key) != 0)
				continue;
			if (given[j].line > 0)
				kanal_error_set(err, file, v->line, v->column, v->key,
						"instance '%s': option '%s' is given twice (first at "
						"line %d)", instance, s_quote(v->key, q, sizeof q),
						given[j].line);
			else
				kanal_error_set(err, file, v->line, v->column, v->key,
						"instance '%s': option '%s' is given twice", instance,
						s_quote(v->key, q, sizeof q));
			return KANAL_ECONFIG;
		}
	}
	return 0;
}

int kanal__config_build(const kanal_option_t *table, const kanal_optval_t *given, size_t n,
			const char *file, const char *instance, int inst_line, int inst_column,
			kanal_config_t **out, kanal_error_t *err)
{
	kanal_config_t *cfg = NULL;
	size_t n_table = s_table_count(table);
	int rc;

	if (!out)
		return KANAL_EINVAL;
	*out = NULL;
	if (!instance)
		instance = "?";
	if (n_table > MAX_OPTIONS) {
		kanal_error_set(err, file, inst_line, inst_column, NULL,
				"instance '%s': the plugin's options table lacks its end entry", instance);
		return KANAL_ECONFIG;
	}
	rc = s_check_keys(table, n_table, given, given ? n : 0, file, instance, err);
	if (rc)
		return rc;

	cfg = calloc(1, sizeof *cfg);
	if (!cfg || !(cfg->entries = calloc(n_table ? n_table : 1, sizeof *cfg->entries))) {
		free(cfg);
		return KANAL_ENOMEM;
	}
	for (size_t i = 0; i < n_table; i++) {
		const kanal_option_t *o = &table[i];
		const kanal_optval_t *v = s_find_given(given, given ? n : 0, o->name);
		config_entry_t *e = &cfg->entries[i];

		cfg->count = i + 1;
		e->type = o->type;
		e->name = strdup(o->name);
		if (!e->name) {
			rc = KANAL_ENOMEM;
			goto fail;
		}
		if (v) {
			rc = s_take_given(o, v, e, file, instance, err);
			e->given = true;
		} else if (o->required) {
			kanal_error_set(err, file, inst_line, inst_column, o->name,
					"instance '%s': missing required option '%s' (%s)", instance,
					o->name, kanal_opt_type_name(o->type));
			rc = KANAL_ECONFIG;
		} else if (o->default_value) {
			rc = s_take_default(o, e, file, inst_line, inst_column, instance, err);
		} else {
			continue; /* optional, no default: getters give their fallback */
		}
		if (rc)
			goto fail;
		e->has_value = true;
	}
	*out = cfg;
	return 0;
fail:
	if (rc == KANAL_ENOMEM)
		kanal_error_set(err, file, inst_line, inst_column, NULL,
				"instance '%s': out of memory building its options", instance);
	kanal__config_destroy(&cfg);
	return rc;
}

/* ---- getters ------------------------------------------------------------------------------------------ */

/* The entry for `name` when it is declared with one of the types in `types` (a bit mask of
 * 1 << type) and has a value; else NULL, which makes the getter return its fallback. */
static const config_entry_t *s_entry(const kanal_config_t *cfg, const char *name, unsigned types)
{
	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->count; i++) {
		const config_entry_t *e = &cfg->entries[i];
		if (strcmp(e->name, name) != 0)
			continue;
		if (!(types & (1u << e->type)) || !e->has_value)
			return NULL;
		return e;
	}
	return NULL;
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
	if (!cfg || !name)
		return false;
	for (size_t i = 0; i < cfg->count; i++)
		if (!strcmp(cfg->entries[i].name, name))
			return cfg->entries[i].given;
	return false;
}
