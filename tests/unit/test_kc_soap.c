/*
 * tests/unit/test_kc_soap.c — reading SOAP answers and naming transactions
 * (plugins/common/kc_soap.c): elements found by local name whatever the prefix, text
 * trimmed and cut to the buffer, the payload of an envelope (and none of a document that
 * is not one), and name-based UUIDs that are stable, of the version-4 form the services'
 * patterns accept, and different for another event or role.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <libxml/parser.h>

#include "test.h"

#include "../../plugins/common/kc_soap.h"

static xmlDocPtr s_doc(const char *text)
{
	return xmlReadMemory(text, (int)strlen(text), "t.xml", NULL, XML_PARSE_NONET);
}

static void test_payload_and_text_by_local_name(void)
{
	xmlDocPtr doc = s_doc(
		"<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">"
		"<soap:Header/><soap:Body>\n  <ns4:FordelingsobjektAfsendResponse "
		"xmlns:ns4=\"urn:a\" "
		"xmlns:ns3=\"urn:b\"><ns4:ForretningsKvittering><ns3:ForretningsValideringsKode>"
		"  MODTAGET\n</ns3:ForretningsValideringsKode></ns4:ForretningsKvittering>"
		"<ns4:Tom/></ns4:FordelingsobjektAfsendResponse></soap:Body></soap:Envelope>");
	xmlNodePtr p = kc_soap_payload(doc);
	char buf[16];

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL((const char *)p->name, "FordelingsobjektAfsendResponse");
	CU_ASSERT_PTR_NOT_NULL(kc_xml_child(p, "ForretningsKvittering"));
	CU_ASSERT_PTR_NULL(kc_xml_child(p, "ForretningsValideringsKode")); /* not a child */
	CU_ASSERT(kc_xml_text(p, "ForretningsValideringsKode", buf, sizeof buf));
	CU_ASSERT_STRING_EQUAL(buf, "MODTAGET");
	CU_ASSERT(kc_xml_text(p, "Tom", buf, sizeof buf)); /* there, and empty */
	CU_ASSERT_STRING_EQUAL(buf, "");
	CU_ASSERT(!kc_xml_text(p, "FejlKode", buf, sizeof buf));
	CU_ASSERT_STRING_EQUAL(buf, "");
	CU_ASSERT(kc_xml_text(p, "ForretningsValideringsKode", buf, 4)); /* cut, never over */
	CU_ASSERT_STRING_EQUAL(buf, "MOD");
	xmlFreeDoc(doc);

	doc = s_doc("<FordelingsobjektAfsendResponse/>");
	CU_ASSERT_PTR_NULL(kc_soap_payload(doc)); /* not an envelope */
	xmlFreeDoc(doc);
	doc = s_doc("<s:Envelope xmlns:s=\"urn:s\"><s:Body>  </s:Body></s:Envelope>");
	CU_ASSERT_PTR_NULL(kc_soap_payload(doc)); /* an empty body */
	xmlFreeDoc(doc);
	CU_ASSERT_PTR_NULL(kc_soap_payload(NULL));
}

static bool s_v4_form(const char *u)
{
	if (strlen(u) != 36 || u[8] != '-' || u[13] != '-' || u[18] != '-' || u[23] != '-')
		return false;
	return u[14] == '4' && strchr("89ab", u[19]) != NULL;
}

static void test_name_based_uuids(void)
{
	char a[37], b[37], c[37], d[37], e[37];

	CU_ASSERT_EQUAL(kc_uuid_name("sf2900", "selvbetjening", "ans-1", "", a), 0);
	CU_ASSERT_EQUAL(kc_uuid_name("sf2900", "selvbetjening", "ans-1", "", b), 0);
	CU_ASSERT_EQUAL(kc_uuid_name("sf2900", "selvbetjening", "ans-1", "form", c), 0);
	CU_ASSERT_EQUAL(kc_uuid_name("sf2900", "selvbetjening", "ans-2", "", d), 0);
	/* The parts are kept apart: ("a", "bc") is not ("ab", "c"). */
	CU_ASSERT_EQUAL(kc_uuid_name("sf2900", "selvbetjeningans-1", "", "", e), 0);
	CU_ASSERT_STRING_EQUAL(a, b);
	CU_ASSERT_STRING_NOT_EQUAL(a, c);
	CU_ASSERT_STRING_NOT_EQUAL(a, d);
	CU_ASSERT_STRING_NOT_EQUAL(a, e);
	CU_ASSERT(s_v4_form(a) && s_v4_form(c) && s_v4_form(d));
}

TEST_MAIN("kc_soap", TEST(test_payload_and_text_by_local_name), TEST(test_name_based_uuids))
