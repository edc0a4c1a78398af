/*
 * tests/fuzz/fuzz_cpr_soap.c — the cpr connector's reading of the CPR service's SOAP answer
 * (an answer, a fault, or garbage). What must hold: no crash, and fault and garbage texts
 * that never quote a CPR number in the clear.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include <kanal/kanal.h>

#include "../../plugins/cpr/cpr_int.h"

FUZZ_TARGET(cpr_soap)
{
	cpr_soap_result_t res;
	size_t off, len;

	memset(&res, 0, sizeof res);
	cpr_soap_parse((const char *)data, size, "1404214382", &res);
	if (kanal_cpr_find(res.text, strlen(res.text), &off, &len) ||
	    kanal_cpr_find(res.why, strlen(res.why), &off, &len))
		abort();
	cpr_soap_result_clear(&res);
	return 0;
}
