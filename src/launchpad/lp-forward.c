/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

/* Forwarding: a Sieve script generated into the user's home
   (LP_FORWARD_FNAME), run by Pigeonhole at LMTP as the first
   sieve_before script, so that it redirects before anything is sealed.
   The script is the only state: its first lines say what it does, so
   that `forward show` and the web page read it back.  A script holds an
   address and a rule, never mail.  Written atomically (temporary file,
   fsync, rename, fsync of the directory) by root (doveadm, chowned to the
   mail uid) or by the web daemon (the mail uid). */

#include "launchpad-private.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LP_FORWARD_MAGIC "# dovecot-launchpad forward v1 (generated: " \
	"doveadm launchpad forward, or the self-service page)\n"
#define LP_FORWARD_ADDRESS_LINE "# address: "
#define LP_FORWARD_KEEP_LINE "# keep: "
#define LP_FORWARD_SVBIN ".launchpad-forward.svbin"

/* RFC 5322 atext plus '.', which is all Launchpad's and Ubuntu One's
   addresses use; no quotes or backslashes, so the address needs no
   escaping inside a Sieve string. */
static bool lp_forward_local_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || strchr("!#$%&'*+/=?^_`{|}~.-", c);
}

static bool lp_forward_domain_is_valid(const char *domain)
{
	size_t len = strlen(domain), label = 0;
	bool dot = false;

	if (len == 0 || len > LP_DOMAIN_MAX || domain[0] == '.' ||
	    domain[len - 1] == '.' || domain[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = domain[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			dot = true;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			   (c >= '0' && c <= '9') || c == '-') {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return dot;
}

bool lp_forward_address_is_valid(const char *address)
{
	const char *at = strrchr(address, '@');
	size_t local_len;

	if (at == NULL || strlen(address) > LP_FORWARD_ADDRESS_MAX)
		return false;
	local_len = (size_t)(at - address);
	if (local_len == 0 || local_len > 64 || address[0] == '.' ||
	    at[-1] == '.')
		return false;
	for (size_t i = 0; i < local_len; i++) {
		if (!lp_forward_local_char(address[i]) ||
		    (address[i] == '.' && address[i + 1] == '.'))
			return false;
	}
	return lp_forward_domain_is_valid(at + 1);
}

int lp_forward_script(const struct lp_forward *fwd, char *buf, size_t size)
{
	int len;

	if (!lp_forward_address_is_valid(fwd->address))
		return -1;
	/* Without a copy, the redirect cancels the implicit keep and
	   Pigeonhole runs no later script (the user's own): the mail only
	   leaves.  With :copy, the user's script still decides where the
	   copy goes. */
	len = snprintf(buf, size,
		       LP_FORWARD_MAGIC
		       LP_FORWARD_ADDRESS_LINE "%s\n"
		       LP_FORWARD_KEEP_LINE "%s\n"
		       "require [\"copy\"];\n"
		       "redirect %s\"%s\";\n",
		       fwd->address, fwd->keep ? "yes" : "no",
		       fwd->keep ? ":copy " : "", fwd->address);
	if (len < 0 || (size_t)len >= size)
		return -1;
	return len;
}

/* The value of the line starting with prefix, into value_r. */
static bool lp_forward_line(const char *text, const char *prefix,
			    char *value_r, size_t size)
{
	const char *p = strstr(text, prefix), *end;
	size_t len;

	if (p == NULL || (p != text && p[-1] != '\n'))
		return false;
	p += strlen(prefix);
	end = strchr(p, '\n');
	if (end == NULL)
		return false;
	len = (size_t)(end - p);
	if (len >= size)
		return false;
	memcpy(value_r, p, len);
	value_r[len] = '\0';
	return true;
}

int lp_forward_parse(const char *text, struct lp_forward *fwd_r)
{
	char keep[8];

	memset(fwd_r, 0, sizeof(*fwd_r));
	if (strncmp(text, LP_FORWARD_MAGIC, strlen(LP_FORWARD_MAGIC)) != 0 ||
	    !lp_forward_line(text, LP_FORWARD_ADDRESS_LINE, fwd_r->address,
			     sizeof(fwd_r->address)) ||
	    !lp_forward_address_is_valid(fwd_r->address) ||
	    !lp_forward_line(text, LP_FORWARD_KEEP_LINE, keep, sizeof(keep)))
		return 0;
	if (strcmp(keep, "yes") == 0)
		fwd_r->keep = true;
	else if (strcmp(keep, "no") != 0)
		return 0;
	return 1;
}

static void lp_forward_path(const char *home, const char *fname,
			    char path_r[PATH_MAX])
{
	snprintf(path_r, PATH_MAX, "%s/%s", home, fname);
}

int lp_forward_read(const char *home, struct lp_forward *fwd_r,
		    struct lp_error *err)
{
	char path[PATH_MAX], buf[1024];
	ssize_t n;
	int fd;

	memset(fwd_r, 0, sizeof(*fwd_r));
	lp_forward_path(home, LP_FORWARD_FNAME, path);
	fd = open(path, O_RDONLY | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		lp_error_set(err, LP_ERR_INTERNAL, "open(%s) failed: %s",
			     path, strerror(errno));
		return -1;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0) {
		lp_error_set(err, LP_ERR_INTERNAL, "read(%s) failed: %s",
			     path, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	buf[n] = '\0';
	if (lp_forward_parse(buf, fwd_r) == 0) {
		lp_error_set(err, LP_ERR_CORRUPT,
			     "%s: not a forwarding script of ours", path);
		return -1;
	}
	return 1;
}

/* mkdir -p of home, each new level owned by uid:gid, 0700. */
static int lp_forward_mkhome(const char *home, uid_t uid, gid_t gid,
			     struct lp_error *err)
{
	char path[PATH_MAX];
	size_t len = strlen(home);

	if (len == 0 || len >= sizeof(path)) {
		lp_error_set(err, LP_ERR_INTERNAL, "bad home '%.64s'", home);
		return -1;
	}
	memcpy(path, home, len + 1);
	for (char *p = path + 1; ; p++) {
		bool last = *p == '\0';

		if (*p != '/' && !last)
			continue;
		*p = '\0';
		if (mkdir(path, 0700) == 0) {
			if (lchown(path, uid, gid) < 0 && geteuid() == 0) {
				lp_error_set(err, LP_ERR_INTERNAL,
					     "chown(%s) failed: %s", path,
					     strerror(errno));
				return -1;
			}
		} else if (errno != EEXIST) {
			lp_error_set(err, LP_ERR_INTERNAL,
				     "mkdir(%s) failed: %s", path,
				     strerror(errno));
			return -1;
		}
		if (last)
			break;
		*p = '/';
	}
	return 0;
}

static int lp_forward_fsync_dir(const char *dir, struct lp_error *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);

	if (fd < 0 || fsync(fd) < 0) {
		lp_error_set(err, LP_ERR_INTERNAL, "fsync(%s) failed: %s",
			     dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

int lp_forward_write(const char *home, const struct lp_forward *fwd,
		     uid_t uid, gid_t gid, struct lp_error *err)
{
	char path[PATH_MAX], tmp[PATH_MAX], svbin[PATH_MAX], text[1024];
	int fd, len;

	len = lp_forward_script(fwd, text, sizeof(text));
	if (len < 0) {
		lp_error_set(err, LP_ERR_INTERNAL,
			     "not a forwarding address: %.80s", fwd->address);
		return -1;
	}
	if (lp_forward_mkhome(home, uid, gid, err) < 0)
		return -1;
	lp_forward_path(home, LP_FORWARD_FNAME, path);
	lp_forward_path(home, LP_FORWARD_FNAME ".tmp", tmp);
	(void)unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
	if (fd < 0) {
		lp_error_set(err, LP_ERR_INTERNAL, "open(%s) failed: %s", tmp,
			     strerror(errno));
		return -1;
	}
	if (write(fd, text, (size_t)len) != len || fsync(fd) < 0 ||
	    (fchown(fd, uid, gid) < 0 && geteuid() == 0)) {
		lp_error_set(err, LP_ERR_INTERNAL, "writing %s failed: %s",
			     tmp, strerror(errno));
		close(fd);
		(void)unlink(tmp);
		return -1;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		lp_error_set(err, LP_ERR_INTERNAL, "rename(%s) failed: %s",
			     tmp, strerror(errno));
		(void)unlink(tmp);
		return -1;
	}
	/* Pigeonhole recompiles when the script is newer than its binary;
	   a rename within the same second might not look newer. */
	lp_forward_path(home, LP_FORWARD_SVBIN, svbin);
	(void)unlink(svbin);
	return lp_forward_fsync_dir(home, err);
}

int lp_forward_clear(const char *home, struct lp_error *err)
{
	char path[PATH_MAX], svbin[PATH_MAX];

	lp_forward_path(home, LP_FORWARD_FNAME, path);
	lp_forward_path(home, LP_FORWARD_SVBIN, svbin);
	if (unlink(path) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		lp_error_set(err, LP_ERR_INTERNAL, "unlink(%s) failed: %s",
			     path, strerror(errno));
		return -1;
	}
	(void)unlink(svbin);
	return lp_forward_fsync_dir(home, err) < 0 ? -1 : 1;
}
