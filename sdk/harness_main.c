/*
 * sdk/harness_main.c — kanal-harness: run a plugin on the command line, no broker needed.
 *
 *   kanal-harness PLUGIN.so [-n NAME] [-o key=value]... [-l key=a,b,c]... [--run MS]
 *                 [--request] [EVENT.json ...]
 *
 * It loads the plugin and validates its options exactly as kanald would (through the
 * harness API of kanal/harness.h), starts it, delivers each event file in order (a file
 * holds one event or a batch; "-" reads standard input), lets timers and fd watches run for
 * MS milliseconds, and stops it. Everything that happens is printed to standard output as
 * one JSON object per line, so a script or a test can check it:
 *
 *   {"emitted": <the event>}
 *   {"log": "info: text"}                     (CPR numbers masked)
 *   {"outcome": "retry", "event": "<id>", "error": "…" | null, "retry_after_ms": N | null}
 *   {"reply": <the reply event>}              (with --request)
 *
 * Exit status: 0 when every delivery was OK, 1 when one was not, 2 when the plugin, its
 * options or an event file could not be loaded (the error on stderr as file:line: error: …).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <kanal/harness.h>

#include "version.h"

#define EXIT_NOT_OK 1
#define EXIT_LOAD 2

typedef struct cli_option {
	char *key; /* points into the argv text, split at '=' */
	char *value;
	bool is_list;
} cli_option_t;

typedef struct cli {
	const char *plugin;
	const char *name;
	cli_option_t *options;
	size_t n_options;
	int64_t run_ms;
	bool request;
	char **event_files;
	size_t n_event_files;
} cli_t;

/* The events to deliver, from every file, in order. */
typedef struct event_list {
	kanal_msg_t **msgs;
	size_t count;
} event_list_t;

static void s_usage(FILE *out)
{
	fprintf(out,
		"usage: kanal-harness PLUGIN.so [options] [EVENT.json ...]\n"
		"\n"
		"Loads a kanal plugin as kanald would, delivers the events (each file one event or "
		"a\n"
		"batch; '-' is standard input), runs its timers, and prints one JSON line per "
		"thing\n"
		"that happened: {\"emitted\":…}, {\"log\":…}, {\"outcome\":…}, {\"reply\":…}.\n"
		"\n"
		"  -n, --name NAME        instance name (default: the plugin's name)\n"
		"  -o, --option KEY=VALUE an option, as written in kanald.yaml (repeatable)\n"
		"  -l, --list KEY=A,B,C   a list option (repeatable)\n"
		"      --run MS           run timers and fd watches for MS milliseconds after the\n"
		"                         deliveries\n"
		"      --request          deliver the events as requests and print the replies\n"
		"  -V, --version          the version, source revision and plugin ABI\n"
		"  -h, --help             this text\n"
		"\n"
		"Exit status: 0 every delivery OK, 1 some delivery not OK, 2 load or config "
		"error.\n");
}

static void s_print_error(const kanal_error_t *err)
{
	char line[1024];

	kanal_error_format(err, line, sizeof line);
	fprintf(stderr, "%s\n", line);
}

/* ---- arguments ------------------------------------------------------------------------ */

static int s_add_option(cli_t *cli, char *arg, bool is_list)
{
	char *eq = strchr(arg, '=');
	cli_option_t *grown;

	if (!eq || eq == arg) {
		fprintf(stderr, "kanal-harness: option '%s' is not KEY=VALUE\n", arg);
		return -1;
	}
	grown = realloc(cli->options, (cli->n_options + 1) * sizeof *grown);
	if (!grown) {
		fprintf(stderr, "kanal-harness: out of memory\n");
		return -1;
	}
	cli->options = grown;
	*eq = '\0';
	cli->options[cli->n_options++] = (cli_option_t){ arg, eq + 1, is_list };
	return 0;
}

/* Parses argv into cli. Returns -1 to exit with EXIT_LOAD, 1 after --help, 0 to run. */
static int s_parse_args(int argc, char **argv, cli_t *cli)
{
	static const struct option longs[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "option", required_argument, NULL, 'o' },
		{ "list", required_argument, NULL, 'l' },
		{ "run", required_argument, NULL, 'r' },
		{ "request", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "n:o:l:hV", longs, NULL)) != -1) {
		switch (c) {
		case 'n':
			cli->name = optarg;
			break;
		case 'o':
		case 'l':
			if (s_add_option(cli, optarg, c == 'l') != 0)
				return -1;
			break;
		case 'r': {
			char *end;
			cli->run_ms = strtoll(optarg, &end, 10);
			if (*end || cli->run_ms < 0) {
				fprintf(stderr,
					"kanal-harness: --run expects milliseconds, got '%s'\n",
					optarg);
				return -1;
			}
			break;
		}
		case 'q':
			cli->request = true;
			break;
		case 'h':
			s_usage(stdout);
			return 1;
		case 'V':
			kanal__version_print(stdout, "kanal-harness");
			return 1;
		default:
			s_usage(stderr);
			return -1;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "kanal-harness: no plugin given\n");
		s_usage(stderr);
		return -1;
	}
	cli->plugin = argv[optind++];
	cli->event_files = &argv[optind];
	cli->n_event_files = (size_t)(argc - optind);
	return 0;
}

/* ---- events ------------------------------------------------------------------------------ */

static char *s_read_all(FILE *f, size_t *len)
{
	size_t cap = 4096, n = 0, got;
	char *buf = malloc(cap), *grown;

	while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
		n += got;
		if (cap - n - 1 == 0) {
			grown = realloc(buf, cap * 2);
			if (!grown) {
				free(buf);
				return NULL;
			}
			buf = grown;
			cap *= 2;
		}
	}
	if (buf) {
		buf[n] = '\0';
		*len = n;
	}
	return buf;
}

static int s_append(event_list_t *events, kanal_msg_t **msg_p)
{
	kanal_msg_t **grown = realloc(events->msgs, (events->count + 1) * sizeof *grown);

	if (!grown) {
		kanal_msg_destroy(msg_p);
		return -1;
	}
	events->msgs = grown;
	events->msgs[events->count++] = *msg_p;
	*msg_p = NULL;
	return 0;
}

/* Reads one file of events (an event or a batch) onto events. Returns 0 or -1 after
 * printing the error. */
static int s_load_events(const char *path, event_list_t *events)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	kanal_error_t err;
	size_t len = 0;
	char *text;
	int rc;

	if (!f) {
		fprintf(stderr, "%s: error: cannot open: %m\n", path);
		return -1;
	}
	text = s_read_all(f, &len);
	if (f != stdin)
		fclose(f);
	if (!text) {
		fprintf(stderr, "%s: error: cannot read: out of memory\n", path);
		return -1;
	}
	kanal_error_clear(&err);
	if (kanal_json_is_batch(text, len)) {
		kanal_batch_t *batch = NULL;
		rc = kanal_batch_parse(text, len, 0, &batch, &err);
		for (size_t i = 0; rc == 0 && i < batch->count; i++)
			if (s_append(events, &batch->msgs[i]) != 0)
				rc = KANAL_ENOMEM;
		kanal_batch_destroy(&batch);
	} else {
		kanal_msg_t *msg = NULL;
		rc = kanal_msg_parse(text, len, 0, &msg, &err);
		if (rc == 0 && s_append(events, &msg) != 0)
			rc = KANAL_ENOMEM;
	}
	free(text);
	if (rc != 0) {
		/* The parser names the place inside the text; the file is ours to name. */
		snprintf(err.source, sizeof err.source, "%s", path);
		if (!err.text[0])
			snprintf(err.text, sizeof err.text, "%s", kanal_strerror(rc));
		s_print_error(&err);
		return -1;
	}
	return 0;
}

/* ---- output ------------------------------------------------------------------------------- */

/* Prints {"<key>": <event>} for a message. */
static void s_print_event(const char *key, const kanal_msg_t *msg)
{
	char *json = kanal_msg_to_json(msg, NULL);

	if (json)
		printf("{\"%s\":%s}\n", key, json);
	kanal_free(json);
}

static void s_print_json(json_t *obj)
{
	char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;

	if (text)
		printf("%s\n", text);
	free(text);
	json_decref(obj);
}

/* Prints and forgets what the plugin emitted and logged since the last call. */
static void s_flush_records(kanal_harness_t *h)
{
	for (size_t i = 0; i < kanal_harness_emitted_count(h); i++)
		s_print_event("emitted", kanal_harness_emitted(h, i));
	for (size_t i = 0; i < kanal_harness_log_count(h); i++)
		s_print_json(json_pack("{s:s}", "log", kanal_harness_log(h, i)));
	kanal_harness_clear(h);
	fflush(stdout);
}

static void s_print_outcome(kanal_harness_t *h, const kanal_msg_t *msg, kanal_outcome_t outcome)
{
	const char *error = kanal_harness_last_error(h);
	int64_t retry_after = kanal_harness_last_retry_after(h);

	s_print_json(json_pack("{s:s, s:s, s:o, s:o}", "outcome", kanal_outcome_name(outcome),
			       "event", kanal_msg_id(msg), "error",
			       error && *error ? json_string(error) : json_null(), "retry_after_ms",
			       retry_after >= 0 ? json_integer(retry_after) : json_null()));
}

/* ---- main ---------------------------------------------------------------------------------- */

/* Applies the command line's options to h. Returns 0 or -1 after printing why. */
static int s_apply_options(kanal_harness_t *h, const cli_t *cli)
{
	for (size_t i = 0; i < cli->n_options; i++) {
		const cli_option_t *o = &cli->options[i];
		int rc;

		if (o->is_list) {
			const char *items[256];
			size_t n = 0;
			char *save = NULL;
			for (char *it = strtok_r(o->value, ",", &save); it && n < 256;
			     it = strtok_r(NULL, ",", &save))
				items[n++] = it;
			rc = kanal_harness_option_list(h, o->key, items, n);
		} else {
			rc = kanal_harness_option(h, o->key, o->value);
		}
		if (rc != 0) {
			fprintf(stderr, "kanal-harness: option '%s': %s\n", o->key,
				kanal_strerror(rc));
			return -1;
		}
	}
	return 0;
}

/* Delivers every event and prints what happened. Returns true when all were OK. */
static bool s_deliver_all(kanal_harness_t *h, const cli_t *cli, const event_list_t *events)
{
	bool all_ok = true;

	for (size_t i = 0; i < events->count; i++) {
		const kanal_msg_t *msg = events->msgs[i];
		kanal_msg_t *reply = NULL;
		kanal_outcome_t outcome;

		if (cli->request)
			outcome = kanal_harness_request(h, msg, &reply);
		else
			outcome = kanal_harness_deliver(h, msg, NULL);
		s_flush_records(h);
		s_print_outcome(h, msg, outcome);
		if (reply)
			s_print_event("reply", reply);
		kanal_msg_destroy(&reply);
		fflush(stdout);
		all_ok = all_ok && outcome == KANAL_OUTCOME_OK;
	}
	return all_ok;
}

int main(int argc, char **argv)
{
	cli_t cli = { 0 };
	event_list_t events = { 0 };
	kanal_harness_t *h = NULL;
	kanal_error_t err;
	int status = EXIT_LOAD;
	int rc;

	rc = s_parse_args(argc, argv, &cli);
	if (rc != 0) {
		free(cli.options);
		return rc > 0 ? 0 : EXIT_LOAD;
	}
	for (size_t i = 0; i < cli.n_event_files; i++)
		if (s_load_events(cli.event_files[i], &events) != 0)
			goto done;

	kanal_error_clear(&err);
	h = kanal_harness_new(cli.plugin, cli.name, &err);
	if (!h) {
		s_print_error(&err);
		goto done;
	}
	if (s_apply_options(h, &cli) != 0)
		goto done;
	kanal_error_clear(&err);
	if (kanal_harness_start(h, &err) != 0) {
		s_flush_records(h);
		s_print_error(&err);
		goto done;
	}
	s_flush_records(h);
	status = s_deliver_all(h, &cli, &events) ? 0 : EXIT_NOT_OK;
	if (cli.run_ms > 0) {
		kanal_harness_run(h, cli.run_ms, 0);
		s_flush_records(h);
	}
done:
	kanal_harness_destroy(&h);
	for (size_t i = 0; i < events.count; i++)
		kanal_msg_destroy(&events.msgs[i]);
	free(events.msgs);
	free(cli.options);
	return status;
}
