/*
 * plugins/common/kc_soap.c — reading SOAP answers by local name, and name-based UUIDs
 * (kc_soap.h).
 */
#include "kc_soap.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

static bool s_is(const xmlNode *n, const char *local)
{
	return n && n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, local);
}

xmlNodePtr kc_xml_child(const xmlNode *node, const char *local)
{
	for (xmlNodePtr c = node ? node->children : NULL; c; c = c->next)
		if (s_is(c, local))
			return c;
	return NULL;
}

xmlNodePtr kc_xml_find(const xmlNode *node, const char *local)
{
	if (!node)
		return NULL;
	if (s_is(node, local))
		return (xmlNodePtr)node;
	for (xmlNodePtr c = node->children; c; c = c->next) {
		xmlNodePtr hit = c->type == XML_ELEMENT_NODE ? kc_xml_find(c, local) : NULL;
		if (hit)
			return hit;
	}
	return NULL;
}

bool kc_xml_text(const xmlNode *node, const char *local, char *buf, size_t size)
{
	xmlNodePtr n = kc_xml_find(node, local);
	xmlChar *text = n ? xmlNodeGetContent(n) : NULL;
	const char *p = text ? (const char *)text : "";
	size_t len;

	if (size)
		buf[0] = '\0';
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	len = strlen(p);
	while (len && strchr(" \t\r\n", p[len - 1]))
		len--;
	if (size)
		snprintf(buf, size, "%.*s", (int)(len < size ? len : size - 1), p);
	xmlFree(text);
	return n != NULL;
}

xmlNodePtr kc_soap_payload(xmlDocPtr doc)
{
	xmlNodePtr env = doc ? xmlDocGetRootElement(doc) : NULL, body;

	if (!s_is(env, "Envelope") || !(body = kc_xml_child(env, "Body")))
		return NULL;
	for (xmlNodePtr c = body->children; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE)
			return c;
	return NULL;
}

int kc_uuid_name(const char *space, const char *source, const char *id, const char *role,
		 char out[37])
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok;

	/* Neither part may hold a NUL, so the NULs between them keep any two names apart. */
	ok = md && EVP_DigestInit_ex(md, EVP_sha1(), NULL) &&
	     EVP_DigestUpdate(md, space, strlen(space) + 1) &&
	     EVP_DigestUpdate(md, source, strlen(source) + 1) &&
	     EVP_DigestUpdate(md, id, strlen(id) + 1) && EVP_DigestUpdate(md, role, strlen(role)) &&
	     EVP_DigestFinal_ex(md, d, &dlen) && dlen >= 16;
	EVP_MD_CTX_free(md);
	if (!ok)
		return -1;
	d[6] = (unsigned char)((d[6] & 0x0F) | 0x40);
	d[8] = (unsigned char)((d[8] & 0x3F) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12],
		 d[13], d[14], d[15]);
	return 0;
}
