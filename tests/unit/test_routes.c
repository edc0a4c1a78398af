/*
 * tests/unit/test_routes.c — routing tables (broker/routes.c): loading and its error
 * messages, matching through the token trie, and the explain output ops read.
 *
 * Error messages are checked against expected-output files, the way jansson tests its
 * parser: every tests/data/routes/bad/NAME.yaml (or NAME/ folder) must fail to load with
 * exactly the text in NAME.expected. Run from the repository root (tests/run.sh does).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"
#include "routes.h"

#define BAD_DIR "tests/data/routes/bad"
#define GOOD_DIR "tests/data/routes/good"

static const char *const s_instances[] = { "daycare-north",
					   "daycare-south",
					   "family-calendar",
					   "calendar",
					   "staffing",
					   "letter",
					   "cpr",
					   "hr" };
#define N_INSTANCES (sizeof s_instances / sizeof s_instances[0])

/* ---- helpers ---------------------------------------------------------------------------- */

/* Loads routing text that must be valid; prints the errors when it is not. */
static routes_t *s_table(const char *yaml)
{
	diag_t d = { 0 };
	routes_t *rt = NULL;
	int rc = routes_load_text(yaml, strlen(yaml), "test.yaml", s_instances, N_INSTANCES, &rt,
				  &d);

	if (rc != 0)
		diag_print(&d, stderr);
	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT_EQUAL(d.count, 0);
	diag_free(&d);
	return rt;
}

/* Loads routing text that must fail; returns the joined errors (caller frees). */
static char *s_errors(const char *yaml)
{
	diag_t d = { 0 };
	routes_t *rt = NULL;
	int rc = routes_load_text(yaml, strlen(yaml), "test.yaml", s_instances, N_INSTANCES, &rt,
				  &d);
	char *text;

	CU_ASSERT_EQUAL(rc, KANAL_ECONFIG);
	CU_ASSERT_PTR_NULL(rt);
	routes_destroy(&rt);
	text = diag_join(&d);
	diag_free(&d);
	return text;
}

static kanal_msg_t *s_event(const char *type, const char *source, const char *data)
{
	kanal_msg_t *msg = kanal_msg_new(type, source, "e-1");

	CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
	if (data)
		CU_ASSERT_EQUAL(kanal_msg_set_data_json(msg, data, strlen(data)), 0);
	return msg;
}

/* The names of the routes msg matches, comma-separated, in match order. */
static const char *s_matches(const routes_t *rt, const kanal_msg_t *msg)
{
	static char buf[4096];
	const route_t *out[64];
	size_t n = routes_match(rt, msg, out, 64), i, used = 0;

	buf[0] = '\0';
	for (i = 0; i < n && i < 64; i++)
		used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s", i ? "," : "",
					 out[i]->name);
	return buf;
}

static const char *s_match_type(const routes_t *rt, const char *type)
{
	kanal_msg_t *msg = s_event(type, "daycare-north", NULL);
	const char *names = s_matches(rt, msg);

	kanal_msg_destroy(&msg);
	return names;
}

/* Runs one expected-output case: loads `path` (a file or folder) and compares the joined
 * errors with `expected_path`. */
static void s_check_bad_case(const char *path, const char *expected_path)
{
	diag_t d = { 0 };
	routes_t *rt = NULL;
	char *expected = test_read_file(expected_path, NULL);
	char *got;
	int rc;

	if (!expected) {
		fprintf(stderr, "\n%s: no expected-output file %s\n", path, expected_path);
		CU_FAIL("a bad case has no .expected file");
		return;
	}
	rc = routes_load(&path, 1, s_instances, N_INSTANCES, &rt, &d);
	got = diag_join(&d);
	if (rc != KANAL_ECONFIG || !got || strcmp(got, expected) != 0)
		fprintf(stderr, "\n%s: rc %d\n--- expected\n%s--- got\n%s---\n", path, rc, expected,
			got ? got : "(null)");
	CU_ASSERT_EQUAL(rc, KANAL_ECONFIG);
	CU_ASSERT_PTR_NULL(rt);
	CU_ASSERT_PTR_NOT_NULL(got);
	if (got)
		CU_ASSERT_STRING_EQUAL(got, expected);
	routes_destroy(&rt);
	free(got);
	free(expected);
	diag_free(&d);
}

/* ---- loading ------------------------------------------------------------------------------ */

/* Every tests/data/routes/bad case fails with exactly its expected errors. */
static void test_bad_tables_match_expected_errors(void)
{
	DIR *dir = opendir(BAD_DIR);
	struct dirent *e;
	size_t cases = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	while ((e = readdir(dir))) {
		char path[512], expected[600];
		size_t len = strlen(e->d_name);
		struct stat st;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "%s/%s", BAD_DIR, e->d_name);
		if (stat(path, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			snprintf(expected, sizeof expected, "%s.expected", path);
		} else if (len > 5 && !strcmp(e->d_name + len - 5, ".yaml")) {
			snprintf(expected, sizeof expected, "%s/%.*s.expected", BAD_DIR,
				 (int)(len - 5), e->d_name);
		} else {
			continue;
		}
		s_check_bad_case(path, expected);
		cases++;
	}
	closedir(dir);
	/* Guards against a moved folder making this test pass on nothing. */
	CU_ASSERT(cases >= 15);
}

/* The shipped-style good table loads, from two files, with every field as written and the
 * defaults filled in. */
static void test_good_table_loads_with_defaults(void)
{
	const char *path = GOOD_DIR;
	diag_t d = { 0 };
	routes_t *rt = NULL;
	const route_t *r;
	int rc = routes_load(&path, 1, s_instances, N_INSTANCES, &rt, &d);

	if (rc)
		diag_print(&d, stderr);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL(routes_count(rt), 4);
	CU_ASSERT_EQUAL(routes_file_count(rt), 2);
	CU_ASSERT_STRING_EQUAL(routes_default(rt), "deadletter");

	r = routes_get(rt, 0);
	CU_ASSERT_STRING_EQUAL(r->name, "sick-child-to-calendar");
	CU_ASSERT_STRING_EQUAL(r->file, GOOD_DIR "/10-daycare.yaml");
	CU_ASSERT_EQUAL(r->line, 3);
	CU_ASSERT_STRING_EQUAL(r->type_pattern, "child.absence.*");
	CU_ASSERT_STRING_EQUAL(r->source_glob, "daycare-*");
	CU_ASSERT_STRING_EQUAL(r->where_text, "data.reason == \"sick\" and data.days <= 5");
	CU_ASSERT_PTR_NOT_NULL(r->where);
	CU_ASSERT_EQUAL_FATAL(r->n_enrich, 1);
	CU_ASSERT_STRING_EQUAL(r->enrich[0].service, "cpr");
	CU_ASSERT_STRING_EQUAL(r->enrich[0].into, "data.guardian");
	CU_ASSERT_EQUAL(r->enrich[0].timeout_ms, 3000);
	CU_ASSERT_EQUAL(r->enrich[0].on_error, ENRICH_SKIP);
	CU_ASSERT_EQUAL_FATAL(r->n_to, 2);
	CU_ASSERT_STRING_EQUAL(r->to[0], "family-calendar");
	CU_ASSERT_STRING_EQUAL(r->to[1], "staffing");
	CU_ASSERT_EQUAL_FATAL(r->n_fallback, 1);
	CU_ASSERT_STRING_EQUAL(r->fallback[0], "letter");
	CU_ASSERT_EQUAL(r->retry.max_attempts, 10);
	CU_ASSERT_EQUAL(r->retry.backoff_ms, 2000);
	CU_ASSERT_EQUAL(r->retry.max_backoff_ms, 600000);

	r = routes_get(rt, 1);
	CU_ASSERT_EQUAL(r->index, 1);
	CU_ASSERT_EQUAL(r->n_to, 1);
	CU_ASSERT_STRING_EQUAL(r->to[0], "letter");
	CU_ASSERT_PTR_NULL(r->source_glob);
	CU_ASSERT_EQUAL(r->retry.max_attempts, 5);
	CU_ASSERT_EQUAL(r->retry.backoff_ms, 1000);
	CU_ASSERT_EQUAL(r->retry.max_backoff_ms, 300000);

	r = routes_get(rt, 3);
	CU_ASSERT_STRING_EQUAL(r->name, "audit-everything");
	CU_ASSERT_STRING_EQUAL(r->file, GOOD_DIR "/20-staff.yml");
	CU_ASSERT_PTR_NULL(r->type_pattern);
	CU_ASSERT_PTR_NULL(r->where);
	CU_ASSERT_PTR_NULL(routes_get(rt, 4));
	routes_destroy(&rt);
	CU_ASSERT_PTR_NULL(rt);
	diag_free(&d);
}

/* Files of a folder are read in name order; other and hidden files are left alone. */
static void test_folder_files_read_in_name_order(void)
{
	char *dir = test_tmpdir("routes-order");
	const char *path = dir;
	diag_t d = { 0 };
	routes_t *rt = NULL;
	char *files[5];
	int rc;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	files[0] = test_write_file(dir, "b.yaml", "routes:\n  - name: from-b\n    to: hr\n");
	files[1] = test_write_file(dir, "a.yml", "routes:\n  - name: from-a\n    to: hr\n");
	files[2] = test_write_file(dir, "c.yaml.bak", "this is: [not read\n");
	files[3] = test_write_file(dir, ".#b.yaml", "neither: [is this\n");
	files[4] = test_write_file(dir, "10-first.yaml", "default: letter\n");
	rc = routes_load(&path, 1, s_instances, N_INSTANCES, &rt, &d);
	if (rc)
		diag_print(&d, stderr);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL(routes_file_count(rt), 3);
	CU_ASSERT_EQUAL_FATAL(routes_count(rt), 2);
	CU_ASSERT_STRING_EQUAL(routes_get(rt, 0)->name, "from-a");
	CU_ASSERT_STRING_EQUAL(routes_get(rt, 1)->name, "from-b");
	CU_ASSERT_STRING_EQUAL(routes_default(rt), "letter");
	routes_destroy(&rt);
	diag_free(&d);
	for (size_t i = 0; i < 5; i++)
		free(files[i]);
	test_rmdir_r(dir);
	free(dir);
}

/* A folder without routing files is an error, and so is a path that does not exist. */
static void test_empty_folder_and_missing_path_are_errors(void)
{
	char *dir = test_tmpdir("routes-empty");
	char *note, *expected, *got;
	const char *paths[2];
	diag_t d = { 0 };
	routes_t *rt = NULL;
	int rc;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	note = test_write_file(dir, "README", "no routes here\n");
	paths[0] = dir;
	paths[1] = "tests/data/routes/no-such-folder";
	rc = routes_load(paths, 2, s_instances, N_INSTANCES, &rt, &d);
	CU_ASSERT_EQUAL(rc, KANAL_ECONFIG);
	CU_ASSERT_PTR_NULL(rt);
	got = diag_join(&d);
	CU_ASSERT_TRUE(asprintf(&expected,
				"%s: error: no routing files in %s (expected *.yaml or *.yml "
				"files)\n"
				"tests/data/routes/no-such-folder: error: cannot read: No such "
				"file or directory\n",
				dir, dir) > 0);
	CU_ASSERT_STRING_EQUAL(got, expected);
	free(got);
	free(expected);
	free(note);
	diag_free(&d);
	test_rmdir_r(dir);
	free(dir);
}

/* A route may name the built-in dead-letter destination without it being an instance; a
 * long backoff raises the default ceiling with it. */
static void test_deadletter_known_and_backoff_ceiling_follows(void)
{
	routes_t *rt = s_table("routes:\n"
			       "  - name: keep\n"
			       "    to: deadletter\n"
			       "    retry: { backoff: 10m }\n");

	CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
	CU_ASSERT_STRING_EQUAL(routes_get(rt, 0)->to[0], "deadletter");
	CU_ASSERT_EQUAL(routes_get(rt, 0)->retry.backoff_ms, 600000);
	CU_ASSERT_EQUAL(routes_get(rt, 0)->retry.max_backoff_ms, 600000);
	routes_destroy(&rt);
}

/* Errors from routes_load_text name the given file, and problems in one route do not hide
 * those in the next. */
static void test_load_text_reports_every_error(void)
{
	char *got = s_errors("routes:\n"
			     "  - name: a\n"
			     "    to: nobody\n"
			     "  - name: b\n"
			     "    match: { type: \"Child.*\" }\n"
			     "    to: hr\n");

	CU_ASSERT_STRING_EQUAL(got, "test.yaml:3:9: error: unknown instance 'nobody' in 'to'\n"
				    "test.yaml:5:21: error: type pattern 'Child.*': 'C' is not "
				    "allowed in a token (use a-z, 0-9, '_', '-', or a whole '*' or "
				    "'>')\n");
	free(got);
}

/* An alias cycle would make the walk endless: it is an error, not a hang. */
static void test_alias_cycle_is_an_error(void)
{
	char *got = s_errors("routes: &loop\n  - *loop\n");

	CU_ASSERT_PTR_NOT_NULL(strstr(got, "a cycle"));
	free(got);
}

/* ---- patterns ----------------------------------------------------------------------------- */

static void test_type_pattern_helper(void)
{
	CU_ASSERT_TRUE(routes_type_matches("child.absence.reported", "child.absence.reported"));
	CU_ASSERT_FALSE(routes_type_matches("child.absence.reported", "child.absence.report"));
	CU_ASSERT_FALSE(routes_type_matches("child.absence", "child.absence.reported"));
	CU_ASSERT_TRUE(routes_type_matches("child.*", "child.absence"));
	CU_ASSERT_FALSE(routes_type_matches("child.*", "child"));
	CU_ASSERT_FALSE(routes_type_matches("child.*", "child.absence.reported"));
	CU_ASSERT_TRUE(routes_type_matches("*.*.reported", "child.absence.reported"));
	CU_ASSERT_TRUE(routes_type_matches("child.>", "child.absence"));
	CU_ASSERT_TRUE(routes_type_matches("child.>", "child.absence.reported"));
	CU_ASSERT_FALSE(routes_type_matches("child.>", "child"));
	CU_ASSERT_FALSE(routes_type_matches("child.>", "children.absence"));
	CU_ASSERT_TRUE(routes_type_matches(">", "x"));
	CU_ASSERT_TRUE(routes_type_matches("*.>", "a.b.c"));
	CU_ASSERT_FALSE(routes_type_matches("*.>", "a"));
}

static void test_source_glob_helper(void)
{
	CU_ASSERT_TRUE(routes_glob_matches("daycare-*", "daycare-north"));
	CU_ASSERT_TRUE(routes_glob_matches("daycare-*", "daycare-"));
	CU_ASSERT_FALSE(routes_glob_matches("daycare-*", "school-north"));
	CU_ASSERT_TRUE(routes_glob_matches("*-north", "daycare-north"));
	CU_ASSERT_TRUE(routes_glob_matches("daycare-?", "daycare-1"));
	CU_ASSERT_FALSE(routes_glob_matches("daycare-?", "daycare-12"));
	CU_ASSERT_TRUE(routes_glob_matches("a*b*c", "aXXbYYc"));
	CU_ASSERT_TRUE(routes_glob_matches("a*b*c", "abc"));
	CU_ASSERT_FALSE(routes_glob_matches("a*b*c", "acb"));
	CU_ASSERT_TRUE(routes_glob_matches("*", ""));
	CU_ASSERT_FALSE(routes_glob_matches("?", ""));
	CU_ASSERT_TRUE(routes_glob_matches("exact", "exact"));
	CU_ASSERT_FALSE(routes_glob_matches("exact", "exactly"));
}

/* ---- matching ------------------------------------------------------------------------------ */

/* '*' takes exactly one token; '>' one or more, never none. */
static void test_match_star_and_rest(void)
{
	routes_t *rt = s_table("routes:\n"
			       "  - { name: one, match: { type: child.* }, to: hr }\n"
			       "  - { name: rest, match: { type: child.> }, to: hr }\n"
			       "  - { name: middle, match: { type: child.*.reported }, to: hr }\n");

	CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "child"), "");
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "child.absence"), "one,rest");
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "child.absence.reported"), "rest,middle");
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "child.absence.reported.late"), "rest");
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "staff.absence"), "");
	routes_destroy(&rt);
}

/* A literal and the wildcards that overlap it all match, in declaration order whatever
 * trie branch each comes from; routes without a type pattern match every type. */
static void test_match_overlap_in_declaration_order(void)
{
	routes_t *rt = s_table("routes:\n"
			       "  - { name: r0, match: { type: a.> }, to: hr }\n"
			       "  - { name: r1, to: hr }\n"
			       "  - { name: r2, match: { type: a.b.c }, to: hr }\n"
			       "  - { name: r3, match: { type: \"*.b.c\" }, to: hr }\n"
			       "  - { name: r4, match: { type: \">\" }, to: hr }\n"
			       "  - { name: r5, match: { type: a.*.c }, to: hr }\n"
			       "  - { name: r6, match: { type: a.b.d }, to: hr }\n"
			       "  - { name: r7, match: { type: a.b }, to: hr }\n");

	CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "a.b.c"), "r0,r1,r2,r3,r4,r5");
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "a.b"), "r0,r1,r4,r7");
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "a"), "r1,r4");
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "x.b.c"), "r1,r3,r4");
	routes_destroy(&rt);
}

/* The source glob filters after the type. */
static void test_match_source_glob(void)
{
	routes_t *rt = s_table("routes:\n"
			       "  - name: any-daycare\n"
			       "    match: { type: child.absence.reported, source: daycare-* }\n"
			       "    to: hr\n"
			       "  - name: north-only\n"
			       "    match: { source: \"*-north\" }\n"
			       "    to: hr\n");
	kanal_msg_t *north = s_event("child.absence.reported", "daycare-north", NULL);
	kanal_msg_t *school = s_event("child.absence.reported", "school-north", NULL);
	kanal_msg_t *south = s_event("child.absence.reported", "daycare-south", NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
	CU_ASSERT_STRING_EQUAL(s_matches(rt, north), "any-daycare,north-only");
	CU_ASSERT_STRING_EQUAL(s_matches(rt, school), "north-only");
	CU_ASSERT_STRING_EQUAL(s_matches(rt, south), "any-daycare");
	kanal_msg_destroy(&north);
	kanal_msg_destroy(&school);
	kanal_msg_destroy(&south);
	routes_destroy(&rt);
}

/* `where` filters on data: a false comparison or an absent field does not match. */
static void test_match_where_filters(void)
{
	routes_t *rt = s_table("routes:\n"
			       "  - name: short-sick\n"
			       "    match:\n"
			       "      type: child.absence.reported\n"
			       "      where: data.reason == \"sick\" and data.days <= 5\n"
			       "    to: family-calendar\n"
			       "  - name: all-absence\n"
			       "    match: { type: child.absence.reported }\n"
			       "    to: staffing\n");
	kanal_msg_t *m;

	CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
	m = s_event("child.absence.reported", "daycare-north", "{\"reason\":\"sick\",\"days\":3}");
	CU_ASSERT_STRING_EQUAL(s_matches(rt, m), "short-sick,all-absence");
	kanal_msg_destroy(&m);
	m = s_event("child.absence.reported", "daycare-north", "{\"reason\":\"sick\",\"days\":7}");
	CU_ASSERT_STRING_EQUAL(s_matches(rt, m), "all-absence");
	kanal_msg_destroy(&m);
	m = s_event("child.absence.reported", "daycare-north", "{\"reason\":\"holiday\"}");
	CU_ASSERT_STRING_EQUAL(s_matches(rt, m), "all-absence");
	kanal_msg_destroy(&m);
	m = s_event("child.absence.reported", "daycare-north", NULL);
	CU_ASSERT_STRING_EQUAL(s_matches(rt, m), "all-absence");
	kanal_msg_destroy(&m);
	routes_destroy(&rt);
}

/* routes_match counts every match but stores at most cap; more candidates than fit in the
 * on-stack buffer still come out complete and in order. */
static void test_match_cap_and_many_candidates(void)
{
	size_t n = 300, i, size = 64 * n + 16, used;
	char *yaml = malloc(size);
	const route_t *out[10];
	kanal_msg_t *msg;
	routes_t *rt;

	CU_ASSERT_PTR_NOT_NULL_FATAL(yaml);
	used = (size_t)snprintf(yaml, size, "routes:\n");
	for (i = 0; i < n; i++)
		used += (size_t)snprintf(yaml + used, size - used,
					 "  - { name: r%zu, match: { type: \"%s\" }, to: hr }\n", i,
					 i % 3 == 0   ? ">"
					 : i % 3 == 1 ? "x.*"
						      : "x.y");
	rt = s_table(yaml);
	CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
	msg = s_event("x.y", "daycare-north", NULL);
	CU_ASSERT_EQUAL(routes_match(rt, msg, out, 10), n);
	for (i = 0; i < 10; i++)
		CU_ASSERT_EQUAL(out[i]->index, i);
	CU_ASSERT_EQUAL(routes_match(rt, msg, NULL, 0), n);
	kanal_msg_destroy(&msg);
	msg = s_event("z", "daycare-north", NULL);
	CU_ASSERT_EQUAL(routes_match(rt, msg, out, 10), n / 3);
	CU_ASSERT_EQUAL(out[1]->index, 3);
	kanal_msg_destroy(&msg);
	routes_destroy(&rt);
	free(yaml);
}

/* Builds the type pattern of generated route i. */
static void s_gen_pattern(size_t i, char *buf, size_t size)
{
	switch (i % 4) {
	case 0:
		snprintf(buf, size, "svc%zu.created", i);
		break;
	case 1:
		snprintf(buf, size, "svc%zu.*", i);
		break;
	case 2:
		snprintf(buf, size, "svc%zu.>", i);
		break;
	default:
		snprintf(buf, size, "*.svc%zu", i);
		break;
	}
}

/* 10,000 generated routes: each event matches the right route and only it, and the trie
 * agrees with a plain scan of every pattern for many types. */
static void test_match_ten_thousand_routes(void)
{
	size_t n = 10000, size = n * 80 + 16, used, i, j;
	char *yaml = malloc(size), pattern[64], type[64];
	char **patterns = calloc(n, sizeof *patterns);
	const route_t *out[8];
	routes_t *rt;
	size_t disagreements = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(yaml);
	CU_ASSERT_PTR_NOT_NULL_FATAL(patterns);
	used = (size_t)snprintf(yaml, size, "routes:\n");
	for (i = 0; i < n; i++) {
		s_gen_pattern(i, pattern, sizeof pattern);
		patterns[i] = strdup(pattern);
		used += (size_t)snprintf(yaml + used, size - used,
					 "  - { name: r%zu, match: { type: \"%s\" }, to: hr }\n", i,
					 pattern);
	}
	rt = s_table(yaml);
	CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
	CU_ASSERT_EQUAL(routes_count(rt), n);

	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "svc4240.created"), "r4240");
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "svc4240.updated"), "");
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "svc4241.updated"), "r4241");
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "svc4241.a.b"), "");
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "svc4242.a.b.c"), "r4242");
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "svc4242"), "");
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "anything.svc4243"), "r4243");
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "svc9999.created"), "");
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "svc9999.x"), "");
	CU_ASSERT_STRING_EQUAL(s_match_type(rt, "x.svc9999"), "r9999");

	/* Compare with a full scan for types built from the same vocabulary. */
	srand(7);
	for (j = 0; j < 2000; j++) {
		size_t k = (size_t)rand() % n, expected = 0, got, first = (size_t)-1;
		kanal_msg_t *msg;
		switch (rand() % 4) {
		case 0:
			snprintf(type, sizeof type, "svc%zu.created", k);
			break;
		case 1:
			snprintf(type, sizeof type, "svc%zu.x.y", k);
			break;
		case 2:
			snprintf(type, sizeof type, "svc%zu.svc%zu", k, (size_t)rand() % n);
			break;
		default:
			snprintf(type, sizeof type, "svc%zu", k);
			break;
		}
		for (i = 0; i < n; i++) {
			if (routes_type_matches(patterns[i], type)) {
				if (first == (size_t)-1)
					first = i;
				expected++;
			}
		}
		msg = s_event(type, "daycare-north", NULL);
		got = routes_match(rt, msg, out, 8);
		if (got != expected || (got && out[0]->index != first))
			disagreements++;
		kanal_msg_destroy(&msg);
	}
	CU_ASSERT_EQUAL(disagreements, 0);
	for (i = 0; i < n; i++)
		free(patterns[i]);
	free(patterns);
	routes_destroy(&rt);
	free(yaml);
}

/* ---- explain -------------------------------------------------------------------------- */

static char *s_explain(const routes_t *rt, const kanal_msg_t *msg, size_t *matched)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *out = open_memstream(&buf, &size);

	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	*matched = routes_explain(rt, msg, out);
	fclose(out);
	return buf;
}

static void s_expect_line(const char *text, const char *line)
{
	if (!strstr(text, line))
		fprintf(stderr, "\nexplain output lacks: %s\n--- output\n%s---\n", line, text);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, line));
}

/* explain says which routes match and why the others do not, and where the event goes. */
static void test_explain_matching_event(void)
{
	const char *path = GOOD_DIR;
	diag_t d = { 0 };
	routes_t *rt = NULL;
	kanal_msg_t *msg;
	size_t matched;
	char *text;

	CU_ASSERT_EQUAL_FATAL(routes_load(&path, 1, s_instances, N_INSTANCES, &rt, &d), 0);
	msg = s_event("child.absence.reported", "daycare-north",
		      "{\"reason\":\"sick\",\"days\":2}");
	text = s_explain(rt, msg, &matched);
	CU_ASSERT_EQUAL(matched, 2);
	s_expect_line(text, "event     type 'child.absence.reported', source 'daycare-north'");
	s_expect_line(text, "table     4 routes from 2 files, default destination 'deadletter'");
	s_expect_line(text, "match     sick-child-to-calendar  (" GOOD_DIR "/10-daycare.yaml:3)");
	s_expect_line(text, "type      child.absence.* matches 'child.absence.reported'");
	s_expect_line(text, "source    daycare-* matches 'daycare-north'");
	s_expect_line(text, "where     data.reason == \"sick\" and data.days <= 5  (true)");
	s_expect_line(text, "to        family-calendar, staffing\n");
	s_expect_line(text,
		      "enrich    cpr into data.guardian (timeout 3s; on error: skip the step)");
	s_expect_line(text, "fallback  letter (when every destination in 'to' rejects)");
	s_expect_line(text, "retry     up to 10 attempts, backoff 2s growing to at most 10m");
	s_expect_line(text, "no match  long-sick-child-to-letter  (");
	s_expect_line(text, "where     data.days > 5  (false)\n"
			    "                      data.days > 5 is false: data.days is 2\n");
	s_expect_line(text,
		      "no match  staff-absence  (" GOOD_DIR "/20-staff.yml:3)\n"
		      "            type      staff.> does not match 'child.absence.reported'");
	s_expect_line(text, "match     audit-everything");
	s_expect_line(text, "(no 'match': every event)");
	s_expect_line(text, "2 routes match: the event goes to family-calendar, staffing, hr\n");
	free(text);
	kanal_msg_destroy(&msg);
	routes_destroy(&rt);
	diag_free(&d);
}

/* With nothing matching, explain names the default destination. CPR numbers written in a
 * routing file are masked in the output. */
static void test_explain_no_match_and_masking(void)
{
	routes_t *rt = s_table("routes:\n"
			       "  - name: one-person\n"
			       "    match:\n"
			       "      type: person.changed\n"
			       "      where: data.cpr == \"150385-1233\"\n"
			       "    to: hr\n"
			       "default: letter\n");
	const char digits[] = { '1', '2', '3', '3', '\0' };
	kanal_msg_t *msg;
	size_t matched;
	char *text;

	CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
	msg = s_event("person.changed", "cpr", "{\"cpr\":\"010118-4129\"}");
	text = s_explain(rt, msg, &matched);
	CU_ASSERT_EQUAL(matched, 0);
	s_expect_line(text, "no match  one-person");
	s_expect_line(text, "150385-XXXX");
	CU_ASSERT_PTR_NULL(strstr(text, digits));
	s_expect_line(text, "no route matches: the event goes to the default destination 'letter'");
	free(text);
	kanal_msg_destroy(&msg);
	routes_destroy(&rt);
}

/* A label's value is its field's text, else its default (never a guess such as "digital"),
 * else "none"; a target is read with its label, digital values and share. */
static void test_measure_label_defaults_and_target(void)
{
	routes_t *rt =
		s_table("routes:\n"
			"  - name: all\n    to: letter\n"
			"measures:\n"
			"  - name: letters\n"
			"    match: { type: post.letter.status }\n"
			"    labels:\n"
			"      department: data.sender.department\n"
			"      channel: { from: data.channel, default: unknown }\n"
			"    target: { label: channel, digital: [digital, nemsms], share: 0.8 }\n");
	const route_measure_t *m;
	kanal_msg_t *with, *without;

	CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
	m = routes_measure_get(rt, 0);
	CU_ASSERT_EQUAL_FATAL(m->n_labels, 2);
	CU_ASSERT_STRING_EQUAL(m->label_fields[1], "channel");
	with = s_event("post.letter.status", "x",
		       "{\"channel\":\"physical\",\"sender\":{\"department\":\"skole\"}}");
	without = s_event("post.letter.status", "x", "{\"channel\":\"\"}");
	CU_ASSERT_STRING_EQUAL(routes_measure_label(m, 0, with), "skole");
	CU_ASSERT_STRING_EQUAL(routes_measure_label(m, 1, with), "physical");
	CU_ASSERT_STRING_EQUAL(routes_measure_label(m, 0, without), "none");
	CU_ASSERT_STRING_EQUAL(routes_measure_label(m, 1, without), "unknown");
	CU_ASSERT_STRING_EQUAL(m->target_label, "channel");
	CU_ASSERT_EQUAL_FATAL(m->n_target_values, 2);
	CU_ASSERT_STRING_EQUAL(m->target_values[1], "nemsms");
	CU_ASSERT_DOUBLE_EQUAL(m->target_share, 0.8, 1e-9);
	kanal_msg_destroy(&with);
	kanal_msg_destroy(&without);
	routes_destroy(&rt);
}

/* A measure is read with its match and labels, and counts only the events it matches. */
static void test_measure_loads_and_matches(void)
{
	routes_t *rt =
		s_table("routes:\n"
			"  - name: all\n    to: letter\n"
			"measures:\n"
			"  - name: sent-by-channel\n"
			"    title: Sent\n"
			"    match: { type: post.*.status, where: data.status == \"sent\" }\n"
			"    labels: { channel: data.channel, unit: data.sender.unit }\n"
			"  - name: everything\n    match:\n");
	const route_measure_t *m;
	kanal_msg_t *sent, *failed, *other;

	CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
	CU_ASSERT_EQUAL(routes_measure_count(rt), 2);
	m = routes_measure_get(rt, 0);
	CU_ASSERT_STRING_EQUAL(m->name, "sent-by-channel");
	CU_ASSERT_STRING_EQUAL(m->title, "Sent");
	CU_ASSERT_EQUAL(m->n_labels, 2);
	CU_ASSERT_STRING_EQUAL(m->label_names[1], "unit");
	CU_ASSERT_STRING_EQUAL(m->label_fields[1], "sender.unit");
	CU_ASSERT_PTR_NULL(routes_measure_get(rt, 2));
	sent = s_event("post.letter.status", "x", "{\"status\":\"sent\"}");
	failed = s_event("post.letter.status", "x", "{\"status\":\"failed\"}");
	other = s_event("post.letter.send", "x", "{\"status\":\"sent\"}");
	CU_ASSERT_TRUE(routes_measure_matches(m, sent));
	CU_ASSERT_FALSE(routes_measure_matches(m, failed));
	CU_ASSERT_FALSE(routes_measure_matches(m, other));
	CU_ASSERT_TRUE(routes_measure_matches(routes_measure_get(rt, 1), other));
	kanal_msg_destroy(&sent);
	kanal_msg_destroy(&failed);
	kanal_msg_destroy(&other);
	routes_destroy(&rt);
}

/* `area:` with `channels: {primary, secondary}` compiles to the route's `to` and `fallback`
 * (a destination of its own transform included), and explain shows the area's channels. */
static void test_channels_compile_to_destination_and_fallback(void)
{
	routes_t *rt = s_table("routes:\n"
			       "  - name: place-letters\n"
			       "    area: daycare-places\n"
			       "    match: { type: post.letter.send }\n"
			       "    channels:\n"
			       "      primary: calendar\n"
			       "      secondary: [letter, {instance: hr, transform: '{x: 1}'}]\n"
			       "  - name: plain\n"
			       "    match: { type: post.letter.send }\n"
			       "    to: staffing\n");
	const route_t *r;
	kanal_msg_t *msg;
	size_t matched;
	char *text;

	CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
	r = routes_get(rt, 0);
	CU_ASSERT_STRING_EQUAL(r->area, "daycare-places");
	CU_ASSERT_TRUE(r->channels);
	CU_ASSERT_EQUAL_FATAL(r->n_to, 1);
	CU_ASSERT_STRING_EQUAL(r->to[0], "calendar");
	CU_ASSERT_EQUAL_FATAL(r->n_fallback, 2);
	CU_ASSERT_STRING_EQUAL(r->fallback[0], "letter");
	CU_ASSERT_STRING_EQUAL(r->fallback[1], "hr");
	CU_ASSERT_PTR_NOT_NULL(routes_transform(r, true, 1));
	CU_ASSERT_PTR_NULL(routes_get(rt, 1)->area);
	msg = s_event("post.letter.send", "sagssystem", "{}");
	text = s_explain(rt, msg, &matched);
	CU_ASSERT_EQUAL(matched, 2);
	s_expect_line(text, "area      daycare-places: primary channel calendar, secondary "
			    "letter, hr (deliveries carry kanalarea and kanalchannelrank)\n");
	s_expect_line(text, "fallback  letter, hr (when every destination in 'to' rejects)");
	free(text);
	kanal_msg_destroy(&msg);
	routes_destroy(&rt);
}

/* routes_load_texts: several files held in memory load as one table, in the order given
 * (duplicate names across them are caught), and each error names its own file: what a
 * table pushed to a cluster reports (docs/design/cluster.md). */
static void test_load_texts_as_files(void)
{
	const char *one = "routes:\n  - name: a\n    match: { type: 'x.>' }\n    to: [letter]\n";
	const char *two = "routes:\n  - name: b\n    match: { type: 'y.>' }\n    to: [hr]\n"
			  "default: calendar\n";
	const char *bad = "routes:\n  - name: a\n    match: { type: 'z.>' }\n    to: [nowhere]\n";
	routes_text_t files[] = { { "routes/one.yaml", one, strlen(one) },
				  { "routes/two.yaml", two, strlen(two) } };
	routes_text_t broken[] = { { "routes/one.yaml", one, strlen(one) },
				   { "routes/bad.yaml", bad, strlen(bad) } };
	routes_t *rt = NULL;
	diag_t d = { 0 };
	char *text;

	CU_ASSERT_EQUAL(routes_load_texts(files, 2, s_instances, N_INSTANCES, &rt, &d), 0);
	CU_ASSERT_EQUAL(routes_count(rt), 2);
	CU_ASSERT_EQUAL(routes_file_count(rt), 2);
	CU_ASSERT_STRING_EQUAL(routes_file(rt, 1), "routes/two.yaml");
	CU_ASSERT_PTR_NULL(routes_file(rt, 2));
	CU_ASSERT_STRING_EQUAL(routes_get(rt, 0)->name, "a");
	CU_ASSERT_STRING_EQUAL(routes_default(rt), "calendar");
	routes_destroy(&rt);

	CU_ASSERT_EQUAL(routes_load_texts(broken, 2, s_instances, N_INSTANCES, &rt, &d),
			KANAL_ECONFIG);
	CU_ASSERT_PTR_NULL(rt);
	text = diag_join(&d);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "routes/bad.yaml:4:"));
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "nowhere"));
	/* The second file's route repeats the first's name. */
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "routes/bad.yaml:2:"));
	free(text);
	diag_free(&d);

	CU_ASSERT_EQUAL(routes_load_texts(NULL, 0, s_instances, N_INSTANCES, &rt, &d),
			KANAL_ECONFIG);
	diag_free(&d);
}

TEST_MAIN("routes", TEST(test_load_texts_as_files), TEST(test_bad_tables_match_expected_errors),
	  TEST(test_good_table_loads_with_defaults), TEST(test_folder_files_read_in_name_order),
	  TEST(test_empty_folder_and_missing_path_are_errors),
	  TEST(test_deadletter_known_and_backoff_ceiling_follows),
	  TEST(test_load_text_reports_every_error), TEST(test_alias_cycle_is_an_error),
	  TEST(test_type_pattern_helper), TEST(test_source_glob_helper),
	  TEST(test_match_star_and_rest), TEST(test_match_overlap_in_declaration_order),
	  TEST(test_match_source_glob), TEST(test_match_where_filters),
	  TEST(test_match_cap_and_many_candidates), TEST(test_match_ten_thousand_routes),
	  TEST(test_explain_matching_event), TEST(test_explain_no_match_and_masking),
	  TEST(test_measure_loads_and_matches), TEST(test_measure_label_defaults_and_target),
	  TEST(test_channels_compile_to_destination_and_fallback))
