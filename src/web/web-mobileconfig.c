/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Apple configuration profiles (.mobileconfig): an iPhone, iPad or Mac
   sets the mail account up, app password included, from one download.

   The profile must hold the device's new app password, which the server
   keeps no copy of.  So it is offered only on the page that shows that
   password (after activation, "add a device", reset) as a form whose
   hidden fields carry the password back: POST /device/profile turns
   what it is sent into the profile and forgets it.  Nothing is held in
   memory between requests, nothing reaches a URL (the password would land
   in logs and history), and the answer is an attachment with
   Cache-Control: no-store, built in a buffer wiped before it is freed.
   The form needs the session and its CSRF token like every POST; the
   account is the session's own name@domain, never taken from the form,
   so the endpoint cannot make a profile for somebody else's mailbox, and
   it learns no secret it was not just sent.

   (Rejected: a one-time download token keeping the password in memory
   for some minutes - a copy held server-side; a data: URL - Safari on
   iOS does not install a profile from one.) */

#include "web-private.h"

#include <stdio.h>
#include <string.h>
#include <sodium.h>

#define WEB_IMAPS_PORT 993
#define WEB_SUBMISSIONS_PORT 465
#define WEB_UUID_BUFSIZE 37

void web_mobileconfig_offer(struct web_request *req, const char *user,
			    const char *label, const char *password)
{
	struct web_buf *b = &req->body;
	const char *domain = strrchr(user, '@');

	if (domain == NULL)
		return;
	web_buf_append(b, "<section><h2>iPhone, iPad or Mac</h2>"
		       "<form method=\"post\" action=\"/device/profile\">");
	web_csrf_field(req);
	web_hidden(req, "domain", domain + 1);
	web_hidden(req, "label", label);
	web_hidden(req, "password", password);
	web_buf_append(b, "<p>Download a configuration profile that sets "
		       "up this mailbox with the app password above, then "
		       "open it in Settings to install it. It is offered "
		       "only now, on this page.</p>");
	if (req->server->config->web_submission_port == 0)
		web_buf_append(b, "<p class=\"muted\">This service does not "
			       "offer sending mail: the profile sets up "
			       "reading it.</p>");
	web_buf_append(b, "<p><button type=\"submit\" id=\"mobileconfig\">"
		       "Download profile (.mobileconfig)</button></p>"
		       "</form></section>");
}

static void web_uuid(char buf[WEB_UUID_BUFSIZE])
{
	unsigned char b[16];

	randombytes_buf(b, sizeof(b));
	b[6] = (b[6] & 0x0f) | 0x40;	/* version 4 */
	b[8] = (b[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
	snprintf(buf, WEB_UUID_BUFSIZE, "%02X%02X%02X%02X-%02X%02X-%02X%02X-"
		 "%02X%02X-%02X%02X%02X%02X%02X%02X", b[0], b[1], b[2], b[3],
		 b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
}

/* Printable ASCII without spaces at either end (XML 1.0 and a plist
   string take it as it is once escaped). */
static bool web_mobileconfig_text_ok(const char *text, size_t max)
{
	size_t len = strlen(text);

	if (len == 0 || len > max || text[0] == ' ' || text[len - 1] == ' ')
		return false;
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)text[i] < 0x20 ||
		    (unsigned char)text[i] > 0x7e)
			return false;
	}
	return true;
}

static void web_plist_string(struct web_buf *b, const char *key,
			     const char *value)
{
	web_buf_printf(b, "<key>%s</key><string>", key);
	web_buf_html(b, value);
	web_buf_append(b, "</string>\n");
}

static void web_plist_server(struct web_buf *b, const char *prefix,
			     unsigned int port, unsigned int tls_port)
{
	web_buf_printf(b, "<key>%sMailServerPortNumber</key>"
		       "<integer>%u</integer>\n"
		       "<key>%sMailServerUseSSL</key><%s/>\n", prefix, port,
		       prefix, port == tls_port ? "true" : "false");
}

static void web_mobileconfig_write(struct web_request *req, const char *user,
				   const char *label, const char *password)
{
	const struct lp_config *config = req->server->config;
	const char *host = req->server->mail_host;
	struct web_buf *b = &req->body;
	char uuid_mail[WEB_UUID_BUFSIZE], uuid_profile[WEB_UUID_BUFSIZE];
	char text[LP_USER_MAX + KR_LABEL_MAX + 32];

	web_uuid(uuid_mail);
	web_uuid(uuid_profile);
	web_buf_append(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		       "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" "
		       "\"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n"
		       "<plist version=\"1.0\">\n<dict>\n"
		       "<key>PayloadContent</key>\n<array>\n<dict>\n");
	web_plist_string(b, "EmailAccountDescription", user);
	web_plist_string(b, "EmailAccountName", req->session->name);
	web_plist_string(b, "EmailAccountType", "EmailTypeIMAP");
	web_plist_string(b, "EmailAddress", user);
	web_plist_string(b, "IncomingMailServerAuthentication",
			 "EmailAuthPassword");
	web_plist_string(b, "IncomingMailServerHostName", host);
	web_plist_server(b, "Incoming", config->web_imap_port,
			 WEB_IMAPS_PORT);
	web_plist_string(b, "IncomingMailServerUsername", user);
	web_plist_string(b, "IncomingPassword", password);
	web_plist_string(b, "OutgoingMailServerHostName", host);
	if (config->web_submission_port != 0) {
		web_plist_string(b, "OutgoingMailServerAuthentication",
				 "EmailAuthPassword");
		web_plist_server(b, "Outgoing", config->web_submission_port,
				 WEB_SUBMISSIONS_PORT);
		web_plist_string(b, "OutgoingMailServerUsername", user);
		web_buf_append(b, "<key>OutgoingPasswordSameAsIncomingPassword"
			       "</key><true/>\n");
	} else {
		/* the payload needs an outgoing host; sending is not
		   offered, so no credentials go with it */
		web_plist_string(b, "OutgoingMailServerAuthentication",
				 "EmailAuthNone");
	}
	snprintf(text, sizeof(text), "Mail account %s", user);
	web_plist_string(b, "PayloadDescription", text);
	web_plist_string(b, "PayloadDisplayName", user);
	snprintf(text, sizeof(text), "com.apple.mail.managed.%s", uuid_mail);
	web_plist_string(b, "PayloadIdentifier", text);
	web_plist_string(b, "PayloadType", "com.apple.mail.managed");
	web_plist_string(b, "PayloadUUID", uuid_mail);
	web_buf_append(b, "<key>PayloadVersion</key><integer>1</integer>\n"
		       "</dict>\n</array>\n");
	snprintf(text, sizeof(text), "The mailbox %s on the device \"%s\"",
		 user, label);
	web_plist_string(b, "PayloadDescription", text);
	snprintf(text, sizeof(text), "%s (%s)", user, label);
	web_plist_string(b, "PayloadDisplayName", text);
	snprintf(text, sizeof(text), "mail.%s.%s", user, uuid_profile);
	web_plist_string(b, "PayloadIdentifier", text);
	web_buf_append(b, "<key>PayloadRemovalDisallowed</key><false/>\n");
	web_plist_string(b, "PayloadType", "Configuration");
	web_plist_string(b, "PayloadUUID", uuid_profile);
	web_buf_append(b, "<key>PayloadVersion</key><integer>1</integer>\n"
		       "</dict>\n</plist>\n");
}

void web_post_mobileconfig(struct web_request *req)
{
	const char *domain_str = web_form_get(req, "domain");
	const char *label = web_form_get(req, "label");
	const char *password = web_form_get(req, "password");
	const struct lp_domain *domain;
	char user[LP_USER_MAX + 1];

	domain = domain_str == NULL ? NULL :
		lp_config_find_domain(req->server->config, domain_str);
	if (domain == NULL) {
		web_page_error(req, MHD_HTTP_FORBIDDEN, "Request refused",
			       "That mail domain is not served here.");
		return;
	}
	/* a label in another script only names the profile: it is not
	   worth checking as UTF-8 here */
	if (label == NULL || !web_mobileconfig_text_ok(label, KR_LABEL_MAX))
		label = "this device";
	if (password == NULL ||
	    !web_mobileconfig_text_ok(password, KR_PASSWORD_BUFSIZE - 1)) {
		web_page_error(req, MHD_HTTP_BAD_REQUEST, "Request refused",
			       "A profile is made from the page that shows a "
			       "new app password.");
		return;
	}
	snprintf(user, sizeof(user), "%s@%s", req->session->name,
		 domain->domain);
	req->body.secret = true;
	req->no_store = true;
	req->content_type = "application/x-apple-aspen-config";
	snprintf(req->disposition, sizeof(req->disposition),
		 "attachment; filename=\"%s.mobileconfig\"", user);
	web_mobileconfig_write(req, user, label, password);
	web_log(LP_LOG_INFO, "profile: %s, device \"%s\"", user, label);
}
