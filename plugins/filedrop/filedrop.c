/*
 * plugins/filedrop/filedrop.c — the `filedrop` connector: a folder another system drops
 * its exports into (JSON Lines, CSV with a header row, or XML: the elements an XPath
 * selects), each file turned into one event per record exactly once, optionally shaped by a
 * jq `map:` program (the sandboxed runner of plugins/common/kc_jq.h)
 * (docs/plugins/filedrop.md).
 *
 * A timer scans the folder every scan_interval. A file is taken when it is a regular file
 * (a symlink is refused), matches `pattern`, is not hidden (a leading dot) or a .tmp/.part,
 * and was last modified at least `settle` ago — so a writer that renames into place, or one
 * that stops writing for `settle`, is never read half-written. Files go oldest name first.
 *
 * Each file is read twice, line by line, so memory stays bounded by the longest record:
 * the first pass checks every record, and a file with one bad record (not JSON, not an
 * object, a CSV row with the wrong number of fields, bytes that are not text in the
 * encoding) is refused whole — moved to error/ with a <name>.reason naming the line and
 * the cause — and emits nothing. The second pass emits each record, kanal_emit_flush waits
 * until all are durable in kanald, and only then is the file renamed into done/. An event's
 * id is derived from the file's content (a 64-bit FNV-1a hash) and the record's line, so a
 * crash between the emits and the rename makes the next run emit the same ids again, which
 * kanald's duplicate suppression on (source, id) drops. Every callback runs on the
 * instance's own thread.
 */
#include "../common/kc_jq.h"

#include <kanal/kanal.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>

#define FD_FLUSH_TIMEOUT_MS 30000
#define FD_MAX_FIELDS 1024
#define FD_MAX_XML (64 * 1024 * 1024) /* an XML export is parsed whole: its largest size */

typedef struct filedrop {
	const char *folder;
	const char *pattern;
	const char *format;
	const char *encoding;
	const char *delimiter;
	const char *type;
	const char *id_field;
	const char *record_path;
	const char *map;
	int64_t settle_ms;
	int64_t scan_interval_ms;
	int64_t max_record;
	const char *instance;
	char *done_dir, *error_dir;
	int64_t timer;
	kc_jq_t *map_jq;     /* the compiled `map`, or NULL */
	const char *current; /* the file being read (its name) */
	bool csv, xml, latin1, stopped;
} filedrop_t;

static const char *const s_formats[] = { "jsonl", "csv", "xml", NULL };
static const char *const s_encodings[] = { "utf-8", "iso-8859-1", NULL };

static const kanal_option_t s_options[] = {
	{ .name = "folder",
	  .type = KANAL_OPT_PATH,
	  .required = true,
	  KANAL_OPT_AT(filedrop_t, folder),
	  .help = "The drop folder; done/ and error/ are made inside it." },
	{ .name = "pattern",
	  .type = KANAL_OPT_STRING,
	  .default_value = "*",
	  KANAL_OPT_AT(filedrop_t, pattern),
	  .help = "Glob the file names must match, e.g. '*.csv' (hidden, .tmp and .part files "
		  "never)." },
	{ .name = "format",
	  .type = KANAL_OPT_STRING,
	  .default_value = "jsonl",
	  .allowed = s_formats,
	  KANAL_OPT_AT(filedrop_t, format),
	  .help = "jsonl (one JSON object per line), csv (a header row, then one record per "
		  "row) or xml (the elements record_path selects)." },
	{ .name = "encoding",
	  .type = KANAL_OPT_STRING,
	  .default_value = "utf-8",
	  .allowed = s_encodings,
	  KANAL_OPT_AT(filedrop_t, encoding),
	  .help = "The files' encoding: utf-8 or iso-8859-1 (converted to UTF-8)." },
	{ .name = "delimiter",
	  .type = KANAL_OPT_STRING,
	  .default_value = ",",
	  KANAL_OPT_AT(filedrop_t, delimiter),
	  .help = "CSV field delimiter: one character, e.g. ';'." },
	{ .name = "type",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(filedrop_t, type),
	  .help = "The events' type, e.g. hr.payslip.exported (required unless map gives it)." },
	{ .name = "record_path",
	  .type = KANAL_OPT_STRING,
	  .default_value = "/*/*",
	  KANAL_OPT_AT(filedrop_t, record_path),
	  .help = "For xml: an XPath selecting the record elements (default: the root's "
		  "children)." },
	{ .name = "map",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(filedrop_t, map),
	  .help = "A jq program run on each record (`.`; $file is {name, line}) whose output "
		  "object gives the event's id, type, subject, time and data." },
	{ .name = "id_field",
	  .type = KANAL_OPT_STRING,
	  KANAL_OPT_AT(filedrop_t, id_field),
	  .help = "A record field whose value is the event's id (default: derived from the "
		  "file's content and the line)." },
	{ .name = "settle",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "2s",
	  KANAL_OPT_AT(filedrop_t, settle_ms),
	  .help = "A file is read only when unmodified for this long." },
	{ .name = "scan_interval",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "1s",
	  .min = "10ms",
	  KANAL_OPT_AT(filedrop_t, scan_interval_ms),
	  .help = "Time between two scans of the folder." },
	{ .name = "max_record",
	  .type = KANAL_OPT_SIZE,
	  .default_value = "1MiB",
	  .min = "64",
	  KANAL_OPT_AT(filedrop_t, max_record),
	  .help = "Longest line (record) accepted; a longer one refuses the file." },
	{ .name = NULL },
};

/* ---- records ----------------------------------------------------------------------------- */

/* Converts an ISO-8859-1 line to UTF-8 (a new string), or NULL when out of memory. */
static char *s_latin1(const char *s, size_t len)
{
	char *out = malloc(len * 2 + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80) {
			*o++ = (char)c;
		} else {
			*o++ = (char)(0xC0 | (c >> 6));
			*o++ = (char)(0x80 | (c & 0x3F));
		}
	}
	*o = '\0';
	return out;
}

/* Splits a CSV line into fields (in place; "" quotes a quote). Returns the number of
 * fields, or -1 with why for a broken quote. */
static int s_csv_split(char *line, char delim, char **fields, const char **why)
{
	int n = 0;
	char *r = line, *w;

	for (;;) {
		if (n == FD_MAX_FIELDS) {
			*why = "more than 1024 fields";
			return -1;
		}
		fields[n++] = w = r;
		if (*r == '"') {
			r++;
			for (;;) {
				if (!*r) {
					*why = "a quoted field is not closed on its line";
					return -1;
				}
				if (*r == '"' && r[1] == '"') {
					*w++ = '"';
					r += 2;
				} else if (*r == '"') {
					r++;
					break;
				} else {
					*w++ = *r++;
				}
			}
			if (*r && *r != delim) {
				*why = "text after a quoted field's closing quote";
				return -1;
			}
		} else {
			while (*r && *r != delim) {
				if (*r == '"') {
					*why = "a quote inside an unquoted field";
					return -1;
				}
				*w++ = *r++;
			}
		}
		if (!*r) {
			*w = '\0';
			return n;
		}
		*w = '\0';
		r++;
	}
}

/* One file being read: the stream, the CSV header, the line number. */
typedef struct reader {
	FILE *f;
	char *line;
	size_t cap;
	int64_t lineno;
	char *header_text;
	char *header[FD_MAX_FIELDS];
	int columns;
	xmlDocPtr doc;           /* xml: the parsed file */
	xmlXPathObjectPtr nodes; /* xml: the record elements */
	int next_node;
} reader_t;

/* Adds one XML field to a record: a name met again turns its value into an array. */
static void s_xml_field(json_t *rec, const char *name, const char *text)
{
	json_t *old = json_object_get(rec, name), *v = json_string(text ? text : "");

	if (!v)
		return;
	if (!old) {
		json_object_set_new(rec, name, v);
	} else if (json_is_array(old)) {
		json_array_append_new(old, v);
	} else {
		json_t *list = json_pack("[O]", old);
		json_array_append_new(list, v);
		json_object_set_new(rec, name, list);
	}
}

/* The record an XML element makes: its attributes and its child elements' text, by name
 * (without namespace prefixes). NULL when a text is not UTF-8 (libxml2 gives UTF-8). */
static json_t *s_xml_record(xmlNodePtr node)
{
	json_t *rec = json_object();

	for (xmlAttrPtr a = node->properties; rec && a; a = a->next) {
		xmlChar *v = xmlNodeGetContent((xmlNodePtr)a);
		s_xml_field(rec, (const char *)a->name, (const char *)v);
		xmlFree(v);
	}
	for (xmlNodePtr c = node->children; rec && c; c = c->next) {
		xmlChar *v;
		if (c->type != XML_ELEMENT_NODE)
			continue;
		v = xmlNodeGetContent(c);
		s_xml_field(rec, (const char *)c->name, (const char *)v);
		xmlFree(v);
	}
	return rec;
}

/* libxml2's first error in a parse (its last one is often only a consequence). */
typedef struct xml_error {
	int line;
	char text[200];
} xml_error_t;

static void s_on_xml_error(void *arg, xmlErrorPtr e)
{
	xml_error_t *first = arg;

	if (!first->line && e) {
		first->line = e->line > 0 ? e->line : 1;
		snprintf(first->text, sizeof first->text, "%s", e->message ? e->message : "");
		first->text[strcspn(first->text, "\n")] = '\0';
	}
}

/* Parses an XML file whole, the safe way (plugins/staff/feed.c: never the network, no
 * DOCTYPE, so no entities), and selects its records. Returns 0, or -1 with why. */
static int s_xml_open(filedrop_t *d, reader_t *r, char *why, size_t size)
{
	char *body = malloc(FD_MAX_XML + 1);
	size_t len = body ? fread(body, 1, FD_MAX_XML + 1, r->f) : 0;
	xmlParserCtxtPtr ctxt = NULL;
	xmlXPathContextPtr xp = NULL;
	xml_error_t first = { 0 };
	int rc = -1;

	if (!body) {
		snprintf(why, size, "out of memory");
	} else if (ferror(r->f)) {
		snprintf(why, size, "read error: %s", strerror(errno));
	} else if (len > FD_MAX_XML) {
		snprintf(why, size, "an XML file larger than %d MiB", FD_MAX_XML >> 20);
	} else if (memmem(body, len, "<!DOCTYPE", 9) || memmem(body, len, "<!ENTITY", 8)) {
		snprintf(why, size,
			 "the file has a DOCTYPE or entity declaration, which is not "
			 "allowed");
	} else if (xmlInitParser(), !(ctxt = xmlNewParserCtxt())) {
		snprintf(why, size, "out of memory");
	} else if (xmlSetStructuredErrorFunc(&first, s_on_xml_error),
		   r->doc = xmlCtxtReadMemory(
			   ctxt, body, (int)len, d->current, d->latin1 ? "ISO-8859-1" : NULL,
			   XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING),
		   xmlSetStructuredErrorFunc(NULL, NULL), !r->doc || !ctxt->wellFormed) {
		snprintf(why, size, "line %d: not well-formed XML%s%s", first.line,
			 *first.text ? ": " : "", first.text);
	} else if (!(xp = xmlXPathNewContext(r->doc)) ||
		   !(r->nodes = xmlXPathEvalExpression((const xmlChar *)d->record_path, xp)) ||
		   r->nodes->type != XPATH_NODESET) {
		snprintf(why, size, "record_path '%.100s' does not select elements",
			 d->record_path);
	} else {
		rc = 0;
	}
	xmlXPathFreeContext(xp);
	xmlFreeParserCtxt(ctxt);
	free(body);
	return rc;
}

/* The next XML record (NULL at the end); its line is the element's. */
static int s_next_xml(filedrop_t *d, reader_t *r, json_t **out, char *why, size_t size)
{
	xmlNodeSetPtr set;

	if (!r->doc && s_xml_open(d, r, why, size) != 0)
		return -1;
	set = r->nodes->nodesetval;
	while (set && r->next_node < set->nodeNr) {
		xmlNodePtr node = set->nodeTab[r->next_node++];
		if (node->type != XML_ELEMENT_NODE)
			continue;
		r->lineno = xmlGetLineNo(node);
		if (!(*out = s_xml_record(node))) {
			snprintf(why, size, "line %" PRId64 ": out of memory", r->lineno);
			return -1;
		}
		return 0;
	}
	return 0;
}

/* The next record of r as a JSON object in *out (NULL at the end). Returns 0, or -1 with
 * why in buf. Blank lines are skipped. */
static int s_next_record(filedrop_t *d, reader_t *r, json_t **out, char *why, size_t size)
{
	ssize_t n;

	*out = NULL;
	if (d->xml)
		return s_next_xml(d, r, out, why, size);
	while ((n = getline(&r->line, &r->cap, r->f)) >= 0) {
		char *text = r->line, *conv = NULL, *fields[FD_MAX_FIELDS];
		const char *bad = NULL;
		json_error_t jerr;
		int count;

		r->lineno++;
		if (n > d->max_record) {
			snprintf(why, size,
				 "line %" PRId64 ": longer than max_record (%" PRId64 " bytes)",
				 r->lineno, d->max_record);
			return -1;
		}
		while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
			text[--n] = '\0';
		if ((size_t)n != strlen(text)) {
			snprintf(why, size, "line %" PRId64 ": holds a NUL byte (not text)",
				 r->lineno);
			return -1;
		}
		if (n == 0)
			continue;
		if (d->latin1 && !(text = conv = s_latin1(r->line, (size_t)n))) {
			snprintf(why, size, "out of memory");
			return -1;
		}
		if (!d->csv) {
			*out = json_loads(text, 0, &jerr);
			free(conv);
			if (!json_is_object(*out)) {
				snprintf(why, size, "line %" PRId64 ": %s", r->lineno,
					 *out ? "not a JSON object" : jerr.text);
				json_decref(*out);
				*out = NULL;
				return -1;
			}
			return 0;
		}
		if (!r->header_text) {
			/* The header row: its names are the records' keys. */
			if (!(r->header_text = strdup(text)) ||
			    (r->columns = s_csv_split(r->header_text, *d->delimiter, r->header,
						      &bad)) < 0) {
				snprintf(why, size, "line %" PRId64 " (header): %s", r->lineno,
					 bad ? bad : "out of memory");
				free(conv);
				return -1;
			}
			free(conv);
			continue;
		}
		count = s_csv_split(text, *d->delimiter, fields, &bad);
		if (count >= 0 && count != r->columns) {
			snprintf(why, size, "line %" PRId64 ": %d fields where the header has %d",
				 r->lineno, count, r->columns);
			free(conv);
			return -1;
		}
		if (count < 0) {
			snprintf(why, size, "line %" PRId64 ": %s", r->lineno, bad);
			free(conv);
			return -1;
		}
		*out = json_object();
		for (int i = 0; i < count; i++) {
			json_t *v = json_string(fields[i]);
			if (!v) {
				snprintf(why, size,
					 "line %" PRId64 ": field '%.60s' is not UTF-8 text",
					 r->lineno, r->header[i]);
				json_decref(*out);
				*out = NULL;
				free(conv);
				return -1;
			}
			json_object_set_new(*out, r->header[i], v);
		}
		free(conv);
		return 0;
	}
	if (ferror(r->f)) {
		snprintf(why, size, "read error after line %" PRId64 ": %s", r->lineno,
			 strerror(errno));
		return -1;
	}
	return 0;
}

static void s_reader_close(reader_t *r)
{
	if (r->f)
		fclose(r->f);
	free(r->line);
	free(r->header_text);
	xmlXPathFreeObject(r->nodes);
	xmlFreeDoc(r->doc);
	memset(r, 0, sizeof *r);
}

/* ---- files --------------------------------------------------------------------------------- */

/* The 64-bit FNV-1a hash of the file's content, for the events' ids. */
static int s_hash_file(FILE *f, uint64_t *hash)
{
	unsigned char buf[65536];
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t n;

	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		for (size_t i = 0; i < n; i++)
			h = (h ^ buf[i]) * 0x100000001b3ULL;
	*hash = h;
	if (ferror(f))
		return -1;
	rewind(f);
	return 0;
}

/* Renames folder/name into dir (done/ or error/), under a new name if one is there, and
 * syncs both folders. Returns 0 or -1 (errno). */
static int s_move(filedrop_t *d, const char *name, const char *dir)
{
	char from[4096], to[4096];
	int fd;

	snprintf(from, sizeof from, "%s/%s", d->folder, name);
	snprintf(to, sizeof to, "%s/%s", dir, name);
	if (access(to, F_OK) == 0)
		snprintf(to, sizeof to, "%s/%s.%" PRId64, dir, name, kanal_wall_ms());
	if (rename(from, to) != 0)
		return -1;
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY)) >= 0) {
		fsync(fd);
		close(fd);
	}
	if ((fd = open(d->folder, O_RDONLY | O_DIRECTORY)) >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

/* Refuses a file: error/<name>.reason first (so the reason is never missing), then the
 * file itself. */
static void s_refuse(kanal_ctx_t *ctx, filedrop_t *d, const char *name, const char *why)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s.reason", d->error_dir, name);
	if ((f = fopen(path, "w"))) {
		fprintf(f, "%s\n", why);
		fclose(f);
	}
	kanal_metric_add(ctx, "files_refused", 1);
	kanal_log(ctx, KANAL_LOG_WARN, "file '%s' refused: %s; moved to error/", name, why);
	if (s_move(d, name, d->error_dir) != 0)
		kanal_log(ctx, KANAL_LOG_ERROR, "cannot move '%s' to error/: %s", name,
			  strerror(errno));
}

/* The event the `map` program makes of one record, or NULL with why. */
static kanal_msg_t *s_map_record(filedrop_t *d, json_t *rec, const char *id, int64_t lineno,
				 char *why, size_t size)
{
	kc_jq_event_defaults_t def = { .type = d->type, .source = d->instance, .id = id };
	char *text = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
	jv file = jv_object_set(jv_object_set(jv_object(), jv_string("name"),
					      jv_string(d->current ? d->current : "")),
				jv_string("line"), jv_number((double)lineno));
	kanal_msg_t *msg = NULL;
	kanal_error_t err;

	kanal_error_clear(&err);
	if (!text) {
		jv_free(file);
		snprintf(why, size, "line %" PRId64 ": out of memory", lineno);
		return NULL;
	}
	if (kc_jq_map_event(d->map_jq, text, file, &def, &msg, &err) != 0)
		snprintf(why, size, "line %" PRId64 ": %.250s", lineno, err.text);
	free(text);
	return msg;
}

/* The event for one record. */
static kanal_msg_t *s_event(filedrop_t *d, json_t *rec, uint64_t hash, int64_t lineno, char *why,
			    size_t size)
{
	char id[96];
	const char *own = d->id_field ? json_string_value(json_object_get(rec, d->id_field)) : NULL;
	kanal_msg_t *msg;
	char *text;
	int rc;

	if (d->id_field && (!own || !*own || strlen(own) > 200)) {
		snprintf(why, size, "line %" PRId64 ": no string '%.60s' for the event's id",
			 lineno, d->id_field);
		return NULL;
	}
	snprintf(id, sizeof id, "file-%016" PRIx64 "-%" PRId64, hash, lineno);
	if (d->map_jq)
		return s_map_record(d, rec, own ? own : id, lineno, why, size);
	if (!(msg = kanal_msg_new(d->type, d->instance, own ? own : id))) {
		snprintf(why, size, "line %" PRId64 ": cannot make the event", lineno);
		return NULL;
	}
	text = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
	rc = text ? kanal_msg_set_data_json(msg, text, strlen(text)) : KANAL_ENOMEM;
	free(text);
	if (rc != 0) {
		snprintf(why, size, "line %" PRId64 ": %s", lineno, kanal_strerror(rc));
		kanal_msg_destroy(&msg);
	}
	return msg;
}

/* Reads the whole file once to check every record (and map it: the id field). Returns 0,
 * or -1 with why. */
static int s_check_file(filedrop_t *d, FILE *f, uint64_t hash, char *why, size_t size)
{
	reader_t r = { .f = f };
	json_t *rec;
	int rc;

	while ((rc = s_next_record(d, &r, &rec, why, size)) == 0 && rec) {
		kanal_msg_t *msg = s_event(d, rec, hash, r.lineno, why, size);
		json_decref(rec);
		if (!msg) {
			rc = -1;
			break;
		}
		kanal_msg_destroy(&msg);
	}
	r.f = NULL;
	s_reader_close(&r);
	rewind(f);
	return rc;
}

/* Emits every record of a checked file. Returns 0 or a KANAL_E code from the bus. */
static int s_emit_file(kanal_ctx_t *ctx, filedrop_t *d, FILE *f, uint64_t hash, int64_t *count)
{
	reader_t r = { .f = f };
	char why[300];
	json_t *rec;
	int rc = 0;

	while (rc == 0 && s_next_record(d, &r, &rec, why, sizeof why) == 0 && rec) {
		kanal_msg_t *msg = s_event(d, rec, hash, r.lineno, why, sizeof why);

		rc = msg ? kanal_emit(ctx, &msg) : KANAL_EINVAL;
		/* The bus is full: wait until it has taken what it holds, then once more (the
		 * emit took the event: make it again). */
		if (rc == KANAL_EBUSY && (rc = kanal_emit_flush(ctx, FD_FLUSH_TIMEOUT_MS)) == 0)
			rc = (msg = s_event(d, rec, hash, r.lineno, why, sizeof why))
				     ? kanal_emit(ctx, &msg)
				     : KANAL_EINVAL;
		json_decref(rec);
		if (rc == 0)
			(*count)++;
	}
	r.f = NULL;
	s_reader_close(&r);
	return rc;
}

/* Handles one file that has settled: check, emit, flush, move. Returns false when the bus
 * could not take it now (the file stays for the next scan). */
static bool s_process(kanal_ctx_t *ctx, filedrop_t *d, const char *name)
{
	char path[4096], why[400];
	uint64_t hash;
	int64_t count = 0;
	FILE *f;
	int fd, rc;

	snprintf(path, sizeof path, "%s/%s", d->folder, name);
	d->current = name;
	/* O_NOFOLLOW: a symlink swapped in after the scan is refused, never followed. */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || !(f = fdopen(fd, "r"))) {
		if (fd >= 0)
			close(fd);
		if (errno == ENOENT)
			return true; /* gone since the scan */
		snprintf(why, sizeof why, "cannot open it: %s", strerror(errno));
		s_refuse(ctx, d, name, why);
		return true;
	}
	if (s_hash_file(f, &hash) != 0) {
		snprintf(why, sizeof why, "cannot read it: %s", strerror(errno));
		fclose(f);
		s_refuse(ctx, d, name, why);
		return true;
	}
	if (s_check_file(d, f, hash, why, sizeof why) != 0) {
		fclose(f);
		s_refuse(ctx, d, name, why);
		return true;
	}
	rc = s_emit_file(ctx, d, f, hash, &count);
	fclose(f);
	if (rc == 0)
		rc = kanal_emit_flush(ctx, FD_FLUSH_TIMEOUT_MS);
	if (rc != 0) {
		/* Some events may be in: the next scan emits the file again with the same ids,
		 * and kanald drops those it holds. */
		kanal_log(ctx, KANAL_LOG_WARN,
			  "file '%s' not finished (%s); it stays for the "
			  "next scan",
			  name, kanal_strerror(rc));
		return false;
	}
	kanal_metric_add(ctx, "emitted", count);
	kanal_metric_add(ctx, "files_done", 1);
	if (s_move(d, name, d->done_dir) != 0) {
		kanal_log(ctx, KANAL_LOG_ERROR,
			  "cannot move '%s' to done/: %s; its events are "
			  "in and would be dropped as duplicates if read again",
			  name, strerror(errno));
		return false;
	}
	kanal_log(ctx, KANAL_LOG_INFO, "file '%s': %" PRId64 " events; moved to done/", name,
		  count);
	return true;
}

/* ---- scanning ------------------------------------------------------------------------------ */

static int s_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* True when name is one to take now. A symlink is refused at once (moved to error/). */
static bool s_ready(kanal_ctx_t *ctx, filedrop_t *d, const char *name, int64_t now)
{
	size_t n = strlen(name);
	char path[4096];
	struct stat st;

	if (name[0] == '.' || fnmatch(d->pattern, name, FNM_PERIOD) != 0 ||
	    (n > 4 && !strcmp(name + n - 4, ".tmp")) || (n > 5 && !strcmp(name + n - 5, ".part")))
		return false;
	snprintf(path, sizeof path, "%s/%s", d->folder, name);
	if (lstat(path, &st) != 0)
		return false;
	if (S_ISLNK(st.st_mode)) {
		s_refuse(ctx, d, name,
			 "a symbolic link: only regular files dropped into the "
			 "folder are read");
		return false;
	}
	return S_ISREG(st.st_mode) &&
	       now - ((int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000) >=
		       d->settle_ms;
}

static void s_scan(kanal_ctx_t *ctx, void *arg)
{
	filedrop_t *d = arg;
	DIR *dir = opendir(d->folder);
	struct dirent *e;
	char **names = NULL;
	size_t count = 0, cap = 0;
	int64_t now = kanal_wall_ms();

	if (d->stopped)
		return;
	if (!dir) {
		kanal_log(ctx, KANAL_LOG_ERROR, "cannot read folder '%s': %s", d->folder,
			  strerror(errno));
		return;
	}
	while ((e = readdir(dir))) {
		if (!s_ready(ctx, d, e->d_name, now))
			continue;
		if (count == cap) {
			char **grown = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof *names);
			if (!grown)
				break;
			names = grown;
		}
		if (!(names[count] = strdup(e->d_name)))
			break;
		count++;
	}
	closedir(dir);
	if (count) /* qsort wants an array, even of none */
		qsort(names, count, sizeof *names, s_name_cmp);
	for (size_t i = 0; i < count && !d->stopped; i++)
		if (!s_process(ctx, d, names[i]))
			break;
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

static void s_destroy(void *state)
{
	filedrop_t *d = state;

	if (!d)
		return;
	kc_jq_destroy(&d->map_jq);
	free(d->done_dir);
	free(d->error_dir);
	free(d);
}

static int s_mkdir(kanal_ctx_t *ctx, const char *path)
{
	if (mkdir(path, 0750) != 0 && errno != EEXIST) {
		kanal_set_error(ctx, "cannot make folder '%s': %s", path, strerror(errno));
		return KANAL_ECONFIG;
	}
	return 0;
}

/* The rules init and check share (docs/sdk.md, "Checking a config"): type or map, a map
 * that compiles, a one-character delimiter, and a folder that exists. Reads only; the
 * compiled map stays in d for init. Returns 0 or a KANAL_E* code after kanal_set_error. */
static int s_validate(kanal_ctx_t *ctx, filedrop_t *d)
{
	struct stat st;

	d->instance = kanal_instance_name(ctx);
	d->csv = !strcmp(d->format, "csv");
	d->xml = !strcmp(d->format, "xml");
	d->latin1 = !strcmp(d->encoding, "iso-8859-1");
	if (!d->type && !d->map) {
		kanal_set_error(ctx, "give the option 'type' (the events' type) or 'map' (a jq "
				     "program whose output names it)");
		return KANAL_ECONFIG;
	}
	if (d->map && kc_jq_option(ctx, "map", d->map, "file", &d->map_jq) != 0)
		return KANAL_ECONFIG;
	if (strlen(d->delimiter) != 1 || *d->delimiter == '"') {
		kanal_set_error(ctx, "option 'delimiter' must be one character other than '\"'");
		return KANAL_ECONFIG;
	}
	if (stat(d->folder, &st) != 0 || !S_ISDIR(st.st_mode)) {
		kanal_set_error(ctx, "option 'folder': '%s' is not a folder", d->folder);
		return KANAL_ECONFIG;
	}
	return 0;
}

static int s_check(kanal_ctx_t *ctx, const kanal_config_t *cfg)
{
	filedrop_t *d = calloc(1, sizeof *d);
	int rc;

	if (!d)
		return KANAL_ENOMEM;
	kanal_config_bind(cfg, d);
	rc = s_validate(ctx, d);
	s_destroy(d);
	return rc;
}

/* After s_validate, makes done/ and error/ in the folder. */
static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	filedrop_t *d = calloc(1, sizeof *d);
	int rc;

	if (!d) {
		kanal_set_error(ctx, "out of memory");
		return KANAL_ENOMEM;
	}
	kanal_config_bind(cfg, d);
	rc = s_validate(ctx, d);
	if (rc == 0 && (asprintf(&d->done_dir, "%s/done", d->folder) < 0 ||
			asprintf(&d->error_dir, "%s/error", d->folder) < 0)) {
		kanal_set_error(ctx, "out of memory");
		rc = KANAL_ENOMEM;
	}
	if (rc == 0)
		rc = s_mkdir(ctx, d->done_dir);
	if (rc == 0)
		rc = s_mkdir(ctx, d->error_dir);
	if (rc != 0) {
		s_destroy(d);
		return rc;
	}
	*state = d;
	return 0;
}

static int s_start(kanal_ctx_t *ctx, void *state)
{
	filedrop_t *d = state;
	int64_t t;

	kanal_metric_add(ctx, "emitted", 0);
	kanal_metric_add(ctx, "files_done", 0);
	kanal_metric_add(ctx, "files_refused", 0);
	t = kanal_timer_add(ctx, 0, d->scan_interval_ms, s_scan, d);
	if (t < 0) {
		kanal_set_error(ctx, "cannot add the scan timer: %s", kanal_strerror((int)t));
		return (int)t;
	}
	d->timer = t;
	kanal_log(ctx, KANAL_LOG_INFO, "watching '%s' for %s (%s) every %" PRId64 " ms", d->folder,
		  d->pattern, d->format, d->scan_interval_ms);
	return 0;
}

static void s_stop(kanal_ctx_t *ctx, void *state, int64_t deadline_ms)
{
	filedrop_t *d = state;

	(void)deadline_ms;
	d->stopped = true;
	if (d->timer > 0)
		kanal_timer_cancel(ctx, d->timer);
	d->timer = 0;
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	kanal_set_error(ctx,
			"instance '%s' is a filedrop source and accepts no events; route %s "
			"elsewhere",
			((filedrop_t *)state)->instance, kanal_msg_type(msg));
	return KANAL_OUTCOME_REJECT;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "filedrop",
	.version = KANAL_VERSION,
	.description = "Reads the files another system drops into a folder (JSON Lines, CSV, "
		       "XML): one event per record, each file exactly once, then done/ or error/.",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.on_message = s_on_message,
	.stop = s_stop,
	.check = s_check,
	.destroy = s_destroy,
};
