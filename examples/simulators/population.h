/*
 * examples/simulators/population.h — the synthetic people every simulator knows: families
 * with custody relations, children in two daycare institutions, staff in both, a citizen
 * exempt from Digital Post, a citizen with a protected address, a dead and an emigrated
 * citizen. All CPR numbers are synthetic (dates and century digits valid; some fail
 * modulus 11, as real ones issued since 2007 may). The CPR, daycare, HR and Digital Post
 * simulators all read this one table, so a lookup finds the parents of a child that the
 * daycare system reported sick.
 */
#ifndef KANAL_SIM_POPULATION_H
#define KANAL_SIM_POPULATION_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sim_person {
	const char *cpr; /* ten digits, no hyphen */
	const char *first, *middle, *last;
	char sex;               /* 'K' or 'M' */
	int status;             /* CPR status: 1 active, 80 emigrated, 90 dead … */
	char civil;             /* civilstand: U G F E P O L D */
	bool protected_address; /* adressebeskyttelse */
	bool digital_post;      /* tilmeldtDigitalpost */
	const char *exempt;     /* why exempt from Digital Post (fritaget), or NULL */
	const char *street, *number, *floor, *door, *postcode, *city;
	int municipality;                     /* kommunekode */
	const char *mother, *father, *spouse; /* CPR numbers or NULL */
	/* custody holders of a child: CPR number and foraeldremyndighedtype (3 mother,
	 * 4 father, 5/6 other) */
	const char *custody[2];
	int custody_type[2];
	/* a custody that has ended (foraeldremyndighedSletdato set): its type (3/4), or 0 */
	int custody_ended_type;
} sim_person_t;

typedef struct sim_institution {
	const char *id;   /* "solsikken" */
	const char *name; /* "Solsikken" */
} sim_institution_t;

typedef struct sim_child {
	const char *id; /* the daycare system's id: "child-101" */
	const char *cpr;
	const char *institution; /* institution id */
} sim_child_t;

typedef struct sim_employee {
	const char *employment; /* employment identifier "E-1001" */
	const char *cpr;
	const char *department; /* institution id */
	const char *title;      /* "pædagog", "leder" */
} sim_employee_t;

extern const sim_person_t sim_people[];
extern const size_t sim_n_people;
extern const sim_institution_t sim_institutions[];
extern const size_t sim_n_institutions;
extern const sim_child_t sim_children[];
extern const size_t sim_n_children;
extern const sim_employee_t sim_employees[];
extern const size_t sim_n_employees;

/* The person with this CPR number (hyphen allowed), or NULL. */
const sim_person_t *sim_person_find(const char *cpr);
const sim_child_t *sim_child_find(const char *id);
const sim_institution_t *sim_institution_find(const char *id);
const sim_employee_t *sim_employee_find(const char *employment);

#endif
