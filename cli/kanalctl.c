/*
 * cli/kanalctl.c — the operator's tool: command-line parsing, help and dispatch.
 *
 * kanalctl does two kinds of work. Offline commands need no broker: `check` validates
 * kanald.yaml and the routing files, `explain` shows where an event would go, `validate`
 * checks CloudEvents, `plugin info` documents a plugin. Online commands talk to a running
 * kanald over its ZeroMQ endpoints (docs/design/wire.md): `send` to the gateway, `tail` on
 * the event stream, `reload`, `routes push`, `status` and `dlq` (dead letters) on the admin socket. Options may stand before or
 * after the command's name; each command accepts only the options that mean something to
 * it, so a misplaced flag is an error rather than silently ignored. docs/kanalctl.md is the
 * user's guide.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kanalctl.h"
#include "version.h"

typedef struct command {
	const char *name;
	int (*run)(ctl_t *ctl, int argc, char **argv);
	unsigned options; /* CTL_OPT_* bits it accepts */
	const char *args; /* synopsis of its arguments */
	const char *summary;
	const char *help; /* the details shown by `kanalctl help NAME` */
} command_t;

static const command_t s_commands[] = {
	{ "check", cmd_check, CTL_OPT_CONFIG, "[ROUTES...]",
	  "validate kanald.yaml, each instance's options and the routing files",
	  "Loads kanald.yaml, checks each instance's options against its plugin's options\n"
	  "table (the plugin is loaded but not started), then loads the routing files: the\n"
	  "ones given, else the config's `routes:`. Prints every error as\n"
	  "file:line:col: error: ... with the offending line, or a one-line summary.\n"
	  "Warns about each type of a message-types.list beside the routing files that no\n"
	  "route takes.\n"
	  "Exit status: 0 all valid, 1 errors found, 2 bad usage.\n" },
	{ "explain", cmd_explain, CTL_OPT_CONFIG, "EVENT.json...",
	  "show which routes an event matches and where it would go",
	  "Parses the event (or each event of a batch; `-` reads standard input), loads the\n"
	  "routing table as `check` does, and prints for every route whether it matches and\n"
	  "why not, and the destinations, enrich steps and fallback of those that match.\n"
	  "Exit status: 0 every event matches a route, 1 an event goes to the default\n"
	  "destination, 2 the event or the routes could not be read.\n" },
	{ "test", cmd_test, CTL_OPT_CONFIG, "TESTS.yaml...",
	  "run route unit tests: events and the routes, destinations and data expected",
	  "Loads each test file's routing table (its `routes:`, relative to the file, else\n"
	  "the config's) as `check` does, and for every case matches its event (`event:`\n"
	  "inline or `event_file:`) and compares the matching routes (`routes:`), the exact\n"
	  "set of destinations (`to:`; the default destination when no route matches) and\n"
	  "each destination's data after its transform (`data:`), printing a diff for each\n"
	  "difference. No broker is needed. See docs/routes.md, \"Testing routes\".\n"
	  "Exit status: 0 every case passed, 1 a case failed, 2 a file or table has errors.\n" },
	{ "validate", cmd_validate, CTL_OPT_CONFIG, "EVENT.json...",
	  "check files against the CloudEvents 1.0 rules",
	  "Checks each file (one event, or a batch: a JSON array) the way the gateway\n"
	  "would. The size limit is the config's max_event_bytes when -c or $KANAL_CONF\n"
	  "names a config, else 64 KiB per event. `-` reads standard input.\n"
	  "Exit status: 0 all valid, 1 one is invalid, 2 a file cannot be read.\n" },
	{ "send", cmd_send, CTL_OPT_CONFIG | CTL_OPT_GATEWAY | CTL_OPT_TIMEOUT | CTL_OPT_CURVE,
	  "EVENT.json...", "send events to kanald's gateway",
	  "Sends each file's content (one event or a batch; `-` reads standard input) to the\n"
	  "gateway and prints one line per event: accepted, duplicate (accepted before),\n"
	  "invalid with the reason, busy with the delay to wait, or error.\n"
	  "--timeout MS bounds the wait for each reply (default 5000).\n"
	  "With CURVE on the gateway: --curve-server-key KEY --curve-key-file PREFIX.\n"
	  "Exit status: 0 every event accepted (or a duplicate of an accepted one), 1 some\n"
	  "event was not accepted, 2 no reply or a file cannot be read.\n" },
	{ "tail", cmd_tail,
	  CTL_OPT_CONFIG | CTL_OPT_STREAM | CTL_OPT_TIMEOUT | CTL_OPT_COUNT | CTL_OPT_JSON |
		  CTL_OPT_CURVE,
	  "[PREFIX...]", "follow kanald's event stream",
	  "Subscribes to the event stream with the given topic prefixes (`delivered`,\n"
	  "`dead child.`; none: everything) and prints one line per happening:\n"
	  "  HH:MM:SS.mmm  TOPIC  id=... route=... destination=... attempt=... error=\"...\"\n"
	  "--json prints each JSON payload instead. --count N stops after N messages.\n"
	  "--timeout MS stops after MS of silence.\n"
	  "With CURVE on the stream: --curve-server-key KEY --curve-key-file PREFIX; kanald\n"
	  "then applies only the prefixes the client's subscribe list allows.\n"
	  "Exit status: 0 when --count was reached or tail was interrupted, or (without\n"
	  "--count) when --timeout stopped it after anything was received; 1 when --timeout\n"
	  "ran out first; 2 bad usage.\n" },
	{ "reload", cmd_reload, CTL_OPT_CONFIG | CTL_OPT_ADMIN | CTL_OPT_TIMEOUT | CTL_OPT_JSON, "",
	  "make kanald reload its routing files",
	  "Asks kanald to build the new routing table beside the old one and swap only if it\n"
	  "is valid. On failure prints the errors; the old table stays in force.\n"
	  "In cluster mode the node pushes its routing files to every node, as `routes\n"
	  "push` does: all reload, or none. --timeout defaults to 15000 here.\n"
	  "Exit status: 0 reloaded, 1 refused, 2 no reply.\n" },
	{ "routes", cmd_routes, CTL_OPT_CONFIG | CTL_OPT_ADMIN | CTL_OPT_TIMEOUT | CTL_OPT_JSON,
	  "push [ROUTES...]", "cluster mode: make routing files the table of every node",
	  "  routes push [ROUTES...]\n"
	  "      checks the files (or folders; none: the config's routes:) as `check` does,\n"
	  "      then sends their text to kanald, which compiles them, asks every live node\n"
	  "      of the cluster to compile them too, and only when all accept makes them the\n"
	  "      table of every node (and of nodes started later). A refusal anywhere prints\n"
	  "      the refusing node's errors and changes nothing anywhere (docs/cluster.md).\n"
	  "--timeout defaults to 15000 (the nodes' verdicts take up to 8 s).\n"
	  "Exit status: 0 in force everywhere, 1 refused (errors in the files, or a node\n"
	  "refused or did not answer), 2 bad usage or no reply.\n" },
	{ "status", cmd_status,
	  CTL_OPT_CONFIG | CTL_OPT_ADMIN | CTL_OPT_TIMEOUT | CTL_OPT_JSON | CTL_OPT_CLUSTER,
	  "[--cluster]", "show kanald's instances, routes and counters",
	  "Prints kanald's status reply in a readable form (--json: as received).\n"
	  "--cluster (cluster mode): also every node of the cluster, as each last wrote\n"
	  "its entry, and the lag of each shared consumer (docs/cluster.md).\n"
	  "Exit status: 0 answered, 1 kanald reported a failure, 2 no reply.\n" },
	{ "plugin", cmd_plugin, CTL_OPT_CONFIG, "info PLUGIN.so",
	  "describe a plugin: name, version, ABI and options",
	  "Loads the plugin the way kanald does (it is not started) and prints its\n"
	  "descriptor and options table. PLUGIN may be a path, or the name of a plugin in\n"
	  "the config's plugin_dir. A plugin the loader refuses (ABI mismatch, missing\n"
	  "descriptor) prints the loader's reason.\n"
	  "Exit status: 0 described, 1 refused or not found, 2 bad usage.\n" },
	{ "dlq", cmd_dlq,
	  CTL_OPT_CONFIG | CTL_OPT_ADMIN | CTL_OPT_TIMEOUT | CTL_OPT_JSON | CTL_OPT_ROUTE |
		  CTL_OPT_TYPE | CTL_OPT_SINCE | CTL_OPT_LIMIT | CTL_OPT_CLEAR |
		  CTL_OPT_ALL_MATCHING | CTL_OPT_OLDER_THAN,
	  "list|show|replay|drop|purge", "list, show, replay, drop and purge dead letters",
	  "  dlq list [--route R] [--type T] [--since TIME] [--limit N]\n"
	  "      the dead letters, newest first (at most 100 unless --limit): id, when it\n"
	  "      died (local time), route, destination, type, event id, attempts, reason\n"
	  "      and last error\n"
	  "  dlq show ID [--clear]\n"
	  "      one letter: its fields, every attempt's error (one per line) and the\n"
	  "      event; CPR numbers are masked unless --clear (which warns on stderr)\n"
	  "  dlq replay ID...\n"
	  "  dlq replay --all-matching [--route R] [--type T] [--since TIME]\n"
	  "      deliver again to the letter's destination (journalled like a new\n"
	  "      delivery; the letter leaves the store); prints what was replayed and\n"
	  "      what was missing\n"
	  "  dlq drop ID...\n"
	  "      delete letters from the store for good\n"
	  "  dlq purge --older-than TIME\n"
	  "      delete for good every letter that died before TIME (retention does this\n"
	  "      by itself: journal.dead_letters max_age and max_events)\n"
	  "TIME is RFC 3339 (2026-11-24T10:00:00Z) or a duration ago (30m, 2h, 1d).\n"
	  "--json prints kanald's reply as received. Needs kanald's durable journal,\n"
	  "or cluster mode (the letters are on the DEAD stream; any node answers).\n"
	  "Exit status: 0 answered, and every letter asked for was replayed or dropped;\n"
	  "1 kanald said no (journal off, no such letter, a letter missing); 2 bad usage\n"
	  "or no reply.\n" },
	{ "audit", cmd_audit, CTL_OPT_CONFIG | CTL_OPT_SINCE | CTL_OPT_JSON, "[--since TIME]",
	  "print the operator audit log",
	  "Prints kanald's audit log (<state_dir>/audit.log), oldest first: one line per\n"
	  "operator action — dlq replay, drop and show --clear, instance pause, resume and\n"
	  "restart, reload — with when, the outcome, the action, who (the local user of an\n"
	  "ipc admin socket, 'admin token' over HTTP), the channel, from where and the target.\n"
	  "Read from the file: kanald need not run. --since TIME (RFC 3339 or 30m, 2h, 1d)\n"
	  "keeps the later ones; --json prints the lines as written.\n"
	  "Exit status: 0 printed (or nothing recorded yet), 2 bad usage or unreadable.\n" },
	{ "keygen", cmd_keygen, CTL_OPT_OUT, "[--out PREFIX]",
	  "make a CURVE key pair for kanald or for a client",
	  "Writes a new CURVE key pair: PREFIX.key holds the secret key (mode 0600: keep it\n"
	  "private) and PREFIX.pub the public key, one Z85 line each; prints the public key.\n"
	  "PREFIX defaults to ./kanal. Existing files are never overwritten.\n"
	  "kanald's pair: security.curve.secret_key_file names the .key file, and clients\n"
	  "get the .pub. A client's pair: its .pub goes into security.curve.clients, and\n"
	  "kanalctl send/tail use it with --curve-key-file PREFIX. See docs/security.md.\n"
	  "Exit status: 0 written, 2 a file exists or cannot be written.\n" },
	{ "report", cmd_report,
	  CTL_OPT_CONFIG | CTL_OPT_ADMIN | CTL_OPT_TIMEOUT | CTL_OPT_JSON | CTL_OPT_PERIOD |
		  CTL_OPT_BY | CTL_OPT_CSV,
	  "channels", "the channel strategy's yearly report: digital share against the target",
	  "  report channels [--from DAY] [--to DAY] [--by LABEL,...] [--csv]\n"
	  "      for every measure with a `target:` in the routing files: the events it\n"
	  "      counted from DAY to DAY (both included; YYYY-MM-DD in kanald's time zone;\n"
	  "      default: this year so far), grouped by the labels --by names (default:\n"
	  "      department; a label the measure lacks is left out), with the digital share\n"
	  "      of each group against the target share and a total line. --csv prints one\n"
	  "      comma-separated row per group instead (share as a fraction, 0.800).\n"
	  "Asks the running kanald (admin command measures.report), which sums the journal's\n"
	  "per-day counts; needs the durable journal. --json prints kanald's reply.\n"
	  "Exit status: 0 answered, 1 kanald said no (memory mode) or no measure has a\n"
	  "target, 2 bad usage or no reply.\n" },
};

#define N_COMMANDS (sizeof s_commands / sizeof s_commands[0])

static const struct {
	unsigned bit;
	const char *name;
} s_option_names[] = {
	{ CTL_OPT_CONFIG, "-c/--config" },
	{ CTL_OPT_GATEWAY, "--gateway" },
	{ CTL_OPT_STREAM, "--stream" },
	{ CTL_OPT_ADMIN, "--admin" },
	{ CTL_OPT_TIMEOUT, "--timeout" },
	{ CTL_OPT_COUNT, "--count" },
	{ CTL_OPT_JSON, "--json" },
	{ CTL_OPT_ROUTE, "--route" },
	{ CTL_OPT_TYPE, "--type" },
	{ CTL_OPT_SINCE, "--since" },
	{ CTL_OPT_LIMIT, "--limit" },
	{ CTL_OPT_CLEAR, "--clear" },
	{ CTL_OPT_ALL_MATCHING, "--all-matching" },
	{ CTL_OPT_OUT, "--out" },
	{ CTL_OPT_CURVE, "--curve-server-key/--curve-key-file" },
	{ CTL_OPT_PERIOD, "--from/--to" },
	{ CTL_OPT_BY, "--by" },
	{ CTL_OPT_CSV, "--csv" },
	{ CTL_OPT_OLDER_THAN, "--older-than" },
	{ CTL_OPT_CLUSTER, "--cluster" },
};

static void s_usage(FILE *out)
{
	size_t i;

	fprintf(out, "usage: kanalctl [OPTIONS] COMMAND [ARGS...]\n"
		     "\n"
		     "commands:\n");
	for (i = 0; i < N_COMMANDS; i++) {
		char head[64];
		snprintf(head, sizeof head, "%s %s", s_commands[i].name, s_commands[i].args);
		fprintf(out, "  %-28s %s\n", head, s_commands[i].summary);
	}
	fprintf(out,
		"  %-28s %s\n"
		"\n"
		"options (each command takes those that apply to it):\n"
		"  -c, --config FILE     kanald.yaml (default: $KANAL_CONF, else "
		"./conf/kanald.yaml,\n"
		"                        else /usr/local/etc/kanal/kanald.yaml)\n"
		"  --gateway ENDPOINT    kanald's gateway (default: $KANAL_GATEWAY, else the\n"
		"                        endpoints file in the config's run_dir, else the config)\n"
		"  --stream ENDPOINT     kanald's event stream (default: $KANAL_STREAM, ...)\n"
		"  --admin ENDPOINT      kanald's admin socket (default: $KANAL_ADMIN, ...)\n"
		"  --timeout MS          wait at most MS for a reply (send, status, dlq; "
		"default\n"
		"                        5000; reload, routes push: 15000), or for the next\n"
		"                        message (tail; default: forever)\n"
		"  --count N             tail: stop after N messages\n"
		"  --json                tail, status, reload, routes, dlq, report: print the JSON "
		"as\n"
		"                        received\n"
		"  --route R, --type T   dlq list, dlq replay --all-matching: only dead letters\n"
		"                        of route R, of event type T\n"
		"  --since TIME          dlq: only those that died after TIME (RFC 3339, or a\n"
		"                        duration ago: 30m, 2h, 1d)\n"
		"  --limit N             dlq list: at most N (default 100)\n"
		"  --clear               dlq show: CPR numbers in the clear (personal data!)\n"
		"  --all-matching        dlq replay: every dead letter the filters match\n"
		"  --older-than TIME     dlq purge: delete the dead letters that died before\n"
		"                        TIME (RFC 3339, or a duration ago: 30d)\n"
		"  --out PREFIX          keygen: write PREFIX.key and PREFIX.pub\n"
		"  --from DAY, --to DAY  report: the period, YYYY-MM-DD, both days included\n"
		"  --by LABEL,...        report: group by these labels (default: department)\n"
		"  --csv                 report: comma-separated rows\n"
		"  --cluster             status: every node of the cluster, consumers' lag\n"
		"  --curve-server-key KEY  send, tail: kanald's CURVE public key (Z85, or its\n"
		"                        .pub file; default $KANAL_CURVE_SERVER_KEY)\n"
		"  --curve-key-file PREFIX send, tail: our key pair from kanalctl keygen\n"
		"                        (default $KANAL_CURVE_KEY_FILE)\n"
		"  -h, --help            this text; `kanalctl help COMMAND` for one command\n"
		"  -V, --version         print the version\n"
		"\n"
		"See docs/kanalctl.md.\n",
		"help [COMMAND]", "this text, or the details of one command");
}

static const command_t *s_find(const char *name)
{
	size_t i;

	for (i = 0; i < N_COMMANDS; i++)
		if (!strcmp(s_commands[i].name, name))
			return &s_commands[i];
	return NULL;
}

static void s_command_help(const command_t *cmd, FILE *out)
{
	size_t i;
	int first = 1;

	fprintf(out, "usage: kanalctl %s %s\n\n%s.\n\n%s", cmd->name, cmd->args, cmd->summary,
		cmd->help);
	fprintf(out, "\noptions:");
	for (i = 0; i < sizeof s_option_names / sizeof s_option_names[0]; i++) {
		if (cmd->options & s_option_names[i].bit) {
			fprintf(out, "%s %s", first ? "" : ",", s_option_names[i].name);
			first = 0;
		}
	}
	fprintf(out, "%s (see kanalctl --help)\n", first ? " none" : "");
}

/* Parses a non-negative decimal integer option value; returns 0 or -1 after printing. */
static int s_parse_count(const char *opt, const char *text, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno || end == text || *end || v < 0) {
		ctl_error("%s wants a whole number >= 0, not '%s'", opt, text);
		return -1;
	}
	*out = v;
	return 0;
}

/* `kanalctl help [COMMAND]`. */
static int s_help(int argc, char **argv)
{
	const command_t *cmd;

	if (argc == 0) {
		s_usage(stdout);
		return CTL_EXIT_OK;
	}
	cmd = s_find(argv[0]);
	if (!cmd) {
		ctl_error("no command '%s' (kanalctl help lists them)", argv[0]);
		return CTL_EXIT_ERROR;
	}
	s_command_help(cmd, stdout);
	return CTL_EXIT_OK;
}

int ctl_check_options(const ctl_t *ctl, unsigned allowed, const char *what, const char *topic)
{
	unsigned extra = ctl->given & ~allowed;
	size_t i;

	for (i = 0; i < sizeof s_option_names / sizeof s_option_names[0]; i++) {
		if (extra & s_option_names[i].bit) {
			ctl_error("%s: option %s does not apply (kanalctl help %s)", what,
				  s_option_names[i].name, topic);
			return -1;
		}
	}
	return 0;
}

/* Rejects options the command does not use, so that a flag in the wrong place is noticed. */
static int s_check_options(const ctl_t *ctl, const command_t *cmd)
{
	return ctl_check_options(ctl, cmd->options, cmd->name, cmd->name);
}

int main(int argc, char **argv)
{
	enum {
		O_GATEWAY = 256,
		O_STREAM,
		O_ADMIN,
		O_TIMEOUT,
		O_COUNT,
		O_JSON,
		O_ROUTE,
		O_TYPE,
		O_SINCE,
		O_LIMIT,
		O_CLEAR,
		O_ALL_MATCHING,
		O_OUT,
		O_CURVE_SERVER_KEY,
		O_CURVE_KEY_FILE,
		O_FROM,
		O_TO,
		O_BY,
		O_CSV,
		O_OLDER_THAN,
		O_CLUSTER
	};
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "gateway", required_argument, NULL, O_GATEWAY },
		{ "stream", required_argument, NULL, O_STREAM },
		{ "admin", required_argument, NULL, O_ADMIN },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "count", required_argument, NULL, O_COUNT },
		{ "json", no_argument, NULL, O_JSON },
		{ "route", required_argument, NULL, O_ROUTE },
		{ "type", required_argument, NULL, O_TYPE },
		{ "since", required_argument, NULL, O_SINCE },
		{ "limit", required_argument, NULL, O_LIMIT },
		{ "clear", no_argument, NULL, O_CLEAR },
		{ "all-matching", no_argument, NULL, O_ALL_MATCHING },
		{ "older-than", required_argument, NULL, O_OLDER_THAN },
		{ "out", required_argument, NULL, O_OUT },
		{ "curve-server-key", required_argument, NULL, O_CURVE_SERVER_KEY },
		{ "curve-key-file", required_argument, NULL, O_CURVE_KEY_FILE },
		{ "from", required_argument, NULL, O_FROM },
		{ "to", required_argument, NULL, O_TO },
		{ "by", required_argument, NULL, O_BY },
		{ "csv", no_argument, NULL, O_CSV },
		{ "cluster", no_argument, NULL, O_CLUSTER },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	ctl_t ctl = { .prog = "kanalctl", .timeout_ms = CTL_DEFAULT_TIMEOUT_MS };
	const command_t *cmd;
	bool help = false;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			ctl.conf_flag = optarg;
			ctl.given |= CTL_OPT_CONFIG;
			break;
		case O_GATEWAY:
			ctl.gateway_flag = optarg;
			ctl.given |= CTL_OPT_GATEWAY;
			break;
		case O_STREAM:
			ctl.stream_flag = optarg;
			ctl.given |= CTL_OPT_STREAM;
			break;
		case O_ADMIN:
			ctl.admin_flag = optarg;
			ctl.given |= CTL_OPT_ADMIN;
			break;
		case O_TIMEOUT:
			if (s_parse_count("--timeout", optarg, &ctl.timeout_ms) < 0)
				return CTL_EXIT_ERROR;
			ctl.timeout_given = true;
			ctl.given |= CTL_OPT_TIMEOUT;
			break;
		case O_COUNT:
			if (s_parse_count("--count", optarg, &ctl.count) < 0)
				return CTL_EXIT_ERROR;
			ctl.given |= CTL_OPT_COUNT;
			break;
		case O_JSON:
			ctl.json = true;
			ctl.given |= CTL_OPT_JSON;
			break;
		case O_ROUTE:
			ctl.route = optarg;
			ctl.given |= CTL_OPT_ROUTE;
			break;
		case O_TYPE:
			ctl.type = optarg;
			ctl.given |= CTL_OPT_TYPE;
			break;
		case O_SINCE:
			ctl.since = optarg;
			ctl.given |= CTL_OPT_SINCE;
			break;
		case O_LIMIT:
			if (s_parse_count("--limit", optarg, &ctl.limit) < 0)
				return CTL_EXIT_ERROR;
			if (ctl.limit == 0) {
				ctl_error("--limit wants a whole number >= 1, not '%s'", optarg);
				return CTL_EXIT_ERROR;
			}
			ctl.given |= CTL_OPT_LIMIT;
			break;
		case O_CLEAR:
			ctl.clear = true;
			ctl.given |= CTL_OPT_CLEAR;
			break;
		case O_ALL_MATCHING:
			ctl.all_matching = true;
			ctl.given |= CTL_OPT_ALL_MATCHING;
			break;
		case O_OLDER_THAN:
			ctl.older_than = optarg;
			ctl.given |= CTL_OPT_OLDER_THAN;
			break;
		case O_OUT:
			ctl.out = optarg;
			ctl.given |= CTL_OPT_OUT;
			break;
		case O_CURVE_SERVER_KEY:
			ctl.curve_server_key = optarg;
			ctl.given |= CTL_OPT_CURVE;
			break;
		case O_CURVE_KEY_FILE:
			ctl.curve_key_file = optarg;
			ctl.given |= CTL_OPT_CURVE;
			break;
		case O_FROM:
		case O_TO:
			*(c == O_FROM ? &ctl.from : &ctl.to) = optarg;
			ctl.given |= CTL_OPT_PERIOD;
			break;
		case O_BY:
			ctl.by = optarg;
			ctl.given |= CTL_OPT_BY;
			break;
		case O_CSV:
			ctl.csv = true;
			ctl.given |= CTL_OPT_CSV;
			break;
		case O_CLUSTER:
			ctl.cluster = true;
			ctl.given |= CTL_OPT_CLUSTER;
			break;
		case 'h':
			help = true;
			break;
		case 'V':
			kanal__version_print(stdout, "kanalctl");
			return CTL_EXIT_OK;
		case ':':
			ctl_error("option %s needs a value", argv[optind - 1]);
			return CTL_EXIT_ERROR;
		default:
			if (optopt)
				ctl_error("unknown option -%c (kanalctl --help)", optopt);
			else
				ctl_error("unknown option %s (kanalctl --help)", argv[optind - 1]);
			return CTL_EXIT_ERROR;
		}
	}
	if (optind >= argc) {
		s_usage(help ? stdout : stderr);
		return help ? CTL_EXIT_OK : CTL_EXIT_ERROR;
	}
	if (!strcmp(argv[optind], "help"))
		return s_help(argc - optind - 1, argv + optind + 1);
	cmd = s_find(argv[optind]);
	if (!cmd) {
		ctl_error("no command '%s' (kanalctl help lists them)", argv[optind]);
		return CTL_EXIT_ERROR;
	}
	if (help) {
		s_command_help(cmd, stdout);
		return CTL_EXIT_OK;
	}
	if (s_check_options(&ctl, cmd) < 0)
		return CTL_EXIT_ERROR;
	return cmd->run(&ctl, argc - optind - 1, argv + optind + 1);
}
