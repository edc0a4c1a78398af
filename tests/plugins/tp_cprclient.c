/*
 * tests/plugins/tp_cprclient.c — a client of the cpr service for its integration test
 * (tests/integration/test_cpr_lookup.c): for each event delivered to it, it sends a
 * person.lookup.request {cpr: data.cpr, purpose: data.purpose} with id "<event id>-lookup"
 * to the service named by option `service` through kanal_request, and emits a
 * test.cpr.answer event whose data holds the reply's type, causationid and data
 * ({"type", "causationid", "person"}). A failed request is REJECTed with its error code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

static const kanal_option_t s_options[] = {
	{ .name = "service",
	  .type = KANAL_OPT_STRING,
	  .default_value = "cpr",
	  .help = "the service instance to ask" },
	{ .name = NULL, .type = 0 },
};

static int s_init(kanal_ctx_t *ctx, const kanal_config_t *cfg, void **state)
{
	*state = (void *)kanal_config_string(cfg, "service");
	return 0;
}

static kanal_outcome_t s_on_message(kanal_ctx_t *ctx, void *state, const kanal_msg_t *msg)
{
	const char *service = state, *cpr = NULL, *purpose = NULL;
	kanal_msg_t *req, *reply = NULL, *answer;
	char id[300];
	char *person;
	int rc;

	if (kanal_msg_data_str(msg, "cpr", &cpr) != 0) {
		kanal_set_error(ctx, "tp_cprclient: no data.cpr");
		return KANAL_OUTCOME_REJECT;
	}
	kanal_msg_data_str(msg, "purpose", &purpose);
	snprintf(id, sizeof id, "%s-lookup", kanal_msg_id(msg));
	req = kanal_msg_new("person.lookup.request", kanal_instance_name(ctx), id);
	if (!req || kanal_msg_data_set_str(req, "cpr", cpr) != 0 ||
	    (purpose && kanal_msg_data_set_str(req, "purpose", purpose) != 0)) {
		kanal_msg_destroy(&req);
		return KANAL_OUTCOME_RETRY;
	}
	rc = kanal_request(ctx, service, &req, 5000, &reply);
	if (rc != 0) {
		kanal_set_error(ctx, "tp_cprclient: request to '%s' failed: %s", service,
				kanal_strerror(rc));
		return KANAL_OUTCOME_REJECT;
	}
	snprintf(id, sizeof id, "%s-answer", kanal_msg_id(msg));
	answer = kanal_msg_new("test.cpr.answer", kanal_instance_name(ctx), id);
	person = kanal_msg_data_json(reply, NULL);
	if (!answer || !person ||
	    kanal_msg_data_set_str(answer, "type", kanal_msg_type(reply)) != 0 ||
	    kanal_msg_data_set_str(answer, "causationid",
				   kanal_msg_attr(reply, "causationid")
					   ? kanal_msg_attr(reply, "causationid")
					   : "") != 0 ||
	    kanal_msg_data_set_json(answer, "person", person, strlen(person)) != 0) {
		kanal_free(person);
		kanal_msg_destroy(&answer);
		kanal_msg_destroy(&reply);
		return KANAL_OUTCOME_RETRY;
	}
	kanal_free(person);
	kanal_msg_destroy(&reply);
	rc = kanal_emit(ctx, &answer);
	if (rc != 0) {
		kanal_set_error(ctx, "tp_cprclient: emit failed: %s", kanal_strerror(rc));
		return KANAL_OUTCOME_RETRY;
	}
	return KANAL_OUTCOME_OK;
}

KANAL_PLUGIN_EXPORT = {
	.abi_major = KANAL_ABI_MAJOR,
	.abi_minor = KANAL_ABI_MINOR,
	.struct_size = sizeof(kanal_plugin_t),
	.name = "tp_cprclient",
	.version = "1.0.0",
	.description = "test client: asks the cpr service through kanal_request",
	.options = s_options,
	.init = s_init,
	.on_message = s_on_message,
};
