/*
 * tests/unit/test_memo.c — the digitalpost connector's SF1601 writer (plugins/digitalpost/
 * memo.c) against the contract: every kombi_request it builds — Digital Post, Automatisk
 * Valg with the print part, Fysisk Post, NemSMS, MeMo 1.1 and 1.2, attachments, AFTALE with
 * its reservation — validates against contracts/schemas with libxml2's xmlSchemaValidateDoc,
 * and each SF1601/MeMo fact of contracts/README.md §6.3 that a look-alike breaks is checked
 * on its own: the exact KombiValgKode strings, version-4 UUIDs, UTC "…Z" times, 1.2 without
 * memoSchVersion, the dummy recipient CPR of the print part. The schemas are also shown to
 * refuse the contract's negative examples, so a pass means something.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xmlschemas.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "test.h"

#include "../../plugins/digitalpost/memo.h"
#include "../../plugins/digitalpost/receipts.h"

#define SCHEMAS "contracts/schemas/"
#define PDF "JVBERi0xLjQgc3ludGhldGljIGthbmFsIGV4YW1wbGU="

/* Validates doc against the schema file; 0 when valid. */
static int s_validate_doc(xmlDocPtr doc, const char *xsd)
{
	xmlSchemaParserCtxtPtr p = xmlSchemaNewParserCtxt(xsd);
	xmlSchemaPtr schema = p ? xmlSchemaParse(p) : NULL;
	xmlSchemaValidCtxtPtr v = schema ? xmlSchemaNewValidCtxt(schema) : NULL;
	int rc = v ? xmlSchemaValidateDoc(v, doc) : -1;

	CU_ASSERT_PTR_NOT_NULL(schema);
	xmlSchemaFreeValidCtxt(v);
	xmlSchemaFree(schema);
	xmlSchemaFreeParserCtxt(p);
	return rc;
}

static int s_validate_file(const char *file, const char *xsd)
{
	xmlDocPtr doc = xmlReadFile(file, NULL, XML_PARSE_NONET);
	int rc;

	CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
	rc = s_validate_doc(doc, xsd);
	xmlFreeDoc(doc);
	return rc;
}

/* A letter with every part filled; the test changes what it checks. */
static void s_letter(dp_letter_t *l)
{
	memset(l, 0, sizeof *l);
	l->kombi = DP_KOMBI_DIGITAL;
	l->memo_version = 12;
	l->with_memo = true;
	l->message_type = "DIGITALPOST";
	CU_ASSERT_EQUAL(dp_uuid("kanal/test", "letter-1", "", l->message_uuid), 0);
	CU_ASSERT_EQUAL(dp_uuid("kanal/test", "letter-1", "print", l->print_id), 0);
	l->message_id = "letter-1";
	l->label = "Indkaldelse til møde om skolestart";
	l->sender_cvr = "12345678";
	l->sender_label = "Prøve Kommune";
	/* A synthetic number (day 01, month 01): the tests never print it. */
	memcpy(l->recipient, "0101901234", 11);
	l->created = "2025-06-02T08:15:00.000Z";
	l->main = (dp_document_t){ .label = "Indkaldelse",
				   .mimetype = "application/pdf",
				   .filename = "indkaldelse.pdf",
				   .language = "da",
				   .content = PDF };
	l->attachments[0] = (dp_document_t){ .mimetype = "application/pdf",
					     .filename = "praktisk.pdf",
					     .language = "da",
					     .content = PDF };
	l->n_attachments = 1;
	l->actions[0] = (dp_action_t){ .code = "AFTALE",
				       .label = "Tilføj til kalenderen",
				       .start = "2025-06-20T07:00:00Z",
				       .end = "2025-06-20T08:00:00Z",
				       .description = "Møde om skolestart",
				       .abstract = "Skolestart",
				       .location = "Prøve Skole, lokale 12",
				       .organizer_name = "Prøve Skole" };
	CU_ASSERT_EQUAL(
		dp_uuid("kanal/test", "letter-1", "reservation", l->actions[0].reservation_uuid),
		0);
	l->n_actions = 1;
	l->address = (dp_address_t){ .name = "Mette Testesen",
				     .street = "Eksempelvej",
				     .building = "12B",
				     .floor = "2",
				     .suite = "th",
				     .postcode = "9999",
				     .city = "Prøveby" };
}

/* Builds the letter's kombi_request and parses it back. */
static xmlDocPtr s_build(const dp_letter_t *l)
{
	size_t len = 0;
	char *xml = dp_kombi_build(l, &len);
	xmlDocPtr doc;

	CU_ASSERT_PTR_NOT_NULL_FATAL(xml);
	doc = xmlReadMemory(xml, (int)len, "kombi.xml", NULL, XML_PARSE_NONET);
	free(xml);
	CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
	return doc;
}

/* The text at an XPath (prefixes memo, fp, adir) in a static buffer, or "" */
static const char *s_xpath(xmlDocPtr doc, const char *expr)
{
	static char buf[256];
	xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
	xmlXPathObjectPtr o;

	xmlXPathRegisterNs(ctx, BAD_CAST "memo", BAD_CAST DP_NS_MEMO);
	xmlXPathRegisterNs(ctx, BAD_CAST "fp", BAD_CAST DP_NS_FJERNPRINT);
	xmlXPathRegisterNs(ctx, BAD_CAST "adir", BAD_CAST "urn:oio:adir:dagpenge:2009.07.01");
	o = xmlXPathEvalExpression(BAD_CAST expr, ctx);
	buf[0] = '\0';
	if (o && o->nodesetval && o->nodesetval->nodeNr > 0) {
		xmlChar *t = xmlNodeGetContent(o->nodesetval->nodeTab[0]);
		snprintf(buf, sizeof buf, "%s", t ? (const char *)t : "");
		xmlFree(t);
	} else {
		snprintf(buf, sizeof buf, "(none)");
	}
	xmlXPathFreeObject(o);
	xmlXPathFreeContext(ctx);
	return buf;
}

static void test_digital_post_memo12_with_attachment_and_aftale_validates(void)
{
	dp_letter_t l;
	xmlDocPtr doc;

	s_letter(&l);
	doc = s_build(&l);
	CU_ASSERT_EQUAL(
		s_validate_doc(doc, SCHEMAS "sf1601/kanal-authored/kombi_request-memo12.xsd"), 0);
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "/kombi_request/KombiValgKode"), "Digital Post");
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//memo:AdditionalDocument/memo:File/memo:filename"),
			       "praktisk.pdf");
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//memo:Action/memo:Reservation/memo:location"),
			       "Prøve Skole, lokale 12");
	/* AFTALE carries a Reservation and no EntryPoint. */
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//memo:Action/memo:EntryPoint"), "(none)");
	/* A Digital Post request carries no print part. */
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//fp:ForsendelseISamling"), "(none)");
	xmlFreeDoc(doc);
}

static void test_memo11_has_memoSchVersion_and_validates(void)
{
	dp_letter_t l;
	xmlDocPtr doc;

	s_letter(&l);
	l.memo_version = 11;
	doc = s_build(&l);
	CU_ASSERT_EQUAL(
		s_validate_doc(doc, SCHEMAS "sf1601/kanal-authored/kombi_request-memo11.xsd"), 0);
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//memo:Message/@memoSchVersion"), "1.1.0");
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//memo:Message/@memoVersion"), "1.1");
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//memo:MessageHeader/memo:mandatory"), "false");
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//memo:MessageHeader/memo:legalNotification"),
			       "false");
	xmlFreeDoc(doc);
}

static void test_memo12_has_no_memoSchVersion(void)
{
	dp_letter_t l;
	xmlDocPtr doc;

	s_letter(&l);
	doc = s_build(&l);
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//memo:Message/@memoVersion"), "1.2");
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//memo:Message/@memoSchVersion"), "(none)");
	/* The explicit memo: prefix (the service once refused a default namespace). */
	CU_ASSERT_STRING_EQUAL((const char *)xmlDocGetRootElement(doc)->children->next->ns->prefix,
			       "memo");
	xmlFreeDoc(doc);
}

static void test_automatisk_valg_has_both_parts_and_the_dummy_cpr(void)
{
	dp_letter_t l;
	xmlDocPtr doc;

	s_letter(&l);
	l.kombi = DP_KOMBI_AUTO;
	l.with_print = true;
	doc = s_build(&l);
	CU_ASSERT_EQUAL(
		s_validate_doc(doc, SCHEMAS "sf1601/kanal-authored/kombi_request-memo12.xsd"), 0);
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "/kombi_request/KombiValgKode"), "Automatisk Valg");
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//adir:CPRnummerIdentifikator"), "0000000000");
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//fp:AfsendelseIdentifikator"), l.print_id);
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//*[local-name()='MeddelelseIndholdData']"), PDF);
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//*[local-name()='StreetBuildingIdentifier']"), "12B");
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//*[local-name()='PostCodeIdentifier']"), "9999");
	xmlFreeDoc(doc);
}

static void test_fysisk_post_alone_validates(void)
{
	dp_letter_t l;
	xmlDocPtr doc;

	s_letter(&l);
	l.kombi = DP_KOMBI_PHYSICAL;
	l.with_memo = false;
	l.with_print = true;
	doc = s_build(&l);
	CU_ASSERT_EQUAL(
		s_validate_doc(doc, SCHEMAS "sf1601/kanal-authored/kombi_request-memo12.xsd"), 0);
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "/kombi_request/KombiValgKode"), "Fysisk Post");
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//memo:Message"), "(none)");
	xmlFreeDoc(doc);
}

static void test_nemsms_validates_without_body(void)
{
	dp_letter_t l;
	xmlDocPtr doc;

	s_letter(&l);
	l.kombi = DP_KOMBI_NEMSMS;
	l.message_type = "NEMSMS";
	l.notification = "Du har fået post fra Prøve Kommune.";
	doc = s_build(&l);
	CU_ASSERT_EQUAL(
		s_validate_doc(doc, SCHEMAS "sf1601/kanal-authored/kombi_request-memo12.xsd"), 0);
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "/kombi_request/KombiValgKode"), "NemSMS");
	CU_ASSERT_STRING_EQUAL(s_xpath(doc, "//memo:MessageBody"), "(none)");
	xmlFreeDoc(doc);
}

static void test_kombivalgkode_strings_are_exact(void)
{
	CU_ASSERT_STRING_EQUAL(DP_KOMBI_DIGITAL, "Digital Post");
	CU_ASSERT_STRING_EQUAL(DP_KOMBI_AUTO, "Automatisk Valg");
	CU_ASSERT_STRING_EQUAL(DP_KOMBI_PHYSICAL, "Fysisk Post");
	CU_ASSERT_STRING_EQUAL(DP_KOMBI_NEMSMS, "NemSMS");
	/* And the schema refuses a look-alike (no space). */
	CU_ASSERT_NOT_EQUAL(
		s_validate_file("contracts/examples/negative/kombi_request.bad-kombivalgkode.xml",
				SCHEMAS "sf1601/kanal-authored/kombi_request-memo12.xsd"),
		0);
}

static void test_uuids_are_version_4_and_stable(void)
{
	char a[37], b[37], c[37];

	CU_ASSERT_EQUAL(dp_uuid("src", "id-1", "", a), 0);
	CU_ASSERT_EQUAL(dp_uuid("src", "id-1", "", b), 0);
	CU_ASSERT_EQUAL(dp_uuid("src", "id-1", "print", c), 0);
	CU_ASSERT_STRING_EQUAL(a, b);
	CU_ASSERT_STRING_NOT_EQUAL(a, c);
	CU_ASSERT_EQUAL(a[14], '4');
	CU_ASSERT_PTR_NOT_NULL(strchr("89ab", a[19]));
	CU_ASSERT_EQUAL(c[14], '4');
}

static void test_schemas_refuse_non_utc_time_and_missing_schversion(void)
{
	CU_ASSERT_NOT_EQUAL(
		s_validate_file("contracts/examples/negative/memo-1.2.non-utc-datetime.xml",
				SCHEMAS "memo/1.2-derived/MeMo_core.xsd"),
		0);
	CU_ASSERT_NOT_EQUAL(
		s_validate_file("contracts/examples/negative/memo-1.1.missing-memoSchVersion.xml",
				SCHEMAS "memo/1.1/MeMo_core.xsd"),
		0);
	/* And the writer's own time with an offset is refused too: the plugin converts. */
	{
		dp_letter_t l;
		xmlDocPtr doc;
		s_letter(&l);
		l.created = "2025-06-02T10:15:00+02:00";
		doc = s_build(&l);
		CU_ASSERT_NOT_EQUAL(
			s_validate_doc(doc,
				       SCHEMAS "sf1601/kanal-authored/kombi_request-memo12.xsd"),
			0);
		xmlFreeDoc(doc);
	}
}

static void test_the_contract_examples_validate(void)
{
	CU_ASSERT_EQUAL(
		s_validate_file("contracts/examples/sf1601/kombi_request.automatisk-valg.xml",
				SCHEMAS "sf1601/kanal-authored/kombi_request-memo12.xsd"),
		0);
	CU_ASSERT_EQUAL(
		s_validate_file("contracts/examples/sf1601/kombi_request.digital-post.memo11.xml",
				SCHEMAS "sf1601/kanal-authored/kombi_request-memo11.xsd"),
		0);
}

/* The receipts validate PKO_PostStatus against a built-in copy of the contract's schema:
 * it must be the contract's, byte for byte, and take the contract's examples. */
static void test_builtin_pko_schema_is_the_contracts(void)
{
	char *file = test_read_file(SCHEMAS "sf1601/kanal-authored/PKO_PostStatus.xsd", NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(file);
	CU_ASSERT_STRING_EQUAL(dp_pko_poststatus_xsd, file);
	free(file);
	CU_ASSERT_EQUAL(s_validate_file("contracts/examples/sf1601/PKO_PostStatus.fejlet.xml",
					SCHEMAS "sf1601/kanal-authored/PKO_PostStatus.xsd"),
			0);
	CU_ASSERT_EQUAL(
		s_validate_file(
			"contracts/examples/sf1601/PKO_PostStatus.afleveret-digital-post.xml",
			SCHEMAS "sf1601/kanal-authored/PKO_PostStatus.xsd"),
		0);
}

TEST_MAIN("memo", TEST(test_builtin_pko_schema_is_the_contracts),
	  TEST(test_digital_post_memo12_with_attachment_and_aftale_validates),
	  TEST(test_memo11_has_memoSchVersion_and_validates),
	  TEST(test_memo12_has_no_memoSchVersion),
	  TEST(test_automatisk_valg_has_both_parts_and_the_dummy_cpr),
	  TEST(test_fysisk_post_alone_validates), TEST(test_nemsms_validates_without_body),
	  TEST(test_kombivalgkode_strings_are_exact), TEST(test_uuids_are_version_4_and_stable),
	  TEST(test_schemas_refuse_non_utc_time_and_missing_schversion),
	  TEST(test_the_contract_examples_validate))
