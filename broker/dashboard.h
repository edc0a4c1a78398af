/*
 * broker/dashboard.h — the dashboard page served by the HTTP admin endpoint, compiled in
 * from broker/dashboard.html (the Makefile turns it into a C string), so an installed
 * kanald needs no files beside it.
 */
#ifndef KANAL_DASHBOARD_H
#define KANAL_DASHBOARD_H

extern const char dashboard_html[];

#endif
