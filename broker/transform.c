/*
 * broker/transform.c — jq transforms for routes (transform.h): the program runs in the
 * sandboxed jq runner the broker shares with the configured connectors
 * (plugins/common/kc_jq.c: the prelude, the watchdog, the limits), with `$event` bound to the
 * event's context attributes; this file turns its output into the message one delivery
 * carries.
 */
#include "transform.h"
#include "../plugins/common/kc_jq.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct transform {
	kc_jq_t *jq;
};

int transform_new(const char *program, transform_t **out, kanal_error_t *err)
{
	transform_t *t = calloc(1, sizeof *t);
	int rc;

	*out = NULL;
	if (!t)
		return KANAL_ENOMEM;
	if ((rc = kc_jq_new(program, "event", "transform", &t->jq, err)) != 0) {
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void transform_destroy(transform_t **t_p)
{
	if (!t_p || !*t_p)
		return;
	kc_jq_destroy(&(*t_p)->jq);
	free(*t_p);
	*t_p = NULL;
}

const char *transform_text(const transform_t *t)
{
	return kc_jq_text(t->jq);
}

static int s_attr_json(const char *name, const char *value, void *arg)
{
	jv *obj = arg;

	*obj = jv_object_set(*obj, jv_string(name), jv_string(value));
	return 0;
}

/* `$event`: the context attributes as strings. */
static jv s_event_object(const kanal_msg_t *msg)
{
	static const char *const names[] = {
		"specversion", "id",   "source",          "type",
		"subject",     "time", "datacontenttype", "dataschema"
	};
	jv obj = jv_object();

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		const char *v = kanal_msg_attr(msg, names[i]);
		if (v)
			obj = jv_object_set(obj, jv_string(names[i]), jv_string(v));
	}
	kanal_msg_foreach_ext(msg, s_attr_json, &obj);
	return obj;
}

/* The message's data as a jq value (null when there is none or it is not JSON). */
static jv s_data(const kanal_msg_t *msg)
{
	char *json;
	jv data;

	if (kanal_msg_data_kind(msg) != KANAL_DATA_JSON || !(json = kanal_msg_data_json(msg, NULL)))
		return jv_null();
	data = jv_parse(json);
	kanal_free(json);
	if (!jv_is_valid(data)) {
		jv_free(data);
		return jv_null();
	}
	return data;
}

/* Sets one attribute the program named, or says why it may not. */
static int s_set_attr(kanal_msg_t *msg, const char *name, jv value, kanal_error_t *err)
{
	static const char *const fixed[] = {
		"specversion",     "id",         "source", "time",
		"datacontenttype", "dataschema", "data",   "data_base64"
	};
	kanal_error_t why;
	int rc;

	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		if (!strcmp(name, fixed[i])) {
			kanal_error_set(err, NULL, 0, 0, name,
					"transform: attribute '%s' cannot be set by a transform",
					name);
			return KANAL_EREJECTED;
		}
	kanal_error_clear(&why);
	switch (jv_get_kind(value)) {
	case JV_KIND_STRING:
		rc = kanal_msg_set_attr(msg, name, jv_string_value(value), &why);
		break;
	case JV_KIND_NULL:
		rc = strcmp(name, "type") ? kanal_msg_set_attr(msg, name, NULL, &why)
					  : KANAL_EINVALID;
		if (rc)
			snprintf(why.text, sizeof why.text, "type cannot be removed");
		break;
	case JV_KIND_TRUE:
	case JV_KIND_FALSE:
		rc = kanal_msg_set_ext_bool(msg, name, jv_get_kind(value) == JV_KIND_TRUE, &why);
		break;
	case JV_KIND_NUMBER: {
		double d = jv_number_value(value);
		if (d == (double)(int32_t)d) {
			rc = kanal_msg_set_ext_int(msg, name, (int32_t)d, &why);
			break;
		}
	}
		/* fall through */
	default:
		rc = KANAL_EINVALID;
		snprintf(why.text, sizeof why.text,
			 "must be a string, a 32-bit integer, a boolean or null");
		break;
	}
	if (rc == KANAL_ENOMEM)
		return rc;
	if (rc) {
		kanal_error_set(err, NULL, 0, 0, name, "transform: attribute '%s': %s", name,
				why.text);
		return KANAL_EREJECTED;
	}
	return 0;
}

/* Applies the output: data, and attributes when the output is the envelope. */
static int s_apply(const transform_t *t, kanal_msg_t *msg, jv result, kanal_error_t *err)
{
	jv data = jv_copy(result), attrs = jv_invalid(), text;
	int rc = 0;
	char attr[64];

	if (jv_get_kind(result) == JV_KIND_OBJECT && jv_object_length(jv_copy(result)) == 2 &&
	    jv_object_has(jv_copy(result), jv_string("data")) &&
	    jv_object_has(jv_copy(result), jv_string("attributes"))) {
		jv_free(data);
		data = jv_object_get(jv_copy(result), jv_string("data"));
		attrs = jv_object_get(jv_copy(result), jv_string("attributes"));
		if (jv_get_kind(attrs) != JV_KIND_OBJECT) {
			kanal_error_set(err, NULL, 0, 0, NULL,
					"transform: 'attributes' must be an object");
			rc = KANAL_EREJECTED;
		}
	}
	if (!rc && jv_get_kind(attrs) == JV_KIND_OBJECT) {
		jv_object_foreach(attrs, name, value)
		{
			if (!rc)
				rc = s_set_attr(msg, jv_string_value(name), value, err);
			jv_free(name);
			jv_free(value);
		}
	}
	if (!rc && kanal_msg_context_cpr(msg, attr, sizeof attr)) {
		kanal_error_set(err, NULL, 0, 0, attr,
				"transform: attribute '%s' holds a CPR number; a person belongs in "
				"data, or a pseudonym in subject",
				attr);
		rc = KANAL_EREJECTED;
	}
	if (!rc) {
		text = kc_jq_dump(t->jq, jv_copy(data), err);
		if (!jv_is_valid(text)) {
			rc = KANAL_EREJECTED;
		} else {
			rc = kanal_msg_set_data_json(msg, jv_string_value(text),
						     (size_t)jv_string_length_bytes(jv_copy(text)));
			if (rc == 0) {
				const char *ct = kanal_msg_datacontenttype(msg);
				if (ct && !strstr(ct, "json"))
					rc = kanal_msg_set_attr(msg, "datacontenttype",
								"application/json", NULL);
			}
		}
		jv_free(text);
	}
	jv_free(attrs);
	jv_free(data);
	jv_free(result);
	return rc;
}

int transform_apply(transform_t *t, const kanal_msg_t *msg, kanal_msg_t **out, kanal_error_t *err)
{
	jv result;
	kanal_msg_t *copy;
	int rc;

	*out = NULL;
	result = kc_jq_run(t->jq, s_data(msg), s_event_object(msg), err);
	if (!jv_is_valid(result)) {
		jv_free(result);
		return KANAL_EREJECTED;
	}
	if (jv_get_kind(result) != JV_KIND_OBJECT) {
		kanal_error_set(err, NULL, 0, 0, NULL, "transform: the output is %s, not an object",
				jv_kind_name(jv_get_kind(result)));
		jv_free(result);
		return KANAL_EREJECTED;
	}
	if (!(copy = kanal_msg_dup(msg))) {
		jv_free(result);
		return KANAL_ENOMEM;
	}
	rc = s_apply(t, copy, result, err);
	if (rc) {
		kanal_msg_destroy(&copy);
		return rc;
	}
	*out = copy;
	return 0;
}
