/*
 * examples/simulators/population.c — the synthetic population (see population.h). Streets
 * and names are invented; the municipality is 751. Changing a person here changes what
 * every simulator answers, and the end-to-end tests count on these facts:
 *   - Ida (child-101, Solsikken) has two custody holders, Mads and Sofie;
 *   - Noah (child-103, Solsikken) has one, his mother Maja; his father Lars has no custody;
 *   - Freja (child-201, Mælkebøtten) and her mother Anne have protected addresses;
 *   - Jonas, Bent and Karen are exempt from Digital Post (not enrolled);
 *   - Laura is 11: too young for a Digital Post mailbox;
 *   - Anders is dead (status 90); Ali has emigrated (status 80);
 *   - Sara (no daycare place) is in the custody of her mother Lise and of Birgitte (type 5,
 *     another holder); her father Kasper's custody has ended, so his children list names
 *     her but he holds no custody of her.
 */
#include "population.h"

#include <string.h>

/* The table leaves trailing fields (relations, custody) out where a person has none. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define N_OF(a) (sizeof(a) / sizeof *(a))

const sim_person_t
	sim_people[] = {
		{ "1503851233", "Mads",     NULL, "Hansen",      'M',  1,           'G',
		  false,        true,       NULL, "Solsikkevej", "12", NULL,        NULL,
		  "8000",       "Aarhus C", 751,  NULL,          NULL, "2207884566" },
		{ "2207884566", "Sofie",    "Bach", "Hansen",      'K',  1,           'G',
		  false,        true,       NULL,   "Solsikkevej", "12", NULL,        NULL,
		  "8000",       "Aarhus C", 751,    NULL,          NULL, "1503851233" },
		{ "1404214382", "Ida",         NULL,
		  "Hansen",     'K',           1,
		  'U',          false,         false,
		  NULL,         "Solsikkevej", "12",
		  NULL,         NULL,          "8000",
		  "Aarhus C",   751,           "2207884566",
		  "1503851233", NULL,          { "2207884566", "1503851233" },
		  { 3, 4 } },
		{ "0101184129", "Oliver",      NULL,
		  "Hansen",     'M',           1,
		  'U',          false,         false,
		  NULL,         "Solsikkevej", "12",
		  NULL,         NULL,          "8000",
		  "Aarhus C",   751,           "2207884566",
		  "1503851233", NULL,          { "2207884566", "1503851233" },
		  { 3, 4 } },
		{ "0903225017", "Noah",      NULL,
		  "Jensen",     'M',         1,
		  'U',          false,       false,
		  NULL,         "Kanalgade", "4",
		  "2",          "th",        "8000",
		  "Aarhus C",   751,         "1111903128",
		  "0506872215", NULL,        { "1111903128", NULL },
		  { 3, 0 } },
		{ "1111903128", "Maja", NULL, "Jensen", 'K', 1, 'U', false, true, NULL, "Kanalgade",
		  "4", "2", "th", "8000", "Aarhus C", 751 },
		{ "0506872215", "Lars", NULL, "Nielsen", 'M', 1, 'F', false, true, NULL, "Havnevej",
		  "31", "st", NULL, "8200", "Aarhus N", 751 },
		{ "1512155010", "Laura",    NULL,
		  "Nielsen",    'K',        1,
		  'U',          false,      false,
		  NULL,         "Havnevej", "31",
		  "st",         NULL,       "8200",
		  "Aarhus N",   751,        NULL,
		  "0506872215", NULL,       { "0506872215", NULL },
		  { 4, 0 } },
		{ "2003236020", "Freja",    NULL, "Larsen",     'K',  1,    'U',
		  true,         false,      NULL, "Skjultvej",  "7",  NULL, NULL,
		  "8210",       "Aarhus V", 751,  "0808931244", NULL, NULL, { "0808931244", NULL },
		  { 3, 0 } },
		{ "0808931244", "Anne", NULL, "Larsen", 'K', 1, 'U', true, true, NULL, "Skjultvej",
		  "7", NULL, NULL, "8210", "Aarhus V", 751 },
		{ "1710244133",
		  "William",
		  NULL,
		  "Pedersen",
		  'M',
		  1,
		  'U',
		  false,
		  false,
		  NULL,
		  "Mælkebøttevej",
		  "2",
		  "1",
		  "tv",
		  "8220",
		  "Brabrand",
		  751,
		  "0112894178",
		  "2902881235",
		  NULL,
		  { "0112894178", "2902881235" },
		  { 3, 4 } },
		{ "2902881235",
		  "Jonas",
		  NULL,
		  "Pedersen",
		  'M',
		  1,
		  'G',
		  false,
		  false,
		  "ingen MitID",
		  "Mælkebøttevej",
		  "2",
		  "1",
		  "tv",
		  "8220",
		  "Brabrand",
		  751,
		  NULL,
		  NULL,
		  "0112894178" },
		{ "0112894178",
		  "Emma",
		  NULL,
		  "Pedersen",
		  'K',
		  1,
		  'G',
		  false,
		  true,
		  NULL,
		  "Mælkebøttevej",
		  "2",
		  "1",
		  "tv",
		  "8220",
		  "Brabrand",
		  751,
		  NULL,
		  NULL,
		  "2902881235" },
		{ "0101654001", "Bent", NULL, "Olsen", 'M', 1, 'E', false, false, "ingen computer",
		  "Bakkevej", "88", NULL, NULL, "8240", "Risskov", 751 },
		{ "3006409120", "Karen", NULL, "Madsen", 'K', 1, 'E', false, false, "handicap",
		  "Plejehjemsvej", "1", NULL, "12", "8270", "Højbjerg", 751 },
		{ "2412990121", "Ali", NULL, "Hassan", 'M', 80, 'U', false, false, "udrejst", NULL,
		  NULL, NULL, NULL, NULL, NULL, 0 },
		{ "2412995123", "Anders", NULL, "Mortensen", 'M', 90, 'E', false, false, NULL, NULL,
		  NULL, NULL, NULL, NULL, NULL, 0 },
		{ "1807794260", "Hanne", NULL, "Kristensen", 'K', 1, 'G', false, true, NULL,
		  "Lærkevej", "5", NULL, NULL, "8000", "Aarhus C", 751 },
		{ "2305824311", "Peter", NULL, "Møller", 'M', 1, 'U', false, true, NULL, "Skovvej",
		  "19", "3", "mf", "8000", "Aarhus C", 751 },
		{ "1002913664", "Lise", NULL, "Andersen", 'K', 1, 'G', false, true, NULL, "Engvej",
		  "44", NULL, NULL, "8220", "Brabrand", 751 },
		{ "0404864117", "Kasper", NULL, "Holm", 'M', 1, 'U', false, true, NULL, "Åvej", "3",
		  NULL, NULL, "8220", "Brabrand", 751 },
		{ "1506754082", "Birgitte", NULL, "Lund", 'K', 1, 'G', false, true, NULL, "Parkvej",
		  "10", NULL, NULL, "8000", "Aarhus C", 751 },
		{ "1208164105", "Sara",   NULL,
		  "Andersen",   'K',      1,
		  'U',          false,    false,
		  NULL,         "Engvej", "44",
		  NULL,         NULL,     "8220",
		  "Brabrand",   751,      "1002913664",
		  "0404864117", NULL,     { "1002913664", "1506754082" },
		  { 3, 5 },     4 },
	};
const size_t sim_n_people = N_OF(sim_people);

const sim_institution_t sim_institutions[] = {
	{ "solsikken", "Solsikken" },
	{ "maelkeboetten", "Mælkebøtten" },
};
const size_t sim_n_institutions = N_OF(sim_institutions);

const sim_child_t sim_children[] = {
	{ "child-101", "1404214382", "solsikken" },
	{ "child-102", "0101184129", "solsikken" },
	{ "child-103", "0903225017", "solsikken" },
	{ "child-201", "2003236020", "maelkeboetten" },
	{ "child-202", "1710244133", "maelkeboetten" },
};
const size_t sim_n_children = N_OF(sim_children);

const sim_employee_t sim_employees[] = {
	{ "E-1000", "1506754082", "solsikken", "leder" },
	{ "E-1001", "1807794260", "solsikken", "pædagog" },
	{ "E-1002", "2305824311", "solsikken", "pædagogmedhjælper" },
	{ "E-2001", "1002913664", "maelkeboetten", "pædagog" },
	{ "E-2002", "0404864117", "maelkeboetten", "pædagog" },
};
const size_t sim_n_employees = N_OF(sim_employees);

const sim_person_t *sim_person_find(const char *cpr)
{
	char digits[11];
	size_t n = 0;

	for (const char *p = cpr; p && *p && n < 10; p++)
		if (*p != '-')
			digits[n++] = *p;
	digits[n] = '\0';
	for (size_t i = 0; i < sim_n_people; i++)
		if (!strcmp(sim_people[i].cpr, digits))
			return &sim_people[i];
	return NULL;
}

const sim_child_t *sim_child_find(const char *id)
{
	for (size_t i = 0; id && i < sim_n_children; i++)
		if (!strcmp(sim_children[i].id, id))
			return &sim_children[i];
	return NULL;
}

const sim_institution_t *sim_institution_find(const char *id)
{
	for (size_t i = 0; id && i < sim_n_institutions; i++)
		if (!strcmp(sim_institutions[i].id, id))
			return &sim_institutions[i];
	return NULL;
}

const sim_employee_t *sim_employee_find(const char *employment)
{
	for (size_t i = 0; employment && i < sim_n_employees; i++)
		if (!strcmp(sim_employees[i].employment, employment))
			return &sim_employees[i];
	return NULL;
}
