/*
 * tests/unit/test_blob.c — the blob store (sdk/blob.c): put and get round-trip under a
 * sha256 name, the same content is one blob, files are private (0600 in a 0700 folder),
 * size limits refuse what is too big, a damaged blob is never handed on, URIs are checked,
 * and the sweep removes only old blobs that nothing references.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include <kanal/kanal.h>
#include "blob_store.h"

/* A fresh store in a sub-folder (blobs) of a new temporary folder, as kanald makes it in
 * its state_dir; the temporary folder is removed by s_done. */
static kanal__blob_store_t *s_store(const char *tag, int64_t max_blob, int64_t max_store,
				    char *path, size_t size)
{
	char *tmp = test_tmpdir(tag);

	if (!tmp)
		return NULL;
	snprintf(path, size, "%s/blobs", tmp);
	free(tmp);
	return kanal__blob_store_open_dir(path, max_blob, max_store, NULL);
}

static void s_done(kanal__blob_store_t **st_p, const char *dir)
{
	char parent[256];
	char *slash;

	kanal__blob_store_destroy(st_p);
	snprintf(parent, sizeof parent, "%s", dir);
	slash = strrchr(parent, '/');
	if (slash && slash != parent) {
		*slash = '\0';
		test_rmdir_r(parent);
	}
}

static void test_put_get_round_trip_under_sha256_name(void)
{
	char dir[256] = "", file[512];
	kanal__blob_store_t *st = s_store("rt", 0, 0, dir, sizeof dir);
	kanal_blob_ref_t ref;
	void *data = NULL;
	size_t size = 0;

	REQUIRE(st != NULL);
	CU_ASSERT_EQUAL(kanal__blob_put(st, "hello photo", 11, "image/jpeg", &ref, NULL), 0);
	/* The name is the content's SHA-256 (echo -n 'hello photo' | sha256sum). */
	CU_ASSERT_EQUAL(strncmp(ref.uri, "kanalblob:sha256:", 17), 0);
	CU_ASSERT_EQUAL(strlen(ref.uri), 17 + 64);
	CU_ASSERT_STRING_EQUAL(ref.media_type, "image/jpeg");
	CU_ASSERT_EQUAL(ref.size, 11);
	snprintf(file, sizeof file, "%s/sha256/%s", dir, ref.uri + 17);
	CU_ASSERT_EQUAL(access(file, R_OK), 0);

	CU_ASSERT_EQUAL(kanal__blob_get(st, ref.uri, &data, &size, NULL), 0);
	CU_ASSERT_EQUAL(size, 11);
	CU_ASSERT_STRING_EQUAL(data, "hello photo");
	kanal_blob_free(&data);
	CU_ASSERT_PTR_NULL(data);
done:
	s_done(&st, dir);
	CU_ASSERT_PTR_NULL(st);
}

static void test_digest_is_sha256_of_the_content(void)
{
	char dir[256] = "";
	kanal__blob_store_t *st = s_store("sha", 0, 0, dir, sizeof dir);
	kanal_blob_ref_t ref;

	REQUIRE(st != NULL);
	/* sha256("abc"), FIPS 180-2 appendix B.1 */
	CU_ASSERT_EQUAL(kanal__blob_put(st, "abc", 3, NULL, &ref, NULL), 0);
	CU_ASSERT_STRING_EQUAL(ref.uri,
			       "kanalblob:sha256:"
			       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	CU_ASSERT_STRING_EQUAL(ref.media_type, "application/octet-stream");
done:
	s_done(&st, dir);
}

static void test_same_content_is_one_blob(void)
{
	char dir[256] = "";
	kanal__blob_store_t *st = s_store("dedup", 0, 0, dir, sizeof dir);
	kanal_blob_ref_t a, b;
	int64_t count, bytes;

	REQUIRE(st != NULL);
	CU_ASSERT_EQUAL(kanal__blob_put(st, "photo", 5, "image/png", &a, NULL), 0);
	CU_ASSERT_EQUAL(kanal__blob_put(st, "photo", 5, "image/png", &b, NULL), 0);
	CU_ASSERT_STRING_EQUAL(a.uri, b.uri);
	kanal__blob_usage(st, &count, &bytes);
	CU_ASSERT_EQUAL(count, 1);
	CU_ASSERT_EQUAL(bytes, 5);
	kanal__blob_store_destroy(&st);
	/* Reopened, the store counts what is on disk. */
	st = kanal__blob_store_open_dir(dir, 0, 0, NULL);
	REQUIRE(st != NULL);
	kanal__blob_usage(st, &count, &bytes);
	CU_ASSERT_EQUAL(count, 1);
	CU_ASSERT_EQUAL(bytes, 5);
done:
	s_done(&st, dir);
}

static void test_files_are_private(void)
{
	char dir[256] = "", file[512];
	kanal__blob_store_t *st = s_store("mode", 0, 0, dir, sizeof dir);
	kanal_blob_ref_t ref;
	struct stat sb;

	REQUIRE(st != NULL);
	CU_ASSERT_EQUAL(kanal__blob_put(st, "secret letter", 13, "application/pdf", &ref, NULL), 0);
	snprintf(file, sizeof file, "%s/sha256/%s", dir, ref.uri + 17);
	REQUIRE(stat(file, &sb) == 0);
	CU_ASSERT_EQUAL(sb.st_mode & 0777, 0600);
	REQUIRE(stat(dir, &sb) == 0);
	CU_ASSERT_EQUAL(sb.st_mode & 0777, 0700);
	snprintf(file, sizeof file, "%s/sha256", dir);
	REQUIRE(stat(file, &sb) == 0);
	CU_ASSERT_EQUAL(sb.st_mode & 0777, 0700);
done:
	s_done(&st, dir);
}

static void test_limits_refuse_what_is_too_big(void)
{
	char dir[256] = "", big[100];
	kanal__blob_store_t *st = s_store("limits", 64, 150, dir, sizeof dir);
	kanal_blob_ref_t ref;
	kanal_error_t err;
	int64_t count, bytes;

	REQUIRE(st != NULL);
	memset(big, 'x', sizeof big);
	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(kanal__blob_put(st, big, 65, "image/jpeg", &ref, &err), KANAL_ETOOBIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "max_blob_bytes"));
	CU_ASSERT_EQUAL(kanal__blob_put(st, big, 64, "image/jpeg", &ref, NULL), 0);
	big[0] = 'y';
	CU_ASSERT_EQUAL(kanal__blob_put(st, big, 64, "image/jpeg", &ref, NULL), 0);
	/* 128 bytes held: 64 more would pass the store's 150. */
	big[0] = 'z';
	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(kanal__blob_put(st, big, 64, "image/jpeg", &ref, &err), KANAL_ETOOBIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "blob_store_bytes"));
	kanal__blob_usage(st, &count, &bytes);
	CU_ASSERT_EQUAL(count, 2);
	CU_ASSERT_EQUAL(bytes, 128);
	/* A removed blob makes room again. */
	big[0] = 'y';
	CU_ASSERT_EQUAL(kanal__blob_put(st, big, 64, "image/jpeg", &ref, NULL), 0);
	CU_ASSERT_EQUAL(kanal__blob_remove(st, ref.uri), 0);
	CU_ASSERT_EQUAL(kanal__blob_remove(st, ref.uri), KANAL_ENOTFOUND);
	big[0] = 'z';
	CU_ASSERT_EQUAL(kanal__blob_put(st, big, 64, "image/jpeg", &ref, NULL), 0);
done:
	s_done(&st, dir);
}

static void test_damaged_blob_is_refused(void)
{
	char dir[256] = "", file[512];
	kanal__blob_store_t *st = s_store("damaged", 0, 0, dir, sizeof dir);
	kanal_blob_ref_t ref;
	void *data = NULL;
	size_t size = 0;
	int fd;

	REQUIRE(st != NULL);
	CU_ASSERT_EQUAL(kanal__blob_put(st, "the real photo", 14, "image/jpeg", &ref, NULL), 0);
	snprintf(file, sizeof file, "%s/sha256/%s", dir, ref.uri + 17);
	fd = open(file, O_WRONLY);
	REQUIRE(fd >= 0);
	CU_ASSERT_EQUAL(write(fd, "THE", 3), 3);
	close(fd);
	CU_ASSERT_EQUAL(kanal__blob_get(st, ref.uri, &data, &size, NULL), KANAL_EIO);
	CU_ASSERT_PTR_NULL(data);
done:
	s_done(&st, dir);
}

static void test_uris_and_media_types_are_checked(void)
{
	char dir[256] = "";
	kanal__blob_store_t *st = s_store("uris", 0, 0, dir, sizeof dir);
	kanal_blob_ref_t ref;
	void *data = NULL;
	size_t size;
	int fd = 7;

	REQUIRE(st != NULL);
	CU_ASSERT_EQUAL(kanal__blob_get(st, "kanalblob:sha256:abc", &data, &size, NULL),
			KANAL_EINVAL);
	CU_ASSERT_EQUAL(kanal__blob_get(st, "file:///etc/passwd", &data, &size, NULL),
			KANAL_EINVAL);
	CU_ASSERT_EQUAL(
		kanal__blob_open(st, "kanalblob:sha256:../../../../etc/passwd", &fd, NULL, NULL),
		KANAL_EINVAL);
	CU_ASSERT_EQUAL(
		kanal__blob_get(st,
				"kanalblob:sha256:"
				"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
				&data, &size, NULL),
		KANAL_ENOTFOUND);
	CU_ASSERT_EQUAL(kanal__blob_put(st, "x", 1, "jpeg", &ref, NULL), KANAL_EINVAL);
	CU_ASSERT_EQUAL(kanal__blob_put(st, "x", 1, "image/jpeg\r\nX-Evil: 1", &ref, NULL),
			KANAL_EINVAL);
	CU_ASSERT_EQUAL(kanal__blob_put(st, "x", 1, "text/plain; charset=utf-8", &ref, NULL), 0);
done:
	s_done(&st, dir);
}

static void s_collect(void *arg, const char *uri)
{
	(*(int *)arg)++;
	(void)uri;
}

static void test_attribute_lists_uris(void)
{
	int n = 0;

	CU_ASSERT_EQUAL(kanal__blob_each_uri("", s_collect, &n), 0);
	CU_ASSERT_EQUAL(kanal__blob_each_uri(NULL, s_collect, &n), 0);
	CU_ASSERT_EQUAL(kanal__blob_each_uri(
				"kanalblob:sha256:"
				"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
				"  junk "
				"kanalblob:sha256:"
				"1111111111111111111111111111111111111111111111111111111111111111",
				s_collect, &n),
			2);
	CU_ASSERT_EQUAL(n, 2);
}

static bool s_keep_abc(void *arg, const char *uri)
{
	return strstr(uri, "ba7816bf") != NULL;
}

static void test_sweep_removes_old_unreferenced_blobs_only(void)
{
	char dir[256] = "";
	kanal__blob_store_t *st = s_store("sweep", 0, 0, dir, sizeof dir);
	kanal_blob_ref_t abc, other;
	void *data = NULL;
	size_t size;

	REQUIRE(st != NULL);
	CU_ASSERT_EQUAL(kanal__blob_put(st, "abc", 3, NULL, &abc, NULL), 0);
	CU_ASSERT_EQUAL(kanal__blob_put(st, "orphan", 6, NULL, &other, NULL), 0);
	/* Within the grace period nothing goes: the event naming it may not be accepted yet. */
	CU_ASSERT_EQUAL(kanal__blob_sweep(st, 3600 * 1000, s_keep_abc, NULL), 0);
	CU_ASSERT_EQUAL(kanal__blob_sweep(st, 0, s_keep_abc, NULL), 1);
	CU_ASSERT_EQUAL(kanal__blob_get(st, abc.uri, &data, &size, NULL), 0);
	kanal_blob_free(&data);
	CU_ASSERT_EQUAL(kanal__blob_get(st, other.uri, &data, &size, NULL), KANAL_ENOTFOUND);
done:
	s_done(&st, dir);
}

static void test_open_streams_the_content(void)
{
	char dir[256] = "", buf[32] = "";
	kanal__blob_store_t *st = s_store("open", 0, 0, dir, sizeof dir);
	kanal_blob_ref_t ref;
	uint64_t size = 0;
	int fd = -1;

	REQUIRE(st != NULL);
	CU_ASSERT_EQUAL(kanal__blob_put(st, "%PDF-1.7 letter", 15, "application/pdf", &ref, NULL),
			0);
	CU_ASSERT_EQUAL(kanal__blob_open(st, ref.uri, &fd, &size, NULL), 0);
	REQUIRE(fd >= 0);
	CU_ASSERT_EQUAL(size, 15);
	/* Removed meanwhile, the open descriptor still reads the blob. */
	CU_ASSERT_EQUAL(kanal__blob_remove(st, ref.uri), 0);
	CU_ASSERT_EQUAL(read(fd, buf, sizeof buf - 1), 15);
	CU_ASSERT_STRING_EQUAL(buf, "%PDF-1.7 letter");
	close(fd);
done:
	s_done(&st, dir);
}

static void test_public_api_without_store_says_so(void)
{
	kanal_blob_ref_t ref;
	kanal_error_t err;

	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(kanal_blob_put(NULL, "x", 1, "image/jpeg", &ref, &err), KANAL_EINVAL);
	CU_ASSERT_EQUAL(kanal__blob_put(NULL, "x", 1, "image/jpeg", &ref, NULL), KANAL_ENOSERVICE);
}

/* Files in <dir>/<sub> (sha256 or tmp). */
static int s_files_in(const char *dir, const char *sub)
{
	char path[512];

	snprintf(path, sizeof path, "%s/%s", dir, sub);
	return test_dir_count(path);
}

/* A blob written piece by piece is the blob kanal_blob_put makes of the same bytes; one
 * that passes max_blob_bytes or the store's limit part-way is refused then, and neither it
 * nor a destroyed writer leaves anything behind. */
static void test_writer_streams_a_blob_and_enforces_the_limits(void)
{
	char dir[256] = "", big[100];
	kanal__blob_store_t *st = s_store("writer", 64, 150, dir, sizeof dir);
	kanal_blob_writer_t *w = NULL;
	kanal_blob_ref_t ref, want;
	kanal_error_t err;
	void *data = NULL;
	size_t size = 0;

	REQUIRE(st != NULL);
	memset(big, 'x', sizeof big);
	REQUIRE(kanal__blob_writer_new(st, "application/pdf", &w, NULL) == 0);
	for (int i = 0; i < 4; i++)
		CU_ASSERT_EQUAL(kanal_blob_writer_write(w, big + 16 * i, 16, NULL), 0);
	/* Nothing is in the store before finish. */
	CU_ASSERT_EQUAL(s_files_in(dir, "sha256"), 0);
	CU_ASSERT_EQUAL(kanal_blob_writer_finish(&w, &ref, NULL), 0);
	CU_ASSERT_PTR_NULL(w);
	CU_ASSERT_EQUAL(ref.size, 64);
	CU_ASSERT_STRING_EQUAL(ref.media_type, "application/pdf");
	CU_ASSERT_EQUAL(kanal__blob_put(st, big, 64, "application/pdf", &want, NULL), 0);
	CU_ASSERT_STRING_EQUAL(ref.uri, want.uri);
	CU_ASSERT_EQUAL(kanal__blob_get(st, ref.uri, &data, &size, NULL), 0);
	CU_ASSERT_EQUAL(size, 64);
	kanal_blob_free(&data);
	CU_ASSERT_EQUAL(s_files_in(dir, "sha256"), 1);

	/* Past max_blob_bytes (64) part-way: refused, and nothing half-written stays. */
	REQUIRE(kanal__blob_writer_new(st, "image/jpeg", &w, NULL) == 0);
	big[0] = 'y';
	CU_ASSERT_EQUAL(kanal_blob_writer_write(w, big, 60, NULL), 0);
	CU_ASSERT_EQUAL(s_files_in(dir, "tmp"), 1);
	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(kanal_blob_writer_write(w, big, 5, &err), KANAL_ETOOBIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "max_blob_bytes"));
	CU_ASSERT_EQUAL(kanal_blob_writer_write(w, big, 1, NULL), KANAL_EINVAL);
	CU_ASSERT_EQUAL(kanal_blob_writer_finish(&w, &ref, NULL), KANAL_EINVAL);
	CU_ASSERT_PTR_NULL(w);
	CU_ASSERT_EQUAL(s_files_in(dir, "tmp"), 0);
	CU_ASSERT_EQUAL(s_files_in(dir, "sha256"), 1);

	/* The store's 150 bytes: 64 held, 64 more fit, then the next write passes. */
	big[0] = 'z';
	REQUIRE(kanal__blob_put(st, big, 64, "image/jpeg", &ref, NULL) == 0);
	REQUIRE(kanal__blob_writer_new(st, "image/jpeg", &w, NULL) == 0);
	big[0] = 'w';
	CU_ASSERT_EQUAL(kanal_blob_writer_write(w, big, 20, NULL), 0);
	kanal_error_clear(&err);
	CU_ASSERT_EQUAL(kanal_blob_writer_write(w, big, 20, &err), KANAL_ETOOBIG);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.text, "blob_store_bytes"));
	kanal_blob_writer_destroy(&w);
	CU_ASSERT_PTR_NULL(w);
	CU_ASSERT_EQUAL(s_files_in(dir, "tmp"), 0);
	CU_ASSERT_EQUAL(s_files_in(dir, "sha256"), 2);

	/* Destroyed unfinished: gone. */
	REQUIRE(kanal__blob_writer_new(st, NULL, &w, NULL) == 0);
	CU_ASSERT_EQUAL(kanal_blob_writer_write(w, "abc", 3, NULL), 0);
	kanal_blob_writer_destroy(&w);
	kanal_blob_writer_destroy(&w);
	CU_ASSERT_EQUAL(s_files_in(dir, "tmp"), 0);
	CU_ASSERT_EQUAL(s_files_in(dir, "sha256"), 2);
	CU_ASSERT_EQUAL(kanal__blob_writer_new(st, "no media type", &w, NULL), KANAL_EINVAL);
	CU_ASSERT_EQUAL(kanal__blob_writer_new(NULL, NULL, &w, NULL), KANAL_ENOSERVICE);
done:
	kanal_blob_writer_destroy(&w);
	s_done(&st, dir);
}

TEST_MAIN("blob", TEST(test_put_get_round_trip_under_sha256_name),
	  TEST(test_digest_is_sha256_of_the_content), TEST(test_same_content_is_one_blob),
	  TEST(test_files_are_private), TEST(test_limits_refuse_what_is_too_big),
	  TEST(test_damaged_blob_is_refused), TEST(test_uris_and_media_types_are_checked),
	  TEST(test_attribute_lists_uris), TEST(test_sweep_removes_old_unreferenced_blobs_only),
	  TEST(test_open_streams_the_content), TEST(test_public_api_without_store_says_so),
	  TEST(test_writer_streams_a_blob_and_enforces_the_limits));
