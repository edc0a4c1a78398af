/*
 * plugins/letter/job.c — from a post.letter.send event to a print job: the part of the
 * letter connector that knows what a printed letter needs. It reads the recipient's CPR
 * data that the route's enrich step put at data.recipient, refuses letters that cannot go
 * by post (no document, no address, a dead or emigrated recipient), formats the Danish
 * address block (name, c/o, street with floor and door, postcode and town), and says why
 * the letter travels on paper, for the status event. The job document it writes is
 * described in docs/plugins/letter.md; letter.c decides where the job goes.
 *
 * Everything a REJECT explains is written so that it can sit in logs and dead-letter
 * views: it never repeats the recipient's name, address or CPR number.
 */
#include "letter.h"
#include "../common/kc_cert.h" /* kc_base64 */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/evp.h>

#define JOB_ID_READABLE 64 /* characters of the event id kept in the job id */

/* ---- job ids -------------------------------------------------------------------------- */

int letter_job_id(const char *source, const char *id, char *buf, size_t size)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len = 0;
	size_t n = 0, source_len, id_len;
	char *both;

	if (!source || !id || !*id || size < LETTER_JOB_ID_MAX + 1)
		return KANAL_EINVAL;
	for (const char *p = id; *p && n < JOB_ID_READABLE; p++, n++) {
		unsigned char c = (unsigned char)*p;
		bool keep = isalnum(c) || c == '-' || c == '_' || (c == '.' && n > 0);
		buf[n] = keep && c < 0x80 ? (char)c : '_';
	}
	buf[n] = '\0';
	/* A file name is seen by every program that lists the spool: never a CPR number. */
	kanal_cpr_redact_inplace(buf);
	/* The NUL between them keeps ("ab", "c") and ("a", "bc") apart. */
	source_len = strlen(source);
	id_len = strlen(id);
	both = malloc(source_len + 1 + id_len);
	if (!both)
		return KANAL_ENOMEM;
	memcpy(both, source, source_len + 1);
	memcpy(both + source_len + 1, id, id_len);
	if (EVP_Digest(both, source_len + 1 + id_len, digest, &digest_len, EVP_sha256(), NULL) !=
		    1 ||
	    digest_len < 8) {
		free(both);
		return KANAL_EINVAL;
	}
	free(both);
	buf[n++] = '-';
	for (int i = 0; i < 8; i++, n += 2)
		snprintf(buf + n, 3, "%02x", digest[i]);
	return 0;
}

/* ---- small readers -------------------------------------------------------------------- */

/* The string at obj.key with blanks around it trimmed away, copied into buf; "" when
 * absent, not a string, or blank. Returns buf. */
static const char *s_field(const json_t *obj, const char *key, char *buf, size_t size)
{
	const char *v = json_string_value(json_object_get(obj, key));
	size_t len;

	buf[0] = '\0';
	if (!v)
		return buf;
	while (isspace((unsigned char)*v))
		v++;
	len = strlen(v);
	while (len > 0 && isspace((unsigned char)v[len - 1]))
		len--;
	if (len >= size)
		len = size - 1;
	memcpy(buf, v, len);
	buf[len] = '\0';
	return buf;
}

/* Appends text to buf (NUL-terminated, `size` bytes), separated by `sep` when buf is not
 * empty and text is. */
static void s_append(char *buf, size_t size, const char *sep, const char *text)
{
	size_t n = strlen(buf);

	if (!*text)
		return;
	snprintf(buf + n, size - n, "%s%s", n ? sep : "", text);
}

/* ---- the address block ---------------------------------------------------------------- */

/* The recipient's name as written on an envelope. The CPR register's addressing name
 * (personadresseringsnavn) is the short form meant for this, written "Last,First Middle";
 * it is turned around. Without one, first, middle and last names are joined. */
static void s_name_line(const json_t *name, char *out, size_t size)
{
	char addressing[128], part[128];
	const char *comma;

	out[0] = '\0';
	s_field(name, "addressing", addressing, sizeof addressing);
	if (*addressing) {
		comma = strchr(addressing, ',');
		if (comma) {
			char last[128];
			snprintf(last, sizeof last, "%.*s", (int)(comma - addressing), addressing);
			snprintf(part, sizeof part, "%s", comma + 1);
			while (*part == ' ')
				memmove(part, part + 1, strlen(part));
			s_append(out, size, " ", part);
			s_append(out, size, " ", last);
		} else {
			snprintf(out, size, "%s", addressing);
		}
		return;
	}
	s_append(out, size, " ", s_field(name, "first", part, sizeof part));
	s_append(out, size, " ", s_field(name, "middle", part, sizeof part));
	s_append(out, size, " ", s_field(name, "last", part, sizeof part));
}

/* A floor as written in an address: "2" → "2.", "st" → "st.", "kl" → "kl.". */
static void s_floor(const char *floor, char *out, size_t size)
{
	bool digits = *floor != '\0';

	for (const char *p = floor; *p; p++)
		digits = digits && isdigit((unsigned char)*p);
	if (digits || !strcasecmp(floor, "st") || !strcasecmp(floor, "kl"))
		snprintf(out, size, "%s.", floor);
	else
		snprintf(out, size, "%s", floor);
}

/* A door as written in an address: "th" → "th.", "tv" → "tv.", "mf" → "mf.", a door
 * number as it is. */
static void s_door(const char *door, char *out, size_t size)
{
	if (!strcasecmp(door, "th") || !strcasecmp(door, "tv") || !strcasecmp(door, "mf"))
		snprintf(out, size, "%s.", door);
	else
		snprintf(out, size, "%s", door);
}

/* Builds the address block of `recipient` (the CPR lookup's answer) into *lines (a new
 * JSON array of strings): name, "c/o …" when there is one, "Street 4, 2. th.", "8000
 * Aarhus C". Returns 0, or KANAL_EINVAL with why (never naming the person). */
static int s_address_block(const json_t *recipient, json_t **lines, char *why, size_t why_size)
{
	const json_t *address = json_object_get(recipient, "address");
	char name[256], co[160], street[160], number[32], floor[32], door[32], postcode[16],
		city[128], line[512], part[64];
	json_t *out;

	*lines = NULL;
	if (!json_is_object(address)) {
		if (json_is_true(json_object_get(recipient, "protected_address")))
			snprintf(why, why_size,
				 "the recipient's address is protected and was not passed on: the "
				 "route's CPR enrich must ask with protected_address: true");
		else
			snprintf(
				why, why_size,
				"no postal address for the recipient (data.recipient.address): the "
				"route must enrich with a CPR lookup");
		return KANAL_EINVAL;
	}
	s_field(address, "street", street, sizeof street);
	s_field(address, "number", number, sizeof number);
	s_field(address, "postcode", postcode, sizeof postcode);
	s_field(address, "city", city, sizeof city);
	if (!*street || !*postcode || !*city) {
		snprintf(why, why_size,
			 "no postal address for the recipient: data.recipient.address lacks %s",
			 !*street     ? "street"
			 : !*postcode ? "postcode"
				      : "city");
		return KANAL_EINVAL;
	}
	s_name_line(json_object_get(recipient, "name"), name, sizeof name);
	if (!*name) {
		snprintf(why, why_size,
			 "no name for the recipient (data.recipient.name): the envelope cannot "
			 "be addressed");
		return KANAL_EINVAL;
	}
	out = json_array();
	if (!out)
		return KANAL_ENOMEM;
	json_array_append_new(out, json_string(name));
	if (*s_field(address, "co", co, sizeof co)) {
		/* The register gives the c/o name alone; the envelope says "c/o". */
		if (!strncasecmp(co, "c/o", 3))
			snprintf(line, sizeof line, "%s", co);
		else
			snprintf(line, sizeof line, "c/o %s", co);
		json_array_append_new(out, json_string(line));
	}
	line[0] = '\0';
	s_append(line, sizeof line, "", street);
	s_append(line, sizeof line, " ", number);
	s_field(address, "floor", floor, sizeof floor);
	s_field(address, "door", door, sizeof door);
	if (*floor || *door) {
		char rest[96] = "";
		s_floor(floor, part, sizeof part);
		s_append(rest, sizeof rest, " ", part);
		s_door(door, part, sizeof part);
		s_append(rest, sizeof rest, " ", part);
		s_append(line, sizeof line, ", ", rest);
	}
	json_array_append_new(out, json_string(line));
	snprintf(line, sizeof line, "%s %s", postcode, city);
	json_array_append_new(out, json_string(line));
	/* Every element must have been made; json_string gives NULL on bad UTF-8. */
	if (json_array_size(out) < 3) {
		json_decref(out);
		snprintf(why, why_size, "the recipient's name or address is not valid UTF-8");
		return KANAL_EINVAL;
	}
	*lines = out;
	return 0;
}

/* ---- the recipient -------------------------------------------------------------------- */

/* What CPR statuses other than active mean for a letter (DOMAIN.md). */
static const char *s_status_text(json_int_t status)
{
	switch (status) {
	case 20:
		return "inactive";
	case 30:
		return "annulled";
	case 50:
		return "deleted";
	case 60:
		return "changed (the number is no longer in use)";
	case 70:
		return "disappeared";
	case 80:
		return "emigrated";
	case 90:
		return "dead";
	default:
		return NULL;
	}
}

/* Checks that the recipient can receive a letter at a Danish address. Returns 0, or
 * KANAL_EINVAL with why. */
static int s_check_recipient(const json_t *recipient, char *why, size_t why_size)
{
	const json_t *status;
	const char *text;

	if (!json_is_object(recipient)) {
		snprintf(
			why, why_size,
			"no postal address for the recipient: the event has no data.recipient; the "
			"route must enrich with a CPR lookup (service: cpr, into: data.recipient)");
		return KANAL_EINVAL;
	}
	status = json_object_get(recipient, "status");
	if (json_is_string(status))
		status = NULL; /* tolerated below as unknown */
	if (json_is_integer(status) && (text = s_status_text(json_integer_value(status)))) {
		snprintf(why, why_size,
			 "the recipient is %s (CPR status %d): no letter can be delivered", text,
			 (int)json_integer_value(status));
		return KANAL_EINVAL;
	}
	return 0;
}

/* Fills *year, *month, *day with the recipient's birth date: data.recipient.birth_date,
 * else what the CPR number tells. Returns 0 or -1 when neither is known. */
static int s_birth_date(const json_t *data, const json_t *recipient, int *year, int *month,
			int *day)
{
	const char *date = json_string_value(json_object_get(recipient, "birth_date"));
	const char *cpr;
	kanal_cpr_t parsed;

	if (date && sscanf(date, "%4d-%2d-%2d", year, month, day) == 3)
		return 0;
	cpr = json_string_value(json_object_get(recipient, "cpr"));
	if (!cpr)
		cpr = json_string_value(json_object_get(data, "recipient_cpr"));
	if (cpr && kanal_cpr_parse(cpr, &parsed, NULL) == 0) {
		*year = parsed.year;
		*month = parsed.month;
		*day = parsed.day;
		return 0;
	}
	return -1;
}

/* Why this letter goes on paper, for post.letter.status: the recipient is too young for
 * a Digital Post mailbox, is not enrolled (exempt), or — enrolled — the digital channel did
 * not deliver and the route fell back. The exemption's own ground ("handicap", …) is not
 * repeated: it can be health data and the status goes to the letter log. */
static void s_reason(const json_t *data, const json_t *recipient, time_t today, char *out,
		     size_t size)
{
	const json_t *enrolled = json_object_get(recipient, "digital_post");
	/* The CPR lookup's exemption (fritagelse), by the names a connector may give it. */
	static const char *const exemption_keys[] = { "digital_post_exempt",
						      "digital_post_exemption", "exemption",
						      "exempt", NULL };
	bool exempt = false;
	int year, month, day;
	struct tm tm;

	localtime_r(&today, &tm);
	if (s_birth_date(data, recipient, &year, &month, &day) == 0) {
		int age = tm.tm_year + 1900 - year;
		if (tm.tm_mon + 1 < month || (tm.tm_mon + 1 == month && tm.tm_mday < day))
			age--;
		if (age < 15) {
			snprintf(out, size, "no Digital Post for under-15s");
			return;
		}
	}
	for (int i = 0; exemption_keys[i]; i++) {
		const json_t *v = json_object_get(recipient, exemption_keys[i]);
		if (json_is_true(v) || (json_is_string(v) && *json_string_value(v)))
			exempt = true;
	}
	if (exempt)
		snprintf(out, size, "not-enrolled: exempt from Digital Post");
	else if (json_is_false(enrolled))
		snprintf(out, size, "not-enrolled: not enrolled in Digital Post");
	else
		snprintf(out, size, "fallback: the digital channel did not deliver");
}

/* ---- the document --------------------------------------------------------------------- */

/* True when the file name is acceptable to Digital Post and print providers alike: not
 * empty, none of <>:"/\|?*, no control characters (line breaks), no unicode spaces. */
static bool s_filename_ok(const char *name)
{
	const unsigned char *p = (const unsigned char *)name;

	if (!*p || strlen(name) > 255)
		return false;
	for (; *p; p++) {
		if (*p < 0x20 || *p == 0x7f || strchr("<>:\"/\\|?*", *p))
			return false;
		if (p[0] == 0xc2 && (p[1] == 0xa0 || p[1] == 0x85)) /* NBSP, NEL */
			return false;
		if (p[0] == 0xe2 && p[1] == 0x80 &&
		    ((p[2] >= 0x80 && p[2] <= 0x8b) || p[2] == 0xa8 || p[2] == 0xa9 ||
		     p[2] == 0xaf))
			return false;
		if (p[0] == 0xe2 && p[1] == 0x81 && p[2] == 0x9f)
			return false;
		if (p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80)
			return false;
	}
	return true;
}

/* True when text is non-empty base64 (RFC 4648 alphabet, padded, no blanks). */
static bool s_base64_ok(const char *text)
{
	size_t len = strlen(text), pad = 0;

	if (len == 0 || len % 4 != 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if (c == '=') {
			if (i < len - 2)
				return false;
			pad++;
		} else if (pad || !(isalnum(c) || c == '+' || c == '/')) {
			return false;
		}
	}
	return true;
}

/* The MIME type of a document without one, from its file name's extension. */
static const char *s_guess_mimetype(const char *filename)
{
	static const char *const map[][2] = {
		{ ".pdf", "application/pdf" }, { ".html", "text/html" },
		{ ".htm", "text/html" },       { ".txt", "text/plain" },
		{ ".xml", "application/xml" }, { ".tif", "image/tiff" },
		{ ".tiff", "image/tiff" },     { ".jpg", "image/jpeg" },
		{ ".jpeg", "image/jpeg" },     { ".png", "image/png" },
	};
	const char *dot = strrchr(filename, '.');

	for (size_t i = 0; dot && i < sizeof map / sizeof map[0]; i++)
		if (!strcasecmp(dot, map[i][0]))
			return map[i][1];
	return "application/octet-stream";
}

/* The content of document `name` given by reference: the blob `href` names, read with
 * blobs and base64-encoded into *b64_out (malloc'd). Returns 0, KANAL_EINVAL (why) or
 * KANAL_ENOMEM. */
static int s_blob_content(const letter_blobs_t *blobs, const char *name, const char *href,
			  char **b64_out, char *why, size_t why_size)
{
	char blob_why[200] = "";
	void *data = NULL;
	size_t size = 0;
	int rc;

	*b64_out = NULL;
	if (!blobs || !blobs->read) {
		snprintf(why, why_size, "%s.href: this letter instance reads no blobs", name);
		return KANAL_EINVAL;
	}
	rc = blobs->read(blobs->arg, href, &data, &size, blob_why, sizeof blob_why);
	if (rc == KANAL_ENOMEM)
		return rc;
	if (rc != 0) {
		snprintf(why, why_size, "%s.href: %s", name,
			 *blob_why ? blob_why : "the blob cannot be read");
		return KANAL_EINVAL;
	}
	*b64_out = kc_base64(data, size);
	explicit_bzero(data, size);
	kanal_blob_free(&data);
	return *b64_out ? 0 : KANAL_ENOMEM;
}

/* Checks one document (`name` is its place in the letter: data.document,
 * data.attachments[2]) and makes the job's copy of it, its content read from the blob store
 * when it comes by reference (`href`). Returns 0, KANAL_EINVAL (why) or KANAL_ENOMEM. */
static int s_one_document(const json_t *doc, const char *name, const letter_blobs_t *blobs,
			  json_t **out, char *why, size_t why_size)
{
	const char *filename, *content, *language, *mimetype, *href;
	char *owned = NULL;
	int rc;

	*out = NULL;
	if (!json_is_object(doc)) {
		snprintf(why, why_size, "%s is not a document (filename and base64 content)", name);
		return KANAL_EINVAL;
	}
	filename = json_string_value(json_object_get(doc, "filename"));
	content = json_string_value(json_object_get(doc, "content"));
	language = json_string_value(json_object_get(doc, "language"));
	mimetype = json_string_value(json_object_get(doc, "mimetype"));
	href = json_string_value(json_object_get(doc, "href"));
	if (!filename || !s_filename_ok(filename)) {
		snprintf(why, why_size,
			 "%s.filename is %s (no <>:\"/\\|?*, line breaks or unicode spaces)", name,
			 filename ? "not a valid file name" : "missing");
		return KANAL_EINVAL;
	}
	if (!content && href) {
		if ((rc = s_blob_content(blobs, name, href, &owned, why, why_size)) != 0)
			return rc;
		content = owned;
		if (!mimetype || !*mimetype)
			mimetype = json_string_value(json_object_get(doc, "mediaType"));
	}
	if (!content || !s_base64_ok(content)) {
		snprintf(why, why_size, "%s.content is %s", name,
			 content ? "not base64" : "missing (or href, a blob)");
		free(owned);
		return KANAL_EINVAL;
	}
	if (!language || !*language)
		language = "da";
	if (!mimetype || !*mimetype)
		mimetype = s_guess_mimetype(filename);
	*out = json_pack("{s:s, s:s, s:s, s:s}", "filename", filename, "language", language,
			 "mimetype", mimetype, "content", content);
	free(owned);
	return *out ? 0 : KANAL_ENOMEM;
}

/* Checks data.document and data.attachments (optional) and makes the job's copies of them
 * (*attachments_out NULL when the letter has none). Returns 0, KANAL_EINVAL (why) or
 * KANAL_ENOMEM. */
static int s_document(const json_t *data, const letter_blobs_t *blobs, json_t **out,
		      json_t **attachments_out, char *why, size_t why_size)
{
	const json_t *doc = json_object_get(data, "document");
	const json_t *given = json_object_get(data, "attachments"), *a;
	json_t *list = NULL, *one;
	size_t i;
	int rc;

	*out = *attachments_out = NULL;
	if (!json_is_object(doc)) {
		snprintf(why, why_size,
			 "the letter has no document (data.document with filename and base64 "
			 "content)");
		return KANAL_EINVAL;
	}
	if ((rc = s_one_document(doc, "data.document", blobs, out, why, why_size)) != 0)
		return rc;
	if (!given)
		return 0;
	if (!json_is_array(given) || !(list = json_array())) {
		json_decref(*out);
		*out = NULL;
		snprintf(why, why_size, "data.attachments is not a list of documents");
		return json_is_array(given) ? KANAL_ENOMEM : KANAL_EINVAL;
	}
	json_array_foreach(given, i, a)
	{
		char name[48];
		snprintf(name, sizeof name, "data.attachments[%zu]", i);
		if ((rc = s_one_document(a, name, blobs, &one, why, why_size)) != 0) {
			json_decref(list);
			json_decref(*out);
			*out = NULL;
			return rc;
		}
		json_array_append_new(list, one);
	}
	*attachments_out = list;
	return 0;
}

/* ---- the job -------------------------------------------------------------------------- */

int letter_postal_category(const char *text, const char **out)
{
	if (text && !strcasecmp(text, "Prioritaire")) {
		*out = "Prioritaire";
		return 0;
	}
	if (text && !strcasecmp(text, "Economique")) {
		*out = "Economique";
		return 0;
	}
	return KANAL_EINVAL;
}

/* The sender block: data.sender (an object is copied, a string is the name), else the
 * option's name, else none (NULL). */
static json_t *s_sender(const json_t *data, const letter_defaults_t *d)
{
	const json_t *sender = json_object_get(data, "sender");

	if (json_is_object(sender))
		return json_deep_copy(sender);
	if (json_is_string(sender))
		return json_pack("{s:s}", "name", json_string_value(sender));
	if (d->sender && *d->sender)
		return json_pack("{s:s}", "name", d->sender);
	return NULL;
}

int letter_job_build(const kanal_msg_t *msg, const letter_defaults_t *d,
		     const letter_blobs_t *blobs, time_t today, letter_job_t *job, char *why,
		     size_t why_size)
{
	json_t *data = NULL, *recipient, *lines = NULL, *document = NULL, *sender = NULL,
	       *doc = NULL, *rcpt = NULL, *attachments = NULL;
	const char *category = d->postal_category, *given, *label;
	char *text = NULL, created[32];
	int rc;

	memset(job, 0, sizeof *job);
	why[0] = '\0';
	job->letter = kanal_msg_id(msg);
	rc = letter_job_id(kanal_msg_source(msg), kanal_msg_id(msg), job->id, sizeof job->id);
	if (rc != 0) {
		snprintf(why, why_size, "the event has no usable id for a print job");
		return rc;
	}
	text = kanal_msg_data_json(msg, NULL);
	if (text)
		data = json_loads(text, 0, NULL);
	kanal_free(text);
	text = NULL;
	if (!json_is_object(data)) {
		snprintf(why, why_size, "the event's data is not a JSON object: nothing to print");
		rc = KANAL_EINVAL;
		goto done;
	}
	recipient = json_object_get(data, "recipient");
	if ((rc = s_check_recipient(recipient, why, why_size)) != 0 ||
	    (rc = s_address_block(recipient, &lines, why, why_size)) != 0 ||
	    (rc = s_document(data, blobs, &document, &attachments, why, why_size)) != 0)
		goto done;
	given = json_string_value(json_object_get(data, "postal_category"));
	if (given && letter_postal_category(given, &category) != 0) {
		snprintf(why, why_size,
			 "data.postal_category '%.32s' is not a postal category (Prioritaire or "
			 "Economique)",
			 given);
		rc = KANAL_EINVAL;
		goto done;
	}
	snprintf(job->postal_category, sizeof job->postal_category, "%s", category);
	s_reason(data, recipient, today, job->reason, sizeof job->reason);
	kanal_time_rfc3339(kanal_wall_ms(), created, sizeof created);

	rcpt = json_pack("{s:O, s:b}", "address_block", lines, "protected_address",
			 json_is_true(json_object_get(recipient, "protected_address")));
	doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "format", LETTER_JOB_FORMAT, "job",
			job->id, "letter", job->letter, "created", created, "postal_category",
			job->postal_category, "recipient", rcpt);
	rcpt = NULL; /* stolen by "o", even on failure */
	if (!doc) {
		rc = KANAL_ENOMEM;
		goto done;
	}
	if ((label = json_string_value(json_object_get(data, "label"))))
		json_object_set_new(doc, "label", json_string(label));
	if ((sender = s_sender(data, d)))
		json_object_set_new(doc, "sender", sender);
	json_object_set(doc, "document", document);
	if (attachments)
		json_object_set(doc, "attachments", attachments);
	job->json = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (!job->json) {
		rc = KANAL_ENOMEM;
		goto done;
	}
	job->len = strlen(job->json);
	/* A trailing newline, as text files have; json_dumps left room for none. */
	{
		char *grown = realloc(job->json, job->len + 2);
		if (!grown) {
			rc = KANAL_ENOMEM;
			goto done;
		}
		job->json = grown;
		job->json[job->len++] = '\n';
		job->json[job->len] = '\0';
	}
	rc = 0;
done:
	json_decref(doc);
	json_decref(rcpt);
	json_decref(document);
	json_decref(attachments);
	json_decref(lines);
	json_decref(data);
	if (rc != 0)
		letter_job_clear(job);
	if (rc == KANAL_ENOMEM)
		snprintf(why, why_size, "out of memory while building the print job");
	return rc;
}

void letter_job_clear(letter_job_t *job)
{
	if (!job)
		return;
	free(job->json);
	job->json = NULL;
	job->len = 0;
}
