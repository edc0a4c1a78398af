/*
 * tests/util/webdriver.h — a real browser for the dashboard's tests: headless Chromium
 * driven through chromedriver's W3C WebDriver HTTP API, spoken with tests/util/http_client.h
 * and jansson.
 *
 * wd_start runs chromedriver on an ephemeral port of 127.0.0.1 (in a process group of its
 * own, so that the browser it starts goes with it) and opens a session with a fresh
 * profile folder; wd_quit ends the session, kills what is left of the group and removes
 * the folder — also after a failed assertion, and from an atexit handler should the test
 * program exit without calling it. Every call is bounded in time.
 *
 * Needs the Debian packages `chromium` and `chromium-driver` (scripts/deps.sh).
 * KANAL_CHROMEDRIVER and KANAL_CHROMIUM override the programs' paths.
 */
#ifndef KANAL_TEST_WEBDRIVER_H
#define KANAL_TEST_WEBDRIVER_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

typedef struct wd wd_t;

/* Starts chromedriver and a headless Chromium session. NULL with why filled when either
 * cannot be had (programs missing, no session within 30 s). */
wd_t *wd_start(char *why, size_t why_size);
/* Ends the session, kills chromedriver and the browser, removes the profile. Accepts NULL. */
void wd_quit(wd_t **wd_p);

/* The last WebDriver error ("no such element: …"), for messages. */
const char *wd_error(const wd_t *wd);

/* Loads url and waits for the page's load event. 0 or -1. */
int wd_navigate(wd_t *wd, const char *url);
/* The first element matching the CSS selector: its WebDriver id (malloc'd), or NULL. */
char *wd_find(wd_t *wd, const char *css);
/* Every element matching css, below `from` (an element id) or in the whole page (NULL).
 * Returns the count (ids in *ids, a malloc'd array of malloc'd strings), or -1. */
int wd_find_all(wd_t *wd, const char *from, const char *css, char ***ids);
void wd_free_ids(char **ids, int n);
/* The element's rendered text (malloc'd), or NULL. */
char *wd_text(wd_t *wd, const char *element);
/* Clicks the element. 0 or -1. */
int wd_click(wd_t *wd, const char *element);
/* Types text into the element (an input). 0 or -1. */
int wd_type(wd_t *wd, const char *element, const char *text);
/* Runs a script in the page (`return …;`) and returns its value (new reference), or NULL. */
json_t *wd_script(wd_t *wd, const char *js);

/* Text of the first element matching css (malloc'd), NULL when there is none. */
char *wd_text_of(wd_t *wd, const char *css);
/* Polls every 100 ms, up to timeout_ms, until the first element matching css has a text
 * containing needle (any text when needle is NULL). Returns that text (malloc'd) or NULL. */
char *wd_wait_text(wd_t *wd, const char *css, const char *needle, int timeout_ms);
/* Polls until exactly n elements match css. Returns true when reached. */
bool wd_wait_count(wd_t *wd, const char *css, int n, int timeout_ms);

/* The cells' texts of each row matching row_css, as a JSON array of arrays of strings
 * (new reference; rows may be empty). */
json_t *wd_table(wd_t *wd, const char *row_css);

#endif
