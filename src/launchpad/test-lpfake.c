/* Copyright (c) dovecot-launchpad authors; see debian/copyright. */

#include "test-lpfake.h"

#include <dirent.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LPFAKE_START_POLL_MSECS 20
#define LPFAKE_START_TRIES 500		/* 10 s */
#define LPFAKE_MAX_ARGS 32
#define LPFAKE_CONTROL_TIMEOUT_SECS 10

time_t test_clock = 1700000000;
char test_api_url[128];
char test_dir[64];

static pid_t lpfake_pid = -1;
static char lpfake_base[64];
static char lpfake_port_file[128];

/* Removes dir, its files and (one level) its directories. */
static void test_dir_remove(const char *dir)
{
	char path[256];
	struct dirent *de;
	DIR *d = opendir(dir);

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0 ||
		    snprintf(path, sizeof(path), "%s/%s", dir,
			     de->d_name) >= (int)sizeof(path))
			continue;
		if (unlink(path) < 0)
			test_dir_remove(path);
	}
	closedir(d);
	rmdir(dir);
}

static void lpfake_stop(void)
{
	char path[sizeof(test_dir) + 32];

	if (lpfake_pid > 0) {
		kill(lpfake_pid, SIGTERM);
		waitpid(lpfake_pid, NULL, 0);
		lpfake_pid = -1;
	}
	if (test_dir[0] != '\0') {
		unlink(lpfake_port_file);
		snprintf(path, sizeof(path), "%s/cache.tdb", test_dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/web", test_dir);
		test_dir_remove(path);
		rmdir(test_dir);
	}
}

void lpfake_start(const char *const *extra_args)
{
	const char *argv[LPFAKE_MAX_ARGS];
	unsigned int argc = 0;
	FILE *f;
	int port = 0;

	strcpy(test_dir, "/tmp/lp-test-XXXXXX");
	if (mkdtemp(test_dir) == NULL) {
		perror("mkdtemp");
		exit(99);
	}
	snprintf(lpfake_port_file, sizeof(lpfake_port_file), "%s/port",
		 test_dir);
	argv[argc++] = "/usr/bin/python3";
	argv[argc++] = TOP_SRCDIR "/tests/lpfake.py";
	argv[argc++] = "--port";
	argv[argc++] = "0";
	argv[argc++] = "--port-file";
	argv[argc++] = lpfake_port_file;
	argv[argc++] = "--fixtures";
	argv[argc++] = TOP_SRCDIR "/tests/fixtures/launchpad.json";
	for (unsigned int i = 0; extra_args != NULL && extra_args[i] != NULL &&
	     argc < LPFAKE_MAX_ARGS - 1; i++)
		argv[argc++] = extra_args[i];
	argv[argc] = NULL;

	fflush(stdout);
	lpfake_pid = fork();
	if (lpfake_pid < 0) {
		perror("fork");
		exit(99);
	}
	if (lpfake_pid == 0) {
		int null_fd = open("/dev/null", O_WRONLY);

		/* never outlive the test, even one killed by ASan */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (null_fd >= 0)
			dup2(null_fd, STDOUT_FILENO);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	atexit(lpfake_stop);
	for (unsigned int i = 0; i < LPFAKE_START_TRIES && port == 0; i++) {
		struct timespec ts = {
			.tv_nsec = LPFAKE_START_POLL_MSECS * 1000000L,
		};

		if ((f = fopen(lpfake_port_file, "r")) != NULL) {
			if (fscanf(f, "%d", &port) != 1)
				port = 0;
			fclose(f);
		}
		if (port == 0)
			nanosleep(&ts, NULL);
	}
	if (port == 0) {
		printf("Bail out! lpfake.py did not start\n");
		exit(99);
	}
	snprintf(lpfake_base, sizeof(lpfake_base), "http://127.0.0.1:%d", port);
	snprintf(test_api_url, sizeof(test_api_url), "%s/1.0", lpfake_base);
}

struct lpfake_buf {
	char *data;
	size_t size;
};

static size_t lpfake_write(char *ptr, size_t size, size_t nmemb, void *context)
{
	struct lpfake_buf *buf = context;
	size_t len = size * nmemb;
	char *data = realloc(buf->data, buf->size + len + 1);

	if (data == NULL)
		return 0;
	memcpy(data + buf->size, ptr, len);
	buf->data = data;
	buf->size += len;
	buf->data[buf->size] = '\0';
	return len;
}

static long lpfake_call(const char *path, const char *post,
			struct lpfake_buf *buf)
{
	struct curl_slist *headers;
	char url[256];
	long status = -1;
	CURL *curl = curl_easy_init();

	if (curl == NULL)
		return -1;
	headers = curl_slist_append(NULL, "Content-Type: application/json");
	snprintf(url, sizeof(url), "%s%s", lpfake_base, path);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)LPFAKE_CONTROL_TIMEOUT_SECS);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, lpfake_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, buf);
	if (post != NULL) {
		curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, post);
	}
	if (curl_easy_perform(curl) == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	return status;
}

int lpfake_post(const char *path, const char *json)
{
	struct lpfake_buf buf = { .data = NULL };
	long status = lpfake_call(path, json, &buf);

	free(buf.data);
	return (int)status;
}

void lpfake_reset(void)
{
	if (lpfake_post("/_fake/reset", "{}") != 200) {
		printf("Bail out! lpfake reset failed\n");
		exit(99);
	}
}

void lpfake_fault(const char *path, const char *mode, unsigned int count,
		  double delay)
{
	char json[512], path_json[256], count_json[32];

	if (path == NULL)
		strcpy(path_json, "null");
	else
		snprintf(path_json, sizeof(path_json), "\"%s\"", path);
	if (count == 0)
		strcpy(count_json, "null");
	else
		snprintf(count_json, sizeof(count_json), "%u", count);
	snprintf(json, sizeof(json),
		 "{\"path\": %s, \"mode\": \"%s\", \"count\": %s, "
		 "\"delay\": %g}", path_json, mode, count_json, delay);
	if (lpfake_post("/_fake/fault", json) != 200) {
		printf("Bail out! lpfake fault %s failed\n", mode);
		exit(99);
	}
}

json_t *lpfake_requests(void)
{
	struct lpfake_buf buf = { .data = NULL };
	json_t *list = NULL;

	if (lpfake_call("/_fake/requests", NULL, &buf) == 200)
		list = json_loadb(buf.data, buf.size, 0, NULL);
	free(buf.data);
	if (!json_is_array(list)) {
		printf("Bail out! lpfake request log unreadable\n");
		exit(99);
	}
	return list;
}

unsigned int lpfake_count(const char *path)
{
	json_t *list = lpfake_requests(), *req;
	unsigned int count = 0;
	size_t i;

	json_array_foreach(list, i, req) {
		const char *req_path =
			json_string_value(json_object_get(req, "path"));

		if (path == NULL ||
		    (req_path != NULL && strcmp(req_path, path) == 0))
			count++;
	}
	json_decref(list);
	return count;
}

time_t test_now(void)
{
	return test_clock;
}

struct lp_config *test_config(unsigned int positive_ttl,
			      unsigned int negative_ttl,
			      unsigned int stale_grace,
			      unsigned int http_timeout)
{
	struct lp_config *config;
	struct lp_error err;
	char text[2048];

	snprintf(text, sizeof(text),
		 "api_url = %s\n"
		 "cache_path = %s/cache.tdb\n"
		 "web_state_dir = %s/web\n"
		 "home = %s/vmail/%%d/%%n\n"
		 "uid = vmail\n"
		 "gid = vmail\n"
		 "positive_ttl = %us\n"
		 "negative_ttl = %us\n"
		 "stale_grace = %us\n"
		 "http_timeout = %us\n"
		 "domain ubuntu.com = ubuntumembers\n"
		 "domain kubuntu.org = kubuntu-members\n"
		 "domain lubuntu.me = lubuntu-members\n"
		 "domain edubuntu.org = edubuntu-members\n"
		 "domain ubuntustudio.com = ubuntustudio-core\n"
		 "domain ubuntu.net = ubuntu-smtp-test\n",
		 test_api_url, test_dir, test_dir, test_dir, positive_ttl,
		 negative_ttl,
		 stale_grace, http_timeout);
	if (lp_config_parse("test.conf", text, &config, &err) < 0) {
		printf("Bail out! test config: %s\n", err.text);
		exit(99);
	}
	return config;
}

static void test_log(void *context __attribute__((unused)),
		     enum lp_log_level level, const char *msg)
{
	static const char *const names[] = {
		"debug", "info", "warning", "error",
	};

	printf("# [%s] %s\n", names[level], msg);
}

struct lp_context *test_context(const struct lp_config *config)
{
	struct lp_log log = { .fn = test_log };
	struct lp_context *ctx;
	struct lp_error err;

	if (lp_context_create(config, getenv("LP_TEST_VERBOSE") != NULL ?
			      &log : NULL, &ctx, &err) < 0) {
		printf("Bail out! lp_context_create: %s\n", err.text);
		exit(99);
	}
	ctx->now = test_now;
	return ctx;
}

void test_cache_remove(void)
{
	char path[sizeof(test_dir) + 32];

	snprintf(path, sizeof(path), "%s/cache.tdb", test_dir);
	if (unlink(path) < 0 && errno != ENOENT)
		perror("unlink");
}

int test_lpfake_main(int (*run)(void (*const tests[])(void)),
		     void (*const tests[])(void),
		     const char *const *lpfake_args, unsigned int positive_ttl,
		     unsigned int negative_ttl, unsigned int stale_grace,
		     unsigned int http_timeout, struct lp_config **config_r,
		     struct lp_context **ctx_r)
{
	int ret;

	lpfake_start(lpfake_args);
	*config_r = test_config(positive_ttl, negative_ttl, stale_grace,
				http_timeout);
	*ctx_r = test_context(*config_r);
	ret = run(tests);
	lp_context_destroy(ctx_r);
	lp_config_free(config_r);
	return ret;
}
