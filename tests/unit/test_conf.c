/*
 * tests/unit/test_conf.c — kanald.yaml (broker/conf.c), the YAML tree under it
 * (broker/yamltree.c) and the diagnostics both report through (broker/diag.c).
 *
 * Error messages are checked against expected-output files: every
 * tests/data/conf/bad/NAME.yaml must fail to load with exactly the text in NAME.expected.
 * Run from the repository root (tests/run.sh does).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "conf.h"
#include "yamltree.h"

#define BAD_DIR "tests/data/conf/bad"
#define GOOD_FILE "tests/data/conf/good/kanald.yaml"

/* Finds option `key` of an instance, or NULL. */
static const kanal_optval_t *s_option(const conf_instance_t *inst, const char *key)
{
	size_t i;

	for (i = 0; inst && i < inst->n_options; i++)
		if (!strcmp(inst->options[i].key, key))
			return &inst->options[i];
	return NULL;
}

/* Writes `text` as kanald.yaml in a new temporary folder and loads it. */
static int s_load_text(const char *text, char **dir_out, conf_t **conf, diag_t *d)
{
	char *dir = test_tmpdir("conf");
	char *path;
	int rc;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	path = test_write_file(dir, "kanald.yaml", text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(path);
	rc = conf_load(path, conf, d);
	free(path);
	*dir_out = dir;
	return rc;
}

/* ---- expected-output cases -------------------------------------------------------------- */

static void test_bad_files_match_expected_errors(void)
{
	DIR *dir = opendir(BAD_DIR);
	struct dirent *e;
	size_t cases = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	while ((e = readdir(dir))) {
		size_t len = strlen(e->d_name);
		char path[512], expected_path[600];
		char *expected, *got;
		diag_t d = { 0 };
		conf_t *conf = NULL;
		int rc;

		if (e->d_name[0] == '.' || len <= 5 || strcmp(e->d_name + len - 5, ".yaml"))
			continue;
		snprintf(path, sizeof path, "%s/%s", BAD_DIR, e->d_name);
		snprintf(expected_path, sizeof expected_path, "%s/%.*s.expected", BAD_DIR,
			 (int)(len - 5), e->d_name);
		expected = test_read_file(expected_path, NULL);
		CU_ASSERT_PTR_NOT_NULL(expected);
		if (!expected) {
			fprintf(stderr, "\n%s: no expected-output file\n", path);
			continue;
		}
		rc = conf_load(path, &conf, &d);
		got = diag_join(&d);
		if (rc != KANAL_ECONFIG || !got || strcmp(got, expected))
			fprintf(stderr, "\n%s: rc %d\n--- expected\n%s--- got\n%s---\n", path, rc,
				expected, got ? got : "(null)");
		CU_ASSERT_EQUAL(rc, KANAL_ECONFIG);
		CU_ASSERT_PTR_NULL(conf);
		CU_ASSERT_PTR_NOT_NULL(got);
		if (got)
			CU_ASSERT_STRING_EQUAL(got, expected);
		conf_destroy(&conf);
		free(got);
		free(expected);
		diag_free(&d);
		cases++;
	}
	closedir(dir);
	CU_ASSERT(cases >= 10);
}

/* ---- good files ------------------------------------------------------------------------ */

/* Every setting of a complete file is read, relative paths resolved against the file's
 * folder and tidied ("conf/good/../plugins" reads "conf/plugins"). */
static void test_good_file_reads_every_setting(void)
{
	diag_t d = { 0 };
	conf_t *conf = NULL;
	const conf_instance_t *inst;
	const kanal_optval_t *opt;
	int rc = conf_load(GOOD_FILE, &conf, &d);

	if (rc)
		diag_print(&d, stderr);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_STRING_EQUAL(conf->file, GOOD_FILE);
	CU_ASSERT_STRING_EQUAL(conf->dir, "tests/data/conf/good");
	CU_ASSERT_EQUAL(conf->log_level, KANAL_LOG_DEBUG);
	CU_ASSERT_STRING_EQUAL(conf->plugin_dir, "tests/data/conf/plugins");
	CU_ASSERT_STRING_EQUAL(conf->state_dir, "/var/lib/kanal/state");
	CU_ASSERT_STRING_EQUAL(conf->run_dir, "tests/data/conf/good/run");
	CU_ASSERT_EQUAL_FATAL(conf->n_route_paths, 2);
	CU_ASSERT_STRING_EQUAL(conf->route_paths[0], "tests/data/routes/good");
	CU_ASSERT_STRING_EQUAL(conf->route_paths[1], "tests/data/conf/good/extra.yaml");
	CU_ASSERT_STRING_EQUAL(conf->gateway_endpoint, "tcp://127.0.0.1:0");
	CU_ASSERT_STRING_EQUAL(conf->stream_endpoint, "");
	CU_ASSERT_STRING_EQUAL(conf->admin_endpoint, "ipc:///tmp/kanal-admin.sock");
	CU_ASSERT_EQUAL(conf->max_event_bytes, 128 * 1024);
	CU_ASSERT_EQUAL(conf->queue_max_events, 500);
	CU_ASSERT_EQUAL(conf->queue_max_bytes, 8 * 1024 * 1024);
	CU_ASSERT_EQUAL(conf->shutdown_deadline_ms, 0);
	CU_ASSERT_EQUAL(conf->enrich_timeout_ms, 1500);
	CU_ASSERT_EQUAL_FATAL(conf->n_instances, 3);

	inst = conf_instance(conf, "ticker");
	CU_ASSERT_PTR_EQUAL_FATAL(inst, &conf->instances[0]);
	CU_ASSERT_STRING_EQUAL(inst->plugin, "source");
	CU_ASSERT_STRING_EQUAL(inst->plugin_path, "tests/data/conf/plugins/source.so");
	CU_ASSERT_STRING_EQUAL(inst->isolation, "thread");
	CU_ASSERT_EQUAL(inst->line, 18);
	CU_ASSERT_EQUAL(inst->column, 5);
	CU_ASSERT_EQUAL(inst->n_options, 2);
	opt = s_option(inst, "interval");
	CU_ASSERT_PTR_NOT_NULL_FATAL(opt);
	CU_ASSERT_STRING_EQUAL(opt->value, "1s");
	CU_ASSERT_FALSE(opt->is_list);
	CU_ASSERT_EQUAL(opt->line, 20);
	CU_ASSERT_EQUAL(opt->column, 33);

	inst = conf_instance(conf, "calendar");
	CU_ASSERT_PTR_NOT_NULL_FATAL(inst);
	CU_ASSERT_STRING_EQUAL(inst->plugin, "./custom/calendar.so");
	CU_ASSERT_STRING_EQUAL(inst->plugin_path, "tests/data/conf/good/custom/calendar.so");
	CU_ASSERT_STRING_EQUAL(inst->isolation, "process");
	CU_ASSERT_EQUAL(inst->n_options, 4);
	opt = s_option(inst, "calendars");
	CU_ASSERT_PTR_NOT_NULL_FATAL(opt);
	CU_ASSERT_TRUE(opt->is_list);
	CU_ASSERT_PTR_NULL(opt->value);
	CU_ASSERT_EQUAL_FATAL(opt->n_items, 2);
	CU_ASSERT_STRING_EQUAL(opt->items[0], "staff");
	CU_ASSERT_STRING_EQUAL(opt->items[1], "family");
	CU_ASSERT_EQUAL(opt->line, 26);
	CU_ASSERT_EQUAL(opt->column, 7);
	CU_ASSERT_STRING_EQUAL(s_option(inst, "retries")->value, "3");
	CU_ASSERT_STRING_EQUAL(s_option(inst, "empty")->value, "");

	inst = conf_instance(conf, "letter");
	CU_ASSERT_PTR_NOT_NULL_FATAL(inst);
	CU_ASSERT_STRING_EQUAL(inst->plugin_path, "/opt/kanal/plugins/letter.so");
	CU_ASSERT_EQUAL(inst->n_options, 0);
	CU_ASSERT_PTR_NULL(conf_instance(conf, "nobody"));
	conf_destroy(&conf);
	CU_ASSERT_PTR_NULL(conf);
	diag_free(&d);
}

/* A file that sets almost nothing gets the documented defaults, with the folders beside
 * the file and every endpoint on 127.0.0.1. */
static void test_defaults(void)
{
	diag_t d = { 0 };
	conf_t *conf = NULL;
	char *dir, *expected;
	int rc = s_load_text("instances:\n  - name: ticker\n    plugin: source\n", &dir, &conf, &d);

	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL(d.count, 0);
	CU_ASSERT_STRING_EQUAL(conf->dir, dir);
	CU_ASSERT_EQUAL(conf->log_level, KANAL_LOG_INFO);
	CU_ASSERT_STRING_EQUAL(conf->gateway_endpoint, "tcp://127.0.0.1:7700");
	CU_ASSERT_STRING_EQUAL(conf->stream_endpoint, "tcp://127.0.0.1:7701");
	CU_ASSERT_STRING_EQUAL(conf->admin_endpoint, "tcp://127.0.0.1:7702");
	CU_ASSERT_EQUAL(conf->max_event_bytes, 64 * 1024);
	CU_ASSERT_EQUAL(conf->queue_max_events, 10000);
	CU_ASSERT_EQUAL(conf->queue_max_bytes, 64 * 1024 * 1024);
	CU_ASSERT_EQUAL(conf->shutdown_deadline_ms, 5000);
	CU_ASSERT_EQUAL(conf->enrich_timeout_ms, 2000);
	CU_ASSERT_TRUE(asprintf(&expected, "%s/state", dir) > 0);
	CU_ASSERT_STRING_EQUAL(conf->state_dir, expected);
	free(expected);
	CU_ASSERT_TRUE(asprintf(&expected, "%s/run", dir) > 0);
	CU_ASSERT_STRING_EQUAL(conf->run_dir, expected);
	free(expected);
	CU_ASSERT_EQUAL_FATAL(conf->n_route_paths, 1);
	CU_ASSERT_TRUE(asprintf(&expected, "%s/routes", dir) > 0);
	CU_ASSERT_STRING_EQUAL(conf->route_paths[0], expected);
	free(expected);
	CU_ASSERT_TRUE(asprintf(&expected, "%s/plugins/source.so", dir) > 0);
	CU_ASSERT_STRING_EQUAL(conf->instances[0].plugin_path, expected);
	free(expected);
	CU_ASSERT_STRING_EQUAL(conf->instances[0].isolation, "thread");
	conf_destroy(&conf);
	diag_free(&d);
	test_rmdir_r(dir);
	free(dir);
}

/* Cluster mode's singletons: the bundled pollers are singletons unless told otherwise, other
 * plugins only when told; the lease is 10 s unless given. */
static void test_singleton_defaults(void)
{
	diag_t d = { 0 };
	conf_t *conf = NULL;
	char *dir;
	int rc = s_load_text("journal:\n  mode: cluster\n  nats:\n    servers: [nats://n1:4222]\n"
			     "    lease: 4s\n"
			     "instances:\n"
			     "  - { name: regs, plugin: daycare }\n"
			     "  - { name: feed, plugin: httppoll, singleton: false }\n"
			     "  - { name: hr, plugin: staff }\n"
			     "  - { name: out, plugin: sink }\n"
			     "  - { name: ticker, plugin: source, singleton: true }\n",
			     &dir, &conf, &d);

	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL_FATAL(conf->n_instances, 5);
	CU_ASSERT_EQUAL(conf->nats.lease_ms, 4000);
	CU_ASSERT_TRUE(conf->instances[0].singleton);
	CU_ASSERT_FALSE(conf->instances[1].singleton);
	CU_ASSERT_TRUE(conf->instances[2].singleton);
	CU_ASSERT_FALSE(conf->instances[3].singleton);
	CU_ASSERT_TRUE(conf->instances[4].singleton);
	conf_destroy(&conf);
	diag_free(&d);
	test_rmdir_r(dir);
	free(dir);
	rc = s_load_text("journal:\n  mode: cluster\n  nats:\n    servers: [nats://n1:4222]\n",
			 &dir, &conf, &d);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL(conf->nats.lease_ms, 10000);
	conf_destroy(&conf);
	diag_free(&d);
	test_rmdir_r(dir);
	free(dir);
}

/* An empty file (or one holding only comments) is a valid config with no instances. */
static void test_empty_file_is_all_defaults(void)
{
	diag_t d = { 0 };
	conf_t *conf = NULL;
	char *dir;
	int rc = s_load_text("# nothing yet\n", &dir, &conf, &d);

	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(conf);
	CU_ASSERT_EQUAL(conf->n_instances, 0);
	CU_ASSERT_STRING_EQUAL(conf->gateway_endpoint, "tcp://127.0.0.1:7700");
	conf_destroy(&conf);
	diag_free(&d);
	test_rmdir_r(dir);
	free(dir);
}

/* A missing file is a config error naming the file. */
static void test_missing_file(void)
{
	diag_t d = { 0 };
	conf_t *conf = NULL;
	char *text;

	CU_ASSERT_EQUAL(conf_load("tests/data/conf/no-such.yaml", &conf, &d), KANAL_ECONFIG);
	CU_ASSERT_PTR_NULL(conf);
	text = diag_join(&d);
	CU_ASSERT_STRING_EQUAL(text, "tests/data/conf/no-such.yaml: error: cannot read: No such "
				     "file or directory\n");
	free(text);
	diag_free(&d);
}

/* Errors accumulate across loads into one diag, each load adding its own. */
static void test_errors_are_appended(void)
{
	diag_t d = { 0 };
	conf_t *conf = NULL;

	CU_ASSERT_EQUAL(conf_load(BAD_DIR "/unknown-key.yaml", &conf, &d), KANAL_ECONFIG);
	CU_ASSERT_EQUAL(d.count, 3);
	CU_ASSERT_EQUAL(conf_load(BAD_DIR "/wrong-types.yaml", &conf, &d), KANAL_ECONFIG);
	CU_ASSERT_EQUAL(d.count, 8);
	CU_ASSERT_STRING_EQUAL(d.items[3].source, BAD_DIR "/wrong-types.yaml");
	CU_ASSERT_EQUAL(d.items[3].line, 1);
	diag_free(&d);
	CU_ASSERT_EQUAL(d.count, 0);
	CU_ASSERT_PTR_NULL(d.items);
}

/* ---- the YAML tree ------------------------------------------------------------------------ */

/* Nodes carry 1-based positions and their scalar style; lookups find keys; suggestions
 * catch one-letter typos and swaps but not unrelated words. */
static void test_yaml_tree_positions_and_lookup(void)
{
	const char *text = "a: plain\n"
			   "b: 'single'\n"
			   "list:\n"
			   "  - \"double\"\n"
			   "  - |\n"
			   "      block\n"
			   "empty:\n";
	const char *const words[] = { "endpoints", "limits", "instances" };
	yaml_tree_t *tree = NULL;
	diag_t d = { 0 };
	const ynode_t *n;

	CU_ASSERT_EQUAL_FATAL(yaml_tree_parse(text, strlen(text), "t.yaml", &tree, &d), 0);
	CU_ASSERT_EQUAL(tree->errors, 0);
	n = yaml_tree_get(tree->root, "a");
	CU_ASSERT_PTR_NOT_NULL_FATAL(n);
	CU_ASSERT_EQUAL(n->line, 1);
	CU_ASSERT_EQUAL(n->column, 4);
	CU_ASSERT_EQUAL(n->style, YNODE_PLAIN);
	n = yaml_tree_get(tree->root, "b");
	CU_ASSERT_EQUAL(n->style, YNODE_SINGLE_QUOTED);
	CU_ASSERT_STRING_EQUAL(n->text, "single");
	n = yaml_tree_get(tree->root, "list");
	CU_ASSERT_EQUAL_FATAL(n->kind, YNODE_SEQUENCE);
	CU_ASSERT_EQUAL_FATAL(n->n_items, 2);
	CU_ASSERT_EQUAL(n->items[0]->style, YNODE_DOUBLE_QUOTED);
	CU_ASSERT_EQUAL(n->items[0]->line, 4);
	CU_ASSERT_EQUAL(n->items[0]->column, 5);
	CU_ASSERT_EQUAL(n->items[1]->style, YNODE_LITERAL);
	CU_ASSERT_STRING_EQUAL(n->items[1]->text, "block\n");
	CU_ASSERT_EQUAL(n->items[1]->content_column, 7);
	CU_ASSERT_TRUE(yaml_tree_is_null(yaml_tree_get(tree->root, "empty")));
	CU_ASSERT_PTR_NULL(yaml_tree_get(tree->root, "missing"));
	CU_ASSERT_STRING_EQUAL(yaml_tree_closest("endpoint", words, 3), "endpoints");
	CU_ASSERT_STRING_EQUAL(yaml_tree_closest("limtis", words, 3), "limits");
	CU_ASSERT_PTR_NULL(yaml_tree_closest("routes", words, 3));
	CU_ASSERT_PTR_NULL(yaml_tree_closest("x", words, 3));
	yaml_tree_destroy(&tree);
	CU_ASSERT_PTR_NULL(tree);
	diag_free(&d);
}

/* ---- diagnostics ------------------------------------------------------------------------- */

/* diag_print shows the error, the source line and a caret under the column, gcc style;
 * tabs before the column are kept so the caret lines up. */
static void test_diag_print_shows_source_and_caret(void)
{
	char *dir = test_tmpdir("diag");
	char *path, *buf = NULL, *expected;
	size_t size = 0;
	diag_t d = { 0 };
	FILE *out;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	path = test_write_file(dir, "x.yaml", "routes:\n\t- to: calender\n");
	diag_add(&d, path, 2, 8, "unknown instance '%s'", "calender");
	diag_add(&d, "/no/such/file.yaml", 3, 1, "not shown with a source line");
	diag_add(&d, NULL, 0, 0, "no place at all");
	out = open_memstream(&buf, &size);
	diag_print(&d, out);
	fclose(out);
	CU_ASSERT_TRUE(asprintf(&expected,
				"%s:2:8: error: unknown instance 'calender'\n"
				"    2 | \t- to: calender\n"
				"      | \t      ^\n"
				"/no/such/file.yaml:3:1: error: not shown with a source line\n"
				"error: no place at all\n",
				path) > 0);
	CU_ASSERT_STRING_EQUAL(buf, expected);
	free(expected);
	free(buf);
	buf = diag_join(&d);
	CU_ASSERT_TRUE(asprintf(&expected,
				"%s:2:8: error: unknown instance 'calender'\n"
				"/no/such/file.yaml:3:1: error: not shown with a source line\n"
				"error: no place at all\n",
				path) > 0);
	CU_ASSERT_STRING_EQUAL(buf, expected);
	free(expected);
	free(buf);
	diag_free(&d);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

/* A CPR number never leaves through a diagnostic: not in the text, not in the printed
 * source line. (The number is assembled here so that no assertion message can show it.) */
static void test_diag_masks_cpr_numbers(void)
{
	char *dir = test_tmpdir("diag-cpr");
	char cpr[16], line[64], *path, *buf = NULL;
	size_t size = 0;
	diag_t d = { 0 };
	FILE *out;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	snprintf(cpr, sizeof cpr, "%s-%s", "150385", "1233");
	snprintf(line, sizeof line, "where: data.cpr == \"%s\"\n", cpr);
	path = test_write_file(dir, "x.yaml", line);
	diag_add(&d, path, 1, 8, "bad value '%s'", cpr);
	out = open_memstream(&buf, &size);
	diag_print(&d, out);
	fclose(out);
	CU_ASSERT_PTR_NULL(strstr(buf, cpr));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "bad value '150385-XXXX'"));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "where: data.cpr == \"150385-XXXX\""));
	free(buf);
	diag_free(&d);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

/* conf_load_all, the loader of the checks and the start, also asks whether the folders a
 * start needs can be made: a relative state_dir under missing folders can (kanald makes
 * parents), one under a file cannot; conf_load, which kanalctl's other commands use, does
 * not look. */
static void test_load_all_checks_the_folders_a_start_needs(void)
{
	char *dir = test_tmpdir("conf-folders"), cwd[4096], *file;
	conf_t *conf = NULL;
	diag_t d = { 0 };

	REQUIRE(dir && getcwd(cwd, sizeof cwd));
	file = test_write_file(dir, "k.yaml", "state_dir: not/yet/there\nrun_dir: run\n");
	free(file);
	file = test_write_file(dir, "plain", "");
	free(file);
	REQUIRE(chdir(dir) == 0);
	CU_ASSERT_EQUAL(conf_load_all("k.yaml", &conf, &d), 0);
	CU_ASSERT_EQUAL(d.count, 0);
	conf_destroy(&conf);
	file = test_write_file(".", "k.yaml", "state_dir: plain/state\n");
	free(file);
	CU_ASSERT_EQUAL(conf_load_all("k.yaml", &conf, &d), KANAL_ECONFIG);
	CU_ASSERT_PTR_NOT_NULL(conf); /* kept, for checking on */
	CU_ASSERT_EQUAL(d.count, 1);
	CU_ASSERT(d.count && strstr(d.items[0].text, "'state_dir': kanald cannot create or use"));
	conf_destroy(&conf);
	CU_ASSERT_EQUAL(conf_load("k.yaml", &conf, &d), 0);
	conf_destroy(&conf);
	CU_ASSERT(chdir(cwd) == 0);
done:
	diag_free(&d);
	if (dir)
		test_rmdir_r(dir);
	free(dir);
}

TEST_MAIN("conf", TEST(test_bad_files_match_expected_errors),
	  TEST(test_good_file_reads_every_setting), TEST(test_defaults),
	  TEST(test_singleton_defaults), TEST(test_empty_file_is_all_defaults),
	  TEST(test_missing_file), TEST(test_errors_are_appended),
	  TEST(test_yaml_tree_positions_and_lookup), TEST(test_diag_print_shows_source_and_caret),
	  TEST(test_diag_masks_cpr_numbers), TEST(test_load_all_checks_the_folders_a_start_needs))
