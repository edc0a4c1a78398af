/*
 * plugins/common/kc_soap.h — what a connector to a SOAP service of Serviceplatformen needs
 * besides HTTP (kc_http) and the certificate (kc_cert): finding elements by local name in
 * an answer (the services' namespace prefixes differ from answer to answer), the payload
 * of a SOAP envelope, and name-based UUIDs, so that an id the service sees is the same on
 * every redelivery of one event.
 *
 * Not part of the public SDK: linked into each bundled plugin as a static library
 * (build/lib/libkanalconn.a). Functions are prefixed kc_ ("kanal connector"). The plugins
 * older than this file (cpr, digitalpost) still carry helpers of their own like these.
 */
#ifndef KANAL_PLUGINS_KC_SOAP_H
#define KANAL_PLUGINS_KC_SOAP_H

#include <stdbool.h>
#include <stddef.h>

#include <libxml/tree.h>

/* The first element among node's children whose local name is `local`, or NULL.
 * Ownership: borrows node; the result is part of node's document. */
xmlNodePtr kc_xml_child(const xmlNode *node, const char *local);

/* The first element named `local` (local name, any namespace) in node's subtree, node
 * itself included, depth first; or NULL. Ownership: as kc_xml_child. */
xmlNodePtr kc_xml_find(const xmlNode *node, const char *local);

/* Copies the text of the first element named `local` in node's subtree into buf (cut to
 * size - 1 bytes, white space around it trimmed). Returns true when there is such an
 * element (buf "" when it is empty), false and buf "" when not. Ownership: borrows all. */
bool kc_xml_text(const xmlNode *node, const char *local, char *buf, size_t size);

/* The payload of a SOAP envelope: the first element inside Envelope/Body (a Fault, or the
 * operation's answer), or NULL when doc is no SOAP envelope. Ownership: borrows doc. */
xmlNodePtr kc_soap_payload(xmlDocPtr doc);

/* A name-based UUID (SHA-1 of `space`, source, a NUL, id, a NUL and role) written in the
 * version-4 form the services' UUID patterns accept: the same inputs give the same UUID,
 * so a redelivered event is the same transaction. `space` tells one connector's names from
 * another's. Returns 0, or -1 when no SHA-1 is at hand. Ownership: borrows all. */
int kc_uuid_name(const char *space, const char *source, const char *id, const char *role,
		 char out[37]);

#endif
