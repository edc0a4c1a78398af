/*
 * broker/privacy.c — see privacy.h.
 */
#include "msg_int.h"
#include "privacy.h"

bool privacy_context_cpr(const kanal_msg_t *msg, char *attr, size_t size)
{
	/* Every emit passes here: the SDK walks the message's own fields (with the lengths it
	 * keeps) rather than looking each attribute up by name. */
	return kanal__msg_context_cpr(msg, attr, size);
}
