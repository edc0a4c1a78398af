/*
 * tests/unit/test_cpr_soap.c — the cpr plugin's side of SF1520 (plugins/cpr/soap.c) held
 * against the contract in contracts/: every request the connector builds (v4 and v5)
 * validates against the schema with libxml2, as the real service would check it; the
 * contract's example answers are read as the register writes them — custody on the child
 * pointing sideways (3/4 to mor/far, 5/6 their own CPR, an ended one left out), a parent's
 * bare children list, a relative without a CPR number, status 90; the platform's "PNR not
 * found" fault is recognised; and the negative example is one the schema refuses.
 *
 * CPR numbers are synthetic and live in named constants (never printed).
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/xmlschemas.h>

#include <kanal/kanal.h>

#include "../../plugins/cpr/cpr_int.h"
#include "test.h"

#define SF1520 "contracts/schemas/sf1520/"
#define EX "contracts/examples/"

static const char *const CHILD = "1503151236";
static const char *const MOTHER = "0101901234";
static const char *const OTHER = "0303701237";
static const char *const CHILD2 = "2208184238";
static const char *const DEAD = "0404401238";

/* Schema complaints are expected in the negative cases: kept off the output. */
static void s_quiet(void *ctx, const xmlError *e)
{
	(void)ctx;
	(void)e;
}

/* 0 when the first child of the SOAP Body (or the root, for a bare payload) of `xml`
 * validates against `schema_file`. */
static int s_validate(const char *schema_file, const char *xml, size_t len)
{
	xmlSchemaParserCtxtPtr pc = xmlSchemaNewParserCtxt(schema_file);
	xmlSchemaPtr schema = pc ? xmlSchemaParse(pc) : NULL;
	xmlSchemaValidCtxtPtr v = schema ? xmlSchemaNewValidCtxt(schema) : NULL;
	xmlDoc *doc = xmlReadMemory(xml, (int)len, "x.xml", NULL, XML_PARSE_NONET);
	xmlNode *node = doc ? xmlDocGetRootElement(doc) : NULL;
	int rc = -1;

	if (node && !strcmp((const char *)node->name, "Envelope")) {
		xmlNode *c = node->children;
		for (;
		     c && !(c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, "Body"));
		     c = c->next)
			;
		for (node = c ? c->children : NULL; node && node->type != XML_ELEMENT_NODE;
		     node = node->next)
			;
	}
	if (v)
		xmlSchemaSetValidStructuredErrors(v, (xmlStructuredErrorFunc)s_quiet, NULL);
	if (v && node)
		rc = xmlSchemaValidateOneElement(v, node);
	xmlFreeDoc(doc);
	xmlSchemaFreeValidCtxt(v);
	xmlSchemaFree(schema);
	xmlSchemaFreeParserCtxt(pc);
	return rc;
}

static void test_v4_request_validates(void)
{
	cpr_soap_opts_t o = { .version = 4,
			      .ns = CPR_NS_V4,
			      .ctx_ns = CPR_NS_INVCTX,
			      .agreement = "ae669e8f-1a90-4174-a730-4366adb3c72d",
			      .usersystem = "70a57287-d6cc-4301-941b-262abbe8daf9",
			      .user = "cfddce7e-5a54-4523-acd7-ffd1b51aa1f5",
			      .service = CPR_SERVICE_UUID_V4 };
	size_t len = 0;
	char *req = cpr_soap_request(&o, CHILD, &len);

	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT_EQUAL(s_validate(SF1520 "PersonBaseDataExtendedServiceMsg.libxml2.xsd", req, len),
			0);
	CU_ASSERT_PTR_NOT_NULL(strstr(req, CPR_NS_PNR));
	/* An upper-case UUID is not what the schema allows: the validation does bite. */
	o.user = "CFDDCE7E-5A54-4523-ACD7-FFD1B51AA1F5";
	free(req);
	req = cpr_soap_request(&o, CHILD, &len);
	CU_ASSERT_NOT_EQUAL(
		s_validate(SF1520 "PersonBaseDataExtendedServiceMsg.libxml2.xsd", req, len), 0);
	free(req);
}

static void test_v5_request_validates(void)
{
	cpr_soap_opts_t o = {
		.version = 5, .ns = CPR_NS_V5, .ctx_ns = CPR_NS_INVCTX, .cvr = "12345678"
	};
	size_t len = 0;
	char *req = cpr_soap_request(&o, CHILD, &len);

	CU_ASSERT_PTR_NOT_NULL_FATAL(req);
	CU_ASSERT_EQUAL(
		s_validate(SF1520 "derived-v5/PersonBaseDataExtendedServiceMsg.xsd", req, len), 0);
	CU_ASSERT_PTR_NULL(strstr(req, "InvocationContext"));
	CU_ASSERT_PTR_NOT_NULL(strstr(req, "MunicipalityCVR"));
	free(req);
}

/* Which answers make a v5 instance forget its token and ask the STS for a new one. */
static void test_token_refusal_is_recognised(void)
{
	cpr_soap_result_t fault = { .kind = CPR_SOAP_FAULT,
				    .code = "SECURITY_TOKEN_INVALID",
				    .text = "the security token has expired" };

	CU_ASSERT_TRUE(cpr_token_refused(500, &fault));
	CU_ASSERT_TRUE(cpr_token_refused(401, NULL));
	/* The platform's own trouble, and a number nobody has, are not about the token. */
	fault.server = true;
	CU_ASSERT_FALSE(cpr_token_refused(500, &fault));
	fault = (cpr_soap_result_t){ .kind = CPR_SOAP_FAULT,
				     .code = "PNR_NOT_FOUND",
				     .text = "PNR not found",
				     .not_found = true };
	CU_ASSERT_FALSE(cpr_token_refused(500, &fault));
	fault = (cpr_soap_result_t){ .kind = CPR_SOAP_ANSWER };
	CU_ASSERT_FALSE(cpr_token_refused(200, &fault));
}

static json_t *s_parse_file(const char *path, const char *pnr, cpr_soap_result_t *res)
{
	size_t len = 0;
	char *text = test_read_file(path, &len);

	CU_ASSERT_PTR_NOT_NULL(text);
	cpr_soap_parse(text ? text : "", text ? len : 0, pnr, res);
	free(text);
	return res->person;
}

static void test_custody_on_the_child(void)
{
	cpr_soap_result_t res;
	json_t *p = s_parse_file(EX "sf1520/PersonLookupResponse.v4.child-custody.soap.xml", CHILD,
				 &res);
	json_t *custody = json_object_get(json_object_get(p, "relations"), "custody");

	CU_ASSERT_EQUAL(res.kind, CPR_SOAP_ANSWER);
	/* type 3 → the mother's CPR from relationer/mor; type 4 has ended; type 5 its own. */
	CU_ASSERT_EQUAL(json_array_size(custody), 2);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(custody, 0), "cpr"))
				       ?: "",
			       MOTHER);
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_array_get(custody, 0), "type")) ?: "",
		"mother");
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_array_get(custody, 1), "cpr")) ?: "", OTHER);
	CU_ASSERT_TRUE(cpr_holds_custody(p, MOTHER));
	CU_ASSERT_FALSE(cpr_holds_custody(p, "0202881235")); /* the father: ended */
	/* Address protection is read; the address itself is still there (the consumer hides it). */
	CU_ASSERT_TRUE(json_is_true(json_object_get(p, "protected_address")));
	CU_ASSERT_PTR_NOT_NULL(json_object_get(p, "address"));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(p, "status")), 1);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(p, "birth_date")) ?: "",
			       "2015-03-15");
	cpr_soap_result_clear(&res);
}

static void test_parent_children_are_bare_numbers(void)
{
	cpr_soap_result_t res;
	json_t *p = s_parse_file(EX "sf1520/PersonLookupResponse.v4.parent.soap.xml", MOTHER, &res);
	json_t *rel = json_object_get(p, "relations");
	json_t *nocpr = json_object_get(rel, "without_cpr");

	CU_ASSERT_EQUAL(json_array_size(json_object_get(rel, "children")), 2);
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_array_get(json_object_get(rel, "children"), 1)) ?: "",
		CHILD2);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(rel, "custody")), 0);
	/* The father has no CPR number: name and birth date, never a made-up number. */
	CU_ASSERT_PTR_NULL(json_object_get(rel, "father"));
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(json_array_get(nocpr, 0), "relation")) ?: "",
		"father");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(nocpr, 0), "name"))
				       ?: "",
			       "Ukendt Testfar");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(p, "civil_status")) ?: "", "G");
	CU_ASSERT_TRUE(json_is_true(json_object_get(p, "resident")));
	cpr_soap_result_clear(&res);
}

static void test_dead_status_90(void)
{
	cpr_soap_result_t res;
	json_t *p = s_parse_file(EX "sf1520/PersonLookupResponse.v4.deceased.soap.xml", DEAD, &res);

	CU_ASSERT_EQUAL(json_integer_value(json_object_get(p, "status")), 90);
	CU_ASSERT_TRUE(json_is_false(json_object_get(p, "alive")));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(p, "civil_status")) ?: "", "D");
	cpr_soap_result_clear(&res);
}

static void test_not_found_fault(void)
{
	cpr_soap_result_t res;

	s_parse_file(EX "sf1520/Fault.soap.xml", MOTHER, &res);
	CU_ASSERT_EQUAL(res.kind, CPR_SOAP_FAULT);
	CU_ASSERT_TRUE(res.not_found);
	CU_ASSERT_TRUE(res.server); /* soap:Server, yet the connector REJECTs: not found */
	cpr_soap_result_clear(&res);
}

static void test_examples_and_negative_against_the_schema(void)
{
	const char *good[] = { EX "sf1520/PersonLookupResponse.v4.child-custody.soap.xml",
			       EX "sf1520/PersonLookupResponse.v4.parent.soap.xml",
			       EX "sf1520/PersonLookupResponse.v4.deceased.soap.xml" };
	size_t len;
	char *text;

	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		text = test_read_file(good[i], &len);
		CU_ASSERT_EQUAL(s_validate(SF1520 "PersonBaseDataExtendedServiceMsg.libxml2.xsd",
					   text ? text : "", text ? len : 0),
				0);
		free(text);
	}
	/* Custody type 7 does not exist: the schema refuses it. */
	text = test_read_file(EX "negative/PersonLookupResponse.v4.bad-custody-type.soap.xml",
			      &len);
	CU_ASSERT_PTR_NOT_NULL(text);
	CU_ASSERT_NOT_EQUAL(s_validate(SF1520 "PersonBaseDataExtendedServiceMsg.libxml2.xsd",
				       text ? text : "", text ? len : 0),
			    0);
	free(text);
}

TEST_MAIN("cpr_soap", TEST(test_v4_request_validates), TEST(test_v5_request_validates),
	  TEST(test_token_refusal_is_recognised), TEST(test_custody_on_the_child),
	  TEST(test_parent_children_are_bare_numbers), TEST(test_dead_status_90),
	  TEST(test_not_found_fault), TEST(test_examples_and_negative_against_the_schema))
