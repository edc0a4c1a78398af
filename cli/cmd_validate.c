/*
 * cli/cmd_validate.c — `kanalctl validate`: is this file a CloudEvent kanal accepts?
 *
 * Each file is parsed exactly as the gateway parses what a vendor sends (kanal_msg_parse
 * for one event, kanal_batch_parse for a JSON array), so a vendor can test an event before
 * sending it. The verdict names the attribute at fault; reasons come from kanal_error_set,
 * which masks CPR numbers, and are masked again on output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kanalctl.h"
#include "msg_int.h"

/* Prints the verdict for one file. Returns its exit status. */
static int s_validate_file(const char *path, size_t max_single)
{
	size_t max_batch = (max_single ? max_single : KANAL_MSG_DEFAULT_MAX_BYTES) * 64;
	const char *name = ctl_input_name(path);
	kanal_batch_t *batch = NULL;
	kanal_msg_t *msg = NULL;
	kanal_error_t err;
	char *text = NULL;
	size_t len, i;
	int rc;

	if (ctl_read_input(path, max_batch + 1, &text, &len) < 0)
		return CTL_EXIT_ERROR;
	kanal_error_clear(&err);
	if (kanal_json_is_batch(text, len))
		rc = kanal_batch_parse(text, len, max_batch, &batch, &err);
	else
		rc = kanal_msg_parse(text, len, max_single, &msg, &err);
	free(text);
	if (rc < 0) {
		ctl_printf(stdout, "%s: invalid: %s\n", name,
			   err.text[0] ? err.text : kanal_strerror(rc));
		return CTL_EXIT_NO;
	}
	if (msg) {
		char attr[64];
		if (kanal__msg_context_cpr(msg, attr, sizeof attr)) {
			/* The gateway refuses these; say so here rather than call it valid. */
			ctl_printf(stdout,
				   "%s: invalid: attribute '%s' holds a CPR number (put the "
				   "person in data, or a pseudonym in subject)\n",
				   name, attr);
			kanal_msg_destroy(&msg);
			return CTL_EXIT_NO;
		}
		ctl_printf(stdout, "%s: valid (id %s, type %s)\n", name, kanal_msg_id(msg),
			   kanal_msg_type(msg));
		kanal_msg_destroy(&msg);
		return CTL_EXIT_OK;
	}
	if (batch->count == 0)
		ctl_printf(stdout, "%s: valid (empty batch)\n", name);
	for (i = 0; i < batch->count; i++) {
		char attr[64];
		if (kanal__msg_context_cpr(batch->msgs[i], attr, sizeof attr)) {
			ctl_printf(stdout, "%s[%zu]: invalid: attribute '%s' holds a CPR number\n",
				   name, i, attr);
			rc = CTL_EXIT_NO;
			continue;
		}
		ctl_printf(stdout, "%s[%zu]: valid (id %s, type %s)\n", name, i,
			   kanal_msg_id(batch->msgs[i]), kanal_msg_type(batch->msgs[i]));
	}
	kanal_batch_destroy(&batch);
	return rc == CTL_EXIT_NO ? CTL_EXIT_NO : CTL_EXIT_OK;
}

int cmd_validate(ctl_t *ctl, int argc, char **argv)
{
	const char *env = getenv("KANAL_CONF");
	size_t max_single = 0;
	int i, status = CTL_EXIT_OK;

	if (argc < 1) {
		ctl_error("validate: which files? usage: kanalctl validate EVENT.json...");
		return CTL_EXIT_ERROR;
	}
	/* The size limit is the broker's only when the operator names the broker's config;
	 * validating a vendor's sample should not need one. */
	if (ctl->conf_flag || (env && *env)) {
		conf_t *conf = ctl_conf_load(ctl);
		if (!conf)
			return CTL_EXIT_ERROR;
		if (conf->max_event_bytes > 0)
			max_single = (size_t)conf->max_event_bytes;
		conf_destroy(&conf);
	}
	for (i = 0; i < argc; i++) {
		int file_status = s_validate_file(argv[i], max_single);
		if (file_status > status)
			status = file_status;
		fflush(stdout);
	}
	return status;
}
