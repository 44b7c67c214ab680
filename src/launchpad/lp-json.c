/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "launchpad-private.h"

#include <string.h>

/* Launchpad's documents are parsed strictly: a field of the wrong type is
   an error, never a default, since a default could turn into an allow. */

static json_t *lp_json_load(const char *body, size_t size, const char *what,
			    struct lp_error *err)
{
	json_error_t jerr;
	json_t *root;

	root = json_loadb(body, size, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		lp_error_set(err, LP_ERR_PROTOCOL,
			     "%s is not JSON: line %d: %s", what, jerr.line,
			     jerr.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		lp_error_set(err, LP_ERR_PROTOCOL, "%s is not a JSON object",
			     what);
		json_decref(root);
		return NULL;
	}
	return root;
}

static int lp_json_get_bool(json_t *obj, const char *key, bool *value_r,
			    struct lp_error *err)
{
	json_t *value = json_object_get(obj, key);

	if (!json_is_boolean(value)) {
		lp_error_set(err, LP_ERR_PROTOCOL,
			     "person: \"%s\" %s", key,
			     value == NULL ? "missing" : "is not a boolean");
		return -1;
	}
	*value_r = json_is_true(value);
	return 0;
}

int lp_json_parse_person(const char *body, size_t size,
			 struct lp_person *person_r, struct lp_error *err)
{
	json_t *root, *name, *etag;
	int ret = -1;

	memset(person_r, 0, sizeof(*person_r));
	root = lp_json_load(body, size, "person", err);
	if (root == NULL)
		return -1;

	name = json_object_get(root, "name");
	if (!json_is_string(name) ||
	    json_string_length(name) > LP_NAME_MAX ||
	    json_string_length(name) != strlen(json_string_value(name))) {
		lp_error_set(err, LP_ERR_PROTOCOL,
			     "person: \"name\" missing or not a name");
		goto out;
	}
	strcpy(person_r->name, json_string_value(name));
	if (lp_json_get_bool(root, "is_valid", &person_r->is_valid, err) < 0 ||
	    lp_json_get_bool(root, "is_ubuntu_coc_signer",
			     &person_r->is_coc_signer, err) < 0 ||
	    lp_json_get_bool(root, "is_team", &person_r->is_team, err) < 0)
		goto out;

	etag = json_object_get(root, "http_etag");
	if (etag != NULL && !json_is_null(etag)) {
		if (!json_is_string(etag)) {
			lp_error_set(err, LP_ERR_PROTOCOL,
				     "person: \"http_etag\" is not a string");
			goto out;
		}
		/* an oversize etag is only a lost optimisation */
		if (json_string_length(etag) < sizeof(person_r->http_etag))
			strcpy(person_r->http_etag, json_string_value(etag));
	}
	ret = 0;
out:
	json_decref(root);
	return ret;
}

int lp_json_parse_collection(const char *body, size_t size,
			     struct lp_collection_page *page_r,
			     struct lp_error *err)
{
	json_t *root, *value, *entry;
	size_t i;

	memset(page_r, 0, sizeof(*page_r));
	root = lp_json_load(body, size, "collection", err);
	if (root == NULL)
		return -1;

	value = json_object_get(root, "total_size");
	if (json_is_integer(value) && json_integer_value(value) >= 0) {
		page_r->total_size = json_integer_value(value);
	} else if (value == NULL &&
		   json_is_string(json_object_get(root, "total_size_link"))) {
		/* lazr.restful sends a link instead of counting big sets */
		page_r->total_size = -1;
	} else {
		lp_error_set(err, LP_ERR_PROTOCOL,
			     "collection: \"total_size\" %s",
			     value == NULL ? "missing" : "is not a count");
		goto fail;
	}
	value = json_object_get(root, "start");
	if (!json_is_integer(value) || json_integer_value(value) < 0) {
		lp_error_set(err, LP_ERR_PROTOCOL,
			     "collection: \"start\" %s",
			     value == NULL ? "missing" : "is not an offset");
		goto fail;
	}
	page_r->start = json_integer_value(value);

	value = json_object_get(root, "entries");
	if (!json_is_array(value)) {
		lp_error_set(err, LP_ERR_PROTOCOL,
			     "collection: \"entries\" %s",
			     value == NULL ? "missing" : "is not an array");
		goto fail;
	}
	json_array_foreach(value, i, entry) {
		json_t *name = json_object_get(entry, "name");

		if (!json_is_object(entry) || !json_is_string(name)) {
			lp_error_set(err, LP_ERR_PROTOCOL,
				     "collection: entry %zu has no string \"name\"",
				     i);
			goto fail;
		}
	}
	page_r->entries = value;

	value = json_object_get(root, "next_collection_link");
	if (value != NULL && !json_is_null(value)) {
		if (!json_is_string(value)) {
			lp_error_set(err, LP_ERR_PROTOCOL,
				     "collection: \"next_collection_link\" "
				     "is not a string");
			goto fail;
		}
		page_r->next_link = json_string_value(value);
	}
	page_r->root = root;
	return 0;
fail:
	json_decref(root);
	memset(page_r, 0, sizeof(*page_r));
	return -1;
}
bool lp_json_time(json_t *obj, const char *field, time_t *time_r)
{
	json_t *v = json_object_get(obj, field);

	if (!json_is_integer(v))
		return false;
	*time_r = (time_t)json_integer_value(v);
	return true;
}

bool lp_json_bool(json_t *obj, const char *field, bool *value_r)
{
	json_t *v = json_object_get(obj, field);

	if (!json_is_boolean(v))
		return false;
	*value_r = json_is_true(v);
	return true;
}

bool lp_json_text(json_t *obj, const char *field, char *buf,
		  size_t size)
{
	json_t *v = json_object_get(obj, field);

	if (!json_is_string(v) || json_string_length(v) >= size)
		return false;
	memcpy(buf, json_string_value(v), json_string_length(v) + 1);
	return true;
}

