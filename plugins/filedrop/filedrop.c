/*
 * plugins/filedrop/filedrop.c — the `filedrop` connector (the file-in): a folder
 * another system drops its exports into (JSON Lines, CSV with a header row, or XML: the
 * elements an XPath selects), each file turned into one event per record exactly once,
 * optionally shaped by a jq `map:` program (the sandboxed runner of plugins/common/kc_jq.h),
 * with files a record names (a payslip's PDF) put into the blob store
 * (docs/plugins/filedrop.md).
 *
 * inotify tells the instance when a file is written or moved into the folder, and a timer
 * rescans the folder every scan_interval as a safety net (a network file system, a missed
 * event). A file is taken when it is a regular file (a symlink is refused), matches
 * `pattern`, is not hidden (a leading dot) or a .tmp/.part, and is ready: not empty and
 * unmodified for `settle` (ready: settle), or announced by a `<name>.done` marker file
 * (ready: marker).
 * Files go oldest name first.
 *
 * Each file is read twice, line by line, so memory stays bounded by the longest record
 * (max_record) however large the file (max_file_size refuses larger ones unread): the first
 * pass checks every record and hashes the content, and a file with one bad record (not JSON,
 * not an object, a CSV row with the wrong number of fields or a broken quote, bytes that are
 * not text in the encoding) is refused whole — moved to failed/ with a <name>.error naming
 * the line and the cause — and emits nothing. The second pass emits each record,
 * kanal_emit_flush waits until all are durable in kanald, and only then is the file renamed
 * into done/. An event's id is derived from the file's content (a 64-bit FNV-1a hash) and
 * the record's line, so a crash between the emits and the rename makes the next run emit the
 * same ids again, which kanald's duplicate suppression on (source, id) drops. A file that
 * changes between the passes is never emitted under other ids: it is read again later, or,
 * once emitting has begun, moved to failed/ saying how much went out. Every callback runs on
 * the instance's own thread.
 */
#include "../common/kc_jq.h"

#include <kanal/blob.h>
#include <kanal/kanal.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>

#define FD_FLUSH_TIMEOUT_MS 30000
#define FD_MAX_FIELDS 1024
#define FD_MAX_XML (64 * 1024 * 1024) /* an XML export is parsed whole: its largest size */
#define FD_FNV_BASIS 0xcbf29ce484222325ULL
#define FD_FNV_PRIME 0x100000001b3ULL

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
	const char *ready;
	kanal_strlist_t attach;
	int64_t settle_ms;
	int64_t scan_interval_ms;
	int64_t max_record;
	int64_t max_file_size;
	int64_t max_attachment;
	const char *instance;
	char *done_dir, *failed_dir;
	int64_t timer;
	int64_t soon_timer;  /* the one-shot scan inotify asked for, or 0 */
	int inotify_fd;      /* -1 without inotify: the timer alone then */
	kc_jq_t *map_jq;     /* the compiled `map`, or NULL */
	const char *current; /* the file being read (its name) */
	char **attached;     /* the files the records of the file being emitted attached */
	size_t attached_count, attached_cap;
	bool csv, xml, latin1, marker, stopped;
} filedrop_t;

static const char *const s_formats[] = { "jsonl", "csv", "xml", NULL };
static const char *const s_encodings[] = { "utf-8", "iso-8859-1", NULL };
static const char *const s_readies[] = { "settle", "marker", NULL };

static const kanal_option_t s_options[] = {
	{ .name = "folder",
	  .type = KANAL_OPT_PATH,
	  .required = true,
	  KANAL_OPT_AT(filedrop_t, folder),
	  .help = "The drop folder; done/ and failed/ are made inside it." },
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
	{ .name = "ready",
	  .type = KANAL_OPT_STRING,
	  .default_value = "settle",
	  .allowed = s_readies,
	  KANAL_OPT_AT(filedrop_t, ready),
	  .help = "When a file is complete: settle (unmodified for `settle`) or marker (a "
		  "<name>.done file beside it)." },
	{ .name = "settle",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "2s",
	  KANAL_OPT_AT(filedrop_t, settle_ms),
	  .help = "With ready: settle, a file is read only when unmodified for this long." },
	{ .name = "scan_interval",
	  .type = KANAL_OPT_DURATION,
	  .default_value = "10s",
	  .min = "10ms",
	  KANAL_OPT_AT(filedrop_t, scan_interval_ms),
	  .help = "Time between two rescans of the folder (inotify sees new files at once)." },
	{ .name = "max_file_size",
	  .type = KANAL_OPT_SIZE,
	  .default_value = "1GiB",
	  .min = "64",
	  KANAL_OPT_AT(filedrop_t, max_file_size),
	  .help = "Largest file read; a larger one goes to failed/ unread." },
	{ .name = "attach",
	  .type = KANAL_OPT_LIST,
	  KANAL_OPT_AT(filedrop_t, attach),
	  .help = "Record fields naming a file in the folder (e.g. a PDF) that is put into the "
		  "blob store; the field becomes {filename, href, mediaType, size}." },
	{ .name = "max_attachment",
	  .type = KANAL_OPT_SIZE,
	  .default_value = "32MiB",
	  .min = "1",
	  KANAL_OPT_AT(filedrop_t, max_attachment),
	  .help = "Largest file an `attach` field may name." },
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

/* One file being read: the stream, the CSV header, the line number, and the FNV-1a hash of
 * every byte read so far. */
typedef struct reader {
	FILE *f;
	char *line;
	size_t cap;
	uint64_t hash;
	int64_t lineno;
	char *header_text;
	char *header[FD_MAX_FIELDS];
	int columns;
	xmlDocPtr doc;           /* xml: the parsed file */
	xmlXPathObjectPtr nodes; /* xml: the record elements */
	int next_node;
} reader_t;

static void s_hash_bytes(uint64_t *hash, const char *p, size_t len)
{
	uint64_t h = *hash;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)p[i]) * FD_FNV_PRIME;
	*hash = h;
}

/* Reads one line, its newline included, into r->line (NUL-terminated) and hashes it. Never
 * holds more than max + 1 bytes, whatever the file: a longer line stops the read. Returns
 * the line's length, -1 at the end of the file (or a read error: ferror), or -2 for a line
 * longer than max. */
static ssize_t s_read_line(reader_t *r, int64_t max)
{
	size_t n = 0;
	int c;

	for (;;) {
		if (n + 2 > r->cap) {
			size_t cap = r->cap ? r->cap * 2 : 4096;
			char *grown;
			if (cap > (size_t)max + 2)
				cap = (size_t)max + 2;
			if (cap < n + 2 || !(grown = realloc(r->line, cap)))
				return -2;
			r->line = grown;
			r->cap = cap;
		}
		if ((c = getc_unlocked(r->f)) == EOF)
			break;
		r->line[n++] = (char)c;
		r->hash = (r->hash ^ (unsigned char)c) * FD_FNV_PRIME;
		if (c == '\n')
			break;
		if ((int64_t)n > max)
			return -2;
	}
	r->line[n] = '\0';
	return n ? (ssize_t)n : -1;
}

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
	} else if (s_hash_bytes(&r->hash, body, len),
		   memmem(body, len, "<!DOCTYPE", 9) || memmem(body, len, "<!ENTITY", 8)) {
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
	while ((n = s_read_line(r, d->max_record)) != -1) {
		char *text = r->line, *conv = NULL, *fields[FD_MAX_FIELDS];
		const char *bad = NULL;
		json_error_t jerr;
		int count;

		r->lineno++;
		if (n == -2) {
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

static void s_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* The name folder/name gets in dir (done/ or failed/): its own, or with a .<milliseconds>
 * suffix when that is taken, never overwriting. */
static void s_target(const char *dir, const char *name, char *to, size_t size)
{
	snprintf(to, size, "%s/%s", dir, name);
	if (access(to, F_OK) == 0)
		snprintf(to, size, "%s/%s.%" PRId64, dir, name, kanal_wall_ms());
}

/* Renames folder/name to `to` and syncs both folders. Returns 0 or -1 (errno). */
static int s_move_to(filedrop_t *d, const char *name, const char *dir, const char *to)
{
	char from[4096];

	snprintf(from, sizeof from, "%s/%s", d->folder, name);
	if (rename(from, to) != 0)
		return -1;
	s_sync_dir(dir);
	s_sync_dir(d->folder);
	return 0;
}

/* Removes name's `.done` marker (ready: marker), once the file has left the folder. */
static void s_drop_marker(filedrop_t *d, const char *name)
{
	char path[4096];

	if (d->marker) {
		snprintf(path, sizeof path, "%s/%s.done", d->folder, name);
		unlink(path);
	}
}

/* Refuses a file: failed/<name>.error first (so the reason is never missing), then the
 * file itself under the same name. The .error is written under a .tmp name and renamed, so
 * whoever watches failed/ never reads it empty or half-written. */
static void s_refuse(kanal_ctx_t *ctx, filedrop_t *d, const char *name, const char *why)
{
	char to[4096], path[4200], tmp[4210];
	FILE *f;

	s_target(d->failed_dir, name, to, sizeof to);
	snprintf(path, sizeof path, "%s.error", to);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if ((f = fopen(tmp, "we"))) {
		bool written =
			fprintf(f, "%s\n", why) >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
		if (fclose(f) != 0 || !written || rename(tmp, path) != 0)
			unlink(tmp);
	}
	kanal_metric_add(ctx, "files_refused", 1);
	kanal_log(ctx, KANAL_LOG_WARN, "file '%s' refused: %s; moved to failed/", name, why);
	if (s_move_to(d, name, d->failed_dir, to) != 0 && errno != ENOENT)
		kanal_log(ctx, KANAL_LOG_ERROR, "cannot move '%s' to failed/: %s", name,
			  strerror(errno));
	s_drop_marker(d, name);
}

/* The media type a file name's extension says, for an attached file. */
static const char *s_media_type(const char *name)
{
	static const char *const types[][2] = {
		{ ".pdf", "application/pdf" }, { ".xml", "application/xml" },
		{ ".txt", "text/plain" },      { ".html", "text/html" },
		{ ".jpg", "image/jpeg" },      { ".jpeg", "image/jpeg" },
		{ ".png", "image/png" },
	};
	const char *dot = strrchr(name, '.');

	for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
		if (!strcasecmp(dot, types[i][0]))
			return types[i][1];
	return "application/octet-stream";
}

/* Reads the file an `attach` field names (a plain name in the folder: no path, not hidden,
 * a regular file, not a symlink, at most max_attachment) into the blob store and replaces
 * the field with its reference; appends the blob's URI to uris. Returns 0, or -1 with why. */
static int s_attach_one(kanal_ctx_t *ctx, filedrop_t *d, json_t *rec, const char *field, char *uris,
			size_t uris_size, char *why, size_t size)
{
	const char *name = json_string_value(json_object_get(rec, field));
	char path[4096];
	struct stat st;
	kanal_blob_ref_t ref;
	kanal_error_t err;
	char *buf = NULL;
	ssize_t got = 0;
	int fd = -1, rc = -1;

	kanal_error_clear(&err);
	if (!name || !*name || strchr(name, '/') || name[0] == '.' || strlen(name) > 255) {
		snprintf(why, size, "field '%.60s' does not name a file in the folder", field);
		return -1;
	}
	snprintf(path, sizeof path, "%s/%s", d->folder, name);
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
		snprintf(why, size, "attachment '%.100s': %s", name,
			 errno == ELOOP ? "a symbolic link (not read)" : strerror(errno));
		goto done;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > d->max_attachment) {
		snprintf(why, size, "attachment '%.100s': %s", name,
			 S_ISREG(st.st_mode) ? "larger than max_attachment" : "not a regular file");
		goto done;
	}
	if (!(buf = malloc((size_t)st.st_size + 1)) ||
	    (got = read(fd, buf, (size_t)st.st_size)) != (ssize_t)st.st_size) {
		snprintf(why, size, "attachment '%.100s': %s", name,
			 buf ? "cannot read it whole" : "out of memory");
		goto done;
	}
	if (kanal_blob_put(ctx, buf, (size_t)got, s_media_type(name), &ref, &err) != 0) {
		snprintf(why, size, "attachment '%.100s': %.200s", name, err.text);
		goto done;
	}
	if (strlen(uris) + strlen(ref.uri) + 2 > uris_size) {
		snprintf(why, size, "too many attachments in one record");
		goto done;
	}
	if (*uris)
		strcat(uris, " ");
	strcat(uris, ref.uri);
	json_object_set_new(rec, field,
			    json_pack("{s:s, s:s, s:s, s:I}", "filename", name, "href", ref.uri,
				      "mediaType", ref.media_type, "size", (json_int_t)ref.size));
	rc = 0;
done:
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

/* Remembers an attached file's name, to move it into done/ with its file. */
static void s_remember_attached(filedrop_t *d, const char *name)
{
	if (d->attached_count == d->attached_cap) {
		size_t cap = d->attached_cap ? d->attached_cap * 2 : 16;
		char **grown = realloc(d->attached, cap * sizeof *grown);
		if (!grown)
			return;
		d->attached = grown;
		d->attached_cap = cap;
	}
	if ((d->attached[d->attached_count] = strdup(name)))
		d->attached_count++;
}

static void s_forget_attached(filedrop_t *d)
{
	for (size_t i = 0; i < d->attached_count; i++)
		free(d->attached[i]);
	d->attached_count = 0;
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

/* The event for one record (its attachments put into the blob store first; `remember`: note
 * their names for the move into done/). */
static kanal_msg_t *s_event(kanal_ctx_t *ctx, filedrop_t *d, json_t *rec, uint64_t hash,
			    int64_t lineno, bool remember, char *why, size_t size)
{
	char id[96], uris[1024] = "", bad[400];
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
	for (size_t i = 0; i < d->attach.count; i++) {
		const char *field = d->attach.items[i];
		const char *name = json_string_value(json_object_get(rec, field));
		if (remember && name)
			s_remember_attached(d, name);
		if (s_attach_one(ctx, d, rec, field, uris, sizeof uris, bad, sizeof bad) != 0) {
			snprintf(why, size, "line %" PRId64 ": %.330s", lineno, bad);
			return NULL;
		}
	}
	if (d->map_jq)
		msg = s_map_record(d, rec, own ? own : id, lineno, why, size);
	else if (!(msg = kanal_msg_new(d->type, d->instance, own ? own : id)))
		snprintf(why, size, "line %" PRId64 ": cannot make the event", lineno);
	if (msg && *uris && kanal_msg_set_attr(msg, KANAL_BLOB_ATTRIBUTE, uris, NULL) != 0) {
		snprintf(why, size, "line %" PRId64 ": cannot name its attachments", lineno);
		kanal_msg_destroy(&msg);
	}
	if (!msg || d->map_jq)
		return msg;
	text = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
	rc = text ? kanal_msg_set_data_json(msg, text, strlen(text)) : KANAL_ENOMEM;
	free(text);
	if (rc != 0) {
		snprintf(why, size, "line %" PRId64 ": %s", lineno, kanal_strerror(rc));
		kanal_msg_destroy(&msg);
	}
	return msg;
}

/* Reads the whole file once to check every record (and map it: the id field) and to hash
 * it into *hash; counts the records. Returns 0, or -1 with why. */
static int s_check_file(kanal_ctx_t *ctx, filedrop_t *d, FILE *f, uint64_t *hash, int64_t *records,
			char *why, size_t size)
{
	reader_t r = { .f = f, .hash = FD_FNV_BASIS };
	json_t *rec;
	int rc;

	*records = 0;
	while ((rc = s_next_record(d, &r, &rec, why, size)) == 0 && rec) {
		kanal_msg_t *msg = s_event(ctx, d, rec, 0, r.lineno, false, why, size);
		json_decref(rec);
		if (!msg) {
			rc = -1;
			break;
		}
		kanal_msg_destroy(&msg);
		(*records)++;
	}
	*hash = r.hash;
	r.f = NULL;
	s_reader_close(&r);
	rewind(f);
	return rc;
}

/* Emits every record of a checked file, counting them in *count. Returns 0, a KANAL_E code
 * from the bus, or KANAL_EIO when a record could not be read or made again (the file
 * changed since the check), with why. */
static int s_emit_file(kanal_ctx_t *ctx, filedrop_t *d, FILE *f, uint64_t hash, int64_t *count,
		       char *why, size_t size)
{
	reader_t r = { .f = f, .hash = FD_FNV_BASIS };
	json_t *rec;
	int rc = 0;

	while (rc == 0 && (rc = s_next_record(d, &r, &rec, why, size)) == 0 && rec) {
		kanal_msg_t *msg = s_event(ctx, d, rec, hash, r.lineno, true, why, size);

		rc = msg ? kanal_emit(ctx, &msg) : KANAL_EIO;
		/* The bus is full: wait until it has taken what it holds, then once more (the
		 * emit took the event: make it again). */
		if (rc == KANAL_EBUSY && (rc = kanal_emit_flush(ctx, FD_FLUSH_TIMEOUT_MS)) == 0)
			rc = (msg = s_event(ctx, d, rec, hash, r.lineno, false, why, size))
				     ? kanal_emit(ctx, &msg)
				     : KANAL_EIO;
		json_decref(rec);
		if (rc == 0)
			(*count)++;
	}
	if (rc == -1)
		rc = KANAL_EIO;
	r.f = NULL;
	s_reader_close(&r);
	return rc;
}

/* True when the file behind fd is no longer what `before` describes (written to since). */
static bool s_changed(int fd, const struct stat *before)
{
	struct stat now;

	return fstat(fd, &now) != 0 || now.st_size != before->st_size ||
	       now.st_mtim.tv_sec != before->st_mtim.tv_sec ||
	       now.st_mtim.tv_nsec != before->st_mtim.tv_nsec;
}

/* Moves the files the records attached into done/ after their file. */
static void s_move_attached(kanal_ctx_t *ctx, filedrop_t *d)
{
	char to[4096];

	for (size_t i = 0; i < d->attached_count; i++) {
		s_target(d->done_dir, d->attached[i], to, sizeof to);
		if (s_move_to(d, d->attached[i], d->done_dir, to) != 0 && errno != ENOENT)
			kanal_log(ctx, KANAL_LOG_WARN, "cannot move attachment '%s' to done/: %s",
				  d->attached[i], strerror(errno));
	}
	s_forget_attached(d);
}

/* Handles one file that is ready: check, emit, flush, move. Returns false when the bus could
 * not take it now (the file stays for the next scan). */
static bool s_process(kanal_ctx_t *ctx, filedrop_t *d, const char *name)
{
	char path[4096], to[4096], why[400];
	uint64_t hash;
	int64_t count = 0, records = 0;
	struct stat st;
	FILE *f;
	int fd, rc;

	snprintf(path, sizeof path, "%s/%s", d->folder, name);
	d->current = name;
	/* O_NOFOLLOW: a symlink swapped in after the scan is refused, never followed. */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0 || !(f = fdopen(fd, "r"))) {
		if (fd >= 0)
			close(fd);
		if (errno == ENOENT)
			return true; /* gone since the scan */
		snprintf(why, sizeof why, "cannot open it: %s",
			 errno == ELOOP ? "a symbolic link (not followed)" : strerror(errno));
		s_refuse(ctx, d, name, why);
		return true;
	}
	if (st.st_size > d->max_file_size) {
		snprintf(why, sizeof why,
			 "%" PRId64 " bytes, larger than max_file_size (%" PRId64 "); not read",
			 (int64_t)st.st_size, d->max_file_size);
		fclose(f);
		s_refuse(ctx, d, name, why);
		return true;
	}
	rc = s_check_file(ctx, d, f, &hash, &records, why, sizeof why);
	if (s_changed(fd, &st)) {
		/* Written to while being checked (a bad record may only be a half-written one):
		 * nothing went out; read it when it is ready. */
		kanal_log(ctx, KANAL_LOG_INFO,
			  "file '%s' changed while being read; read again later", name);
		fclose(f);
		return true;
	}
	if (rc != 0) {
		fclose(f);
		s_refuse(ctx, d, name, why);
		return true;
	}
	s_forget_attached(d);
	rc = s_emit_file(ctx, d, f, hash, &count, why, sizeof why);
	if ((rc == 0 || rc == KANAL_EIO) && (s_changed(fd, &st) || count != records)) {
		/* Changed under the emit: the next read would make other ids, duplicates of what
		 * went out. The file is refused, saying how much of it was emitted. */
		char changed[600];
		snprintf(changed, sizeof changed,
			 "the file changed while its events were emitted: %" PRId64 " of %" PRId64
			 " records went out (ids from the content as first read)%s%s",
			 count, records, rc ? "; " : "", rc ? why : "");
		fclose(f);
		kanal_emit_flush(ctx, FD_FLUSH_TIMEOUT_MS);
		kanal_metric_add(ctx, "emitted", count);
		s_forget_attached(d);
		s_refuse(ctx, d, name, changed);
		return true;
	}
	fclose(f);
	if (rc == 0)
		rc = kanal_emit_flush(ctx, FD_FLUSH_TIMEOUT_MS);
	if (rc != 0) {
		/* Some events may be in: the next scan emits the file again with the same ids,
		 * and kanald drops those it holds. */
		kanal_log(ctx, KANAL_LOG_WARN,
			  "file '%s' not finished (%s); it stays for the "
			  "next scan",
			  name, rc == KANAL_EIO ? why : kanal_strerror(rc));
		s_forget_attached(d);
		return false;
	}
	kanal_metric_add(ctx, "emitted", count);
	kanal_metric_add(ctx, "files_done", 1);
	s_target(d->done_dir, name, to, sizeof to);
	if (s_move_to(d, name, d->done_dir, to) == 0) {
		kanal_log(ctx, KANAL_LOG_INFO, "file '%s': %" PRId64 " events; moved to done/",
			  name, count);
	} else if (errno == ENOENT) {
		/* Deleted while being read: the open descriptor still read it whole, and every
		 * record went out; there is nothing left to move or to read again. */
		kanal_metric_add(ctx, "files_vanished", 1);
		kanal_log(ctx, KANAL_LOG_WARN,
			  "file '%s' was deleted while being read; all its %" PRId64
			  " events were emitted, and it is not in done/",
			  name, count);
	} else {
		kanal_log(ctx, KANAL_LOG_ERROR,
			  "cannot move '%s' to done/: %s; its events are "
			  "in and would be dropped as duplicates if read again",
			  name, strerror(errno));
		s_forget_attached(d);
		return false;
	}
	s_move_attached(ctx, d);
	s_drop_marker(d, name);
	return true;
}

/* ---- scanning ------------------------------------------------------------------------------ */

static int s_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool s_ends_with(const char *name, size_t n, const char *suffix)
{
	size_t len = strlen(suffix);

	return n > len && !strcmp(name + n - len, suffix);
}

/* True when name is one to take now. A symlink is refused at once (moved to failed/). With
 * ready: settle an empty file is never taken: every file written in place is empty for a
 * moment after its creation, and a scan in that moment would send it to done/ without its
 * records (the writer then filling the file in done/). */
static bool s_ready(kanal_ctx_t *ctx, filedrop_t *d, const char *name, int64_t now)
{
	size_t n = strlen(name);
	char path[4096];
	struct stat st;

	if (name[0] == '.' || fnmatch(d->pattern, name, FNM_PERIOD) != 0 ||
	    s_ends_with(name, n, ".tmp") || s_ends_with(name, n, ".part") ||
	    (d->marker && s_ends_with(name, n, ".done")))
		return false;
	if (d->marker) {
		/* The writer's "complete" is the marker beside the file. */
		snprintf(path, sizeof path, "%s/%s.done", d->folder, name);
		if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
			return false;
	}
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
	       (d->marker || (st.st_size > 0 && now - ((int64_t)st.st_mtim.tv_sec * 1000 +
						       st.st_mtim.tv_nsec / 1000000) >=
							d->settle_ms));
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

/* The one-shot scan inotify asked for. */
static void s_scan_soon(kanal_ctx_t *ctx, void *arg)
{
	filedrop_t *d = arg;

	d->soon_timer = 0;
	s_scan(ctx, d);
}

/* inotify: something was written, moved or made in the folder. The events are only a
 * wake-up: the scan decides. With ready: settle the scan comes once the newest file can
 * have settled (each event moves it later); a marker is read at once. */
static void s_on_inotify(kanal_ctx_t *ctx, int fd, int events, void *arg)
{
	filedrop_t *d = arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int64_t t;

	(void)events;
	while (read(fd, buf, sizeof buf) > 0)
		;
	if (d->stopped)
		return;
	if (d->soon_timer > 0)
		kanal_timer_cancel(ctx, d->soon_timer);
	d->soon_timer = 0;
	t = kanal_timer_add(ctx, d->marker ? 0 : d->settle_ms + 20, 0, s_scan_soon, d);
	if (t > 0)
		d->soon_timer = t;
}

/* Watches the folder with inotify; without it (a file system that has none) the rescans
 * alone find the files. */
static void s_watch(kanal_ctx_t *ctx, filedrop_t *d)
{
	/* A file closed after writing, moved in, or touched: the moments a file may have become
	 * complete. Not its creation or each write: a scan then would find it half-written. */
	const uint32_t mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_ATTRIB;

	d->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (d->inotify_fd < 0 || inotify_add_watch(d->inotify_fd, d->folder, mask) < 0 ||
	    kanal_fd_watch(ctx, d->inotify_fd, KANAL_FD_READ, s_on_inotify, d) != 0) {
		kanal_log(ctx, KANAL_LOG_WARN,
			  "no inotify on '%s' (%s): new files are found by the rescan every "
			  "%" PRId64 " ms",
			  d->folder, strerror(errno), d->scan_interval_ms);
		if (d->inotify_fd >= 0)
			close(d->inotify_fd);
		d->inotify_fd = -1;
	}
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

static void s_destroy(void *state)
{
	filedrop_t *d = state;

	if (!d)
		return;
	kc_jq_destroy(&d->map_jq);
	s_forget_attached(d);
	free(d->attached);
	free(d->done_dir);
	free(d->failed_dir);
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

/* Before issue 16 refused files went to error/ with a .reason: an error/ folder left by an
 * older version becomes failed/ (its .reason files keep their names). Returns true when it
 * was renamed. */
static bool s_migrate_error_dir(filedrop_t *d)
{
	char old[4096];
	struct stat st;

	snprintf(old, sizeof old, "%s/error", d->folder);
	return lstat(old, &st) == 0 && S_ISDIR(st.st_mode) && access(d->failed_dir, F_OK) != 0 &&
	       rename(old, d->failed_dir) == 0;
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
	d->marker = !strcmp(d->ready, "marker");
	d->inotify_fd = -1;
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

/* After s_validate, makes done/ and failed/ in the folder (an older version's error/ becomes
 * failed/). */
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
			asprintf(&d->failed_dir, "%s/failed", d->folder) < 0)) {
		kanal_set_error(ctx, "out of memory");
		rc = KANAL_ENOMEM;
	}
	if (rc == 0 && s_migrate_error_dir(d))
		kanal_log(ctx, KANAL_LOG_INFO, "renamed '%s/error' to failed/ (refused files)",
			  d->folder);
	if (rc == 0)
		rc = s_mkdir(ctx, d->done_dir);
	if (rc == 0)
		rc = s_mkdir(ctx, d->failed_dir);
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
	kanal_metric_add(ctx, "files_vanished", 0);
	s_watch(ctx, d);
	t = kanal_timer_add(ctx, 0, d->scan_interval_ms, s_scan, d);
	if (t < 0) {
		kanal_set_error(ctx, "cannot add the scan timer: %s", kanal_strerror((int)t));
		return (int)t;
	}
	d->timer = t;
	kanal_log(ctx, KANAL_LOG_INFO,
		  "watching '%s' for %s (%s; ready: %s)%s, rescan every %" PRId64 " ms", d->folder,
		  d->pattern, d->format, d->ready, d->inotify_fd >= 0 ? " with inotify" : "",
		  d->scan_interval_ms);
	return 0;
}

static void s_stop(kanal_ctx_t *ctx, void *state, int64_t deadline_ms)
{
	filedrop_t *d = state;

	(void)deadline_ms;
	d->stopped = true;
	if (d->timer > 0)
		kanal_timer_cancel(ctx, d->timer);
	if (d->soon_timer > 0)
		kanal_timer_cancel(ctx, d->soon_timer);
	d->timer = d->soon_timer = 0;
	if (d->inotify_fd >= 0) {
		kanal_fd_unwatch(ctx, d->inotify_fd);
		close(d->inotify_fd);
		d->inotify_fd = -1;
	}
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
		       "XML): one event per record, each file exactly once, then done/ or failed/.",
	.options = s_options,
	.init = s_init,
	.start = s_start,
	.on_message = s_on_message,
	.stop = s_stop,
	.check = s_check,
	.destroy = s_destroy,
};
