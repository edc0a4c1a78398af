/*
 * kanal/kanal.h — the whole SDK: include this one header in a plugin.
 */
#ifndef KANAL_KANAL_H
#define KANAL_KANAL_H

#include <kanal/error.h>
#include <kanal/msg.h>
#include <kanal/cpr.h>
#include <kanal/time.h>
#include <kanal/plugin.h>
#include <kanal/blob.h>

#define KANAL_VERSION "0.1.0"

#endif
