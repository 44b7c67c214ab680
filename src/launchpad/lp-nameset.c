/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Sorted sets of names: a team's participants, a prefix's cache keys. */

#include "launchpad-private.h"

#include <stdlib.h>
#include <string.h>

#define LP_NAME_SET_ALLOC_MIN 64

static int lp_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int lp_name_set_add(struct lp_name_set *set, const char *name, size_t len)
{
	if (set->count == set->alloc) {
		unsigned int new_alloc = set->alloc == 0 ?
			LP_NAME_SET_ALLOC_MIN : set->alloc * 2;
		char **names = realloc(set->names, new_alloc * sizeof(*names));

		if (names == NULL)
			return -1;
		set->names = names;
		set->alloc = new_alloc;
	}
	set->names[set->count] = strndup(name, len);
	if (set->names[set->count] == NULL)
		return -1;
	set->count++;
	return 0;
}

void lp_name_set_sort(struct lp_name_set *set)
{
	unsigned int i, j;

	if (set->count == 0)
		return;
	qsort(set->names, set->count, sizeof(*set->names), lp_name_cmp);
	for (i = 1, j = 1; i < set->count; i++) {
		if (strcmp(set->names[i], set->names[j - 1]) == 0)
			free(set->names[i]);
		else
			set->names[j++] = set->names[i];
	}
	set->count = j;
}

bool lp_name_set_contains(const struct lp_name_set *set, const char *name)
{
	if (set->count == 0)
		return false;
	return bsearch(&name, set->names, set->count, sizeof(*set->names),
		       lp_name_cmp) != NULL;
}

void lp_name_set_free(struct lp_name_set *set)
{
	for (unsigned int i = 0; i < set->count; i++)
		free(set->names[i]);
	free(set->names);
	set->names = NULL;
	set->count = 0;
	set->alloc = 0;
}
