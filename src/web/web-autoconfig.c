/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* The Mozilla autoconfig document ("config-v1.1.xml"), so that
   Thunderbird, K-9 Mail / Thunderbird for Android and FairEmail set
   themselves up from the address alone.  They ask, in turn,
     https://autoconfig.<domain>/mail/config-v1.1.xml?emailaddress=<addr>
     https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml
   and the shipped nginx example sends both here.  The document is the same
   for everyone: the user name is the placeholder %EMAILADDRESS% (the
   login is name@domain), nothing from the request is echoed back, and it
   needs no session.  The domain asked for (the emailaddress's, else the
   Host's without "autoconfig.") must be configured: any other is a 404,
   and the client moves on to its next method.

   Settings: web_mail_host, web_imap_port, web_pop3_port and, when set,
   web_submission_port; 993, 995 and 465 are implicit TLS ("SSL"), other
   ports STARTTLS, as the page shows them. */

#include "web-private.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define WEB_AUTOCONFIG_WELL_KNOWN "/.well-known/autoconfig/mail/config-v1.1.xml"
#define WEB_AUTOCONFIG_HOST_PATH "/mail/config-v1.1.xml"
#define WEB_AUTOCONFIG_PREFIX "autoconfig."

bool web_autoconfig_path(const char *path)
{
	return strcmp(path, WEB_AUTOCONFIG_WELL_KNOWN) == 0 ||
		strcmp(path, WEB_AUTOCONFIG_HOST_PATH) == 0;
}

/* The configured domain named by text[0..len), in any case. */
static const struct lp_domain *
web_autoconfig_find(const struct lp_config *config, const char *text,
		    size_t len)
{
	char name[LP_DOMAIN_MAX + 1];

	if (len == 0 || len >= sizeof(name))
		return NULL;
	for (size_t i = 0; i < len; i++)
		name[i] = (char)tolower((unsigned char)text[i]);
	name[len] = '\0';
	return lp_config_find_domain(config, name);
}

/* The configured domain the request asks about; NULL (404) for one that
   is not served.  No hint at all: the first configured domain. */
static const struct lp_domain *
web_autoconfig_domain(struct web_request *req)
{
	const struct lp_config *config = req->server->config;
	const char *address = web_query_get(req, "emailaddress");
	const char *host = web_header_get(req, "Host");
	const struct lp_domain *domain;
	const char *at;

	if (address != NULL && address[0] != '\0') {
		at = strrchr(address, '@');
		return at == NULL ? NULL :
			web_autoconfig_find(config, at + 1, strlen(at + 1));
	}
	if (host != NULL) {
		if (strncasecmp(host, WEB_AUTOCONFIG_PREFIX,
				strlen(WEB_AUTOCONFIG_PREFIX)) == 0)
			host += strlen(WEB_AUTOCONFIG_PREFIX);
		domain = web_autoconfig_find(config, host,
					     strcspn(host, ":"));
		if (domain != NULL)
			return domain;
	}
	return config->domains_count > 0 ? &config->domains[0] : NULL;
}

static void web_autoconfig_server(struct web_request *req, const char *tag,
				  const char *type, unsigned int port,
				  unsigned int tls_port)
{
	struct web_buf *b = &req->body;

	web_buf_printf(b, "    <%s type=\"%s\">\n      <hostname>", tag, type);
	web_buf_html(b, req->server->mail_host);
	web_buf_printf(b, "</hostname>\n      <port>%u</port>\n"
		       "      <socketType>%s</socketType>\n"
		       "      <username>%%EMAILADDRESS%%</username>\n"
		       "      <authentication>password-cleartext"
		       "</authentication>\n", port,
		       port == tls_port ? "SSL" : "STARTTLS");
	web_buf_printf(b, "    </%s>\n", tag);
}

void web_autoconfig_handle(struct web_request *req)
{
	const struct lp_config *config = req->server->config;
	const struct lp_domain *domain = web_autoconfig_domain(req);
	struct web_buf *b = &req->body;

	if (domain == NULL) {
		req->status = MHD_HTTP_NOT_FOUND;
		req->content_type = "text/plain; charset=utf-8";
		web_buf_append(b, "no such mail domain here\n");
		return;
	}
	req->content_type = "application/xml; charset=utf-8";
	req->cacheable = true;
	web_buf_append(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		       "<clientConfig version=\"1.1\">\n"
		       "  <emailProvider id=\"");
	web_buf_html(b, domain->domain);
	web_buf_append(b, "\">\n");
	/* every domain served here, the one asked for first */
	web_buf_append(b, "    <domain>");
	web_buf_html(b, domain->domain);
	web_buf_append(b, "</domain>\n");
	for (unsigned int i = 0; i < config->domains_count; i++) {
		if (&config->domains[i] == domain)
			continue;
		web_buf_append(b, "    <domain>");
		web_buf_html(b, config->domains[i].domain);
		web_buf_append(b, "</domain>\n");
	}
	web_buf_append(b, "    <displayName>Ubuntu contributor mail (");
	web_buf_html(b, domain->domain);
	web_buf_append(b, ")</displayName>\n"
		       "    <displayShortName>");
	web_buf_html(b, domain->domain);
	web_buf_append(b, "</displayShortName>\n");
	web_autoconfig_server(req, "incomingServer", "imap",
			      config->web_imap_port, 993);
	web_autoconfig_server(req, "incomingServer", "pop3",
			      config->web_pop3_port, 995);
	if (config->web_submission_port != 0)
		web_autoconfig_server(req, "outgoingServer", "smtp",
				      config->web_submission_port, 465);
	if (config->web_url != NULL) {
		web_buf_append(b, "    <documentation url=\"");
		web_buf_html(b, config->web_url);
		web_buf_append(b, "/\">\n      <descr lang=\"en\">Your app "
			       "password: sign in here</descr>\n"
			       "    </documentation>\n");
	}
	web_buf_append(b, "  </emailProvider>\n</clientConfig>\n");
}
