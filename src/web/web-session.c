/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Server-side sessions and pending sign-ins, in fixed-size tables.

   The browser holds only a random id; who is signed in, until when and
   the CSRF token stay here.  A pending sign-in pairs the state carried in
   OpenID's return_to with a second random value in a cookie of that
   browser, so an assertion fetched by someone else cannot be replayed
   into another browser (login CSRF).

   Pending sign-ins are bounded per client address (an IPv4 address or
   an IPv6 /64): a client's newest WEB_LOGINS_PER_CLIENT survive, and a
   full table takes room only from the client holding the most, never
   from one with a single sign-in in flight: a flood from some addresses
   cannot make everyone else's sign-in fail. */

#include "web-private.h"

#include <stdlib.h>
#include <string.h>
#include <sodium.h>

void web_token_new(char buf[WEB_TOKEN_HEX + 1])
{
	unsigned char raw[WEB_TOKEN_BYTES];

	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(buf, WEB_TOKEN_HEX + 1, raw, sizeof(raw));
	sodium_memzero(raw, sizeof(raw));
}

bool web_token_equal(const char *a, const char *b)
{
	if (a == NULL || b == NULL || strlen(a) != WEB_TOKEN_HEX ||
	    strlen(b) != WEB_TOKEN_HEX)
		return false;
	return sodium_memcmp(a, b, WEB_TOKEN_HEX) == 0;
}

struct web_session *web_session_find(struct web_server *server,
				     const char *id)
{
	time_t now = time(NULL);

	if (id == NULL || strlen(id) != WEB_TOKEN_HEX)
		return NULL;
	for (unsigned int i = 0; i < WEB_SESSIONS_MAX; i++) {
		struct web_session *session = &server->sessions[i];

		if (session->id[0] == '\0' ||
		    !web_token_equal(session->id, id))
			continue;
		if (session->expires <= now) {
			web_session_destroy(session);
			return NULL;
		}
		return session;
	}
	return NULL;
}

struct web_session *web_session_create(struct web_server *server,
				       const char *name)
{
	struct web_session *session = NULL;

	for (unsigned int i = 0; i < WEB_SESSIONS_MAX; i++) {
		struct web_session *s = &server->sessions[i];

		if (s->id[0] == '\0') {
			session = s;
			break;
		}
		/* full: the one closest to expiry goes */
		if (session == NULL || s->expires < session->expires)
			session = s;
	}
	web_session_destroy(session);
	web_token_new(session->id);
	web_token_new(session->csrf);
	snprintf(session->name, sizeof(session->name), "%s", name);
	session->expires = time(NULL) + server->config->web_session_ttl;
	return session;
}

void web_session_destroy(struct web_session *session)
{
	sodium_memzero(session, sizeof(*session));
}

static int web_login_cmp(const void *a, const void *b)
{
	const struct web_login *la = *(struct web_login *const *)a;
	const struct web_login *lb = *(struct web_login *const *)b;
	int ret = strcmp(la->client, lb->client);

	if (ret != 0)
		return ret;
	return la->expires < lb->expires ? -1 : la->expires > lb->expires;
}

/* The oldest sign-in of the client holding the most (at least two), or
   NULL if every client holds one. */
static struct web_login *web_login_victim(struct web_server *server)
{
	struct web_login **sorted, *victim = NULL;
	unsigned int i = 0, best = 1;

	sorted = calloc(WEB_LOGINS_MAX, sizeof(*sorted));
	if (sorted == NULL)
		return NULL;
	for (unsigned int n = 0; n < WEB_LOGINS_MAX; n++)
		sorted[n] = &server->logins[n];
	qsort(sorted, WEB_LOGINS_MAX, sizeof(*sorted), web_login_cmp);
	while (i < WEB_LOGINS_MAX) {
		unsigned int j = i;

		while (j < WEB_LOGINS_MAX &&
		       strcmp(sorted[j]->client, sorted[i]->client) == 0)
			j++;
		if (j - i > best) {
			best = j - i;
			victim = sorted[i];	/* the run's oldest */
		}
		i = j;
	}
	free(sorted);
	return victim;
}

struct web_login *web_login_create(struct web_server *server,
				   const char *client)
{
	struct web_login *login = NULL, *own_oldest = NULL;
	unsigned int own = 0;
	time_t now = time(NULL);

	for (unsigned int i = 0; i < WEB_LOGINS_MAX; i++) {
		struct web_login *l = &server->logins[i];

		if (l->state[0] == '\0' || l->expires <= now) {
			if (login == NULL)
				login = l;
			continue;
		}
		if (strcmp(l->client, client) != 0)
			continue;
		own++;
		if (own_oldest == NULL || l->expires < own_oldest->expires)
			own_oldest = l;
	}
	if (own >= WEB_LOGINS_PER_CLIENT)
		login = own_oldest;
	else if (login == NULL)
		login = web_login_victim(server);
	if (login == NULL)
		return NULL;
	sodium_memzero(login, sizeof(*login));
	web_token_new(login->state);
	web_token_new(login->browser);
	snprintf(login->client, sizeof(login->client), "%s", client);
	login->expires = now + WEB_LOGIN_TTL_SECS;
	return login;
}

bool web_login_take(struct web_server *server, const char *state,
		    const char *browser)
{
	time_t now = time(NULL);

	if (state == NULL || browser == NULL)
		return false;
	for (unsigned int i = 0; i < WEB_LOGINS_MAX; i++) {
		struct web_login *login = &server->logins[i];

		if (login->state[0] == '\0' ||
		    !web_token_equal(login->state, state))
			continue;
		/* single use, whatever the outcome */
		bool ok = web_token_equal(login->browser, browser) &&
			login->expires > now;

		sodium_memzero(login, sizeof(*login));
		return ok;
	}
	return false;
}

void web_session_prune(struct web_server *server)
{
	time_t now = time(NULL);

	for (unsigned int i = 0; i < WEB_SESSIONS_MAX; i++) {
		if (server->sessions[i].id[0] != '\0' &&
		    server->sessions[i].expires <= now)
			web_session_destroy(&server->sessions[i]);
	}
	for (unsigned int i = 0; i < WEB_LOGINS_MAX; i++) {
		if (server->logins[i].state[0] != '\0' &&
		    server->logins[i].expires <= now)
			sodium_memzero(&server->logins[i],
				       sizeof(server->logins[i]));
	}
}
