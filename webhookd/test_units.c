/*
 * Unit tests of squadstack-webhookd's pure-C parts: path parsing and
 * redaction, token buckets, settings.  make -C webhookd unit
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ratelimit.h"
#include "route.h"
#include "settings.h"

static int	failures = 0;
static int	checks = 0;

#define CHECK(cond) \
	do { \
		checks++; \
		if (!(cond)) \
		{ \
			failures++; \
			fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond); \
		} \
	} while (0)

static void
test_route(void)
{
	const char *prefix = "/squadstack/webhook";
	char		campaign[WH_CAMPAIGN_MAX + 1];
	char		secret[WH_SECRET_MAX + 1];
	char		longer[512];
	char		out[256];

	CHECK(wh_route_parse(prefix, "/squadstack/webhook/camp_1/s3cr3t", campaign, secret));
	CHECK(strcmp(campaign, "camp_1") == 0 && strcmp(secret, "s3cr3t") == 0);
	CHECK(wh_route_parse(prefix, "/squadstack/webhook/A-b_9/x/", campaign, secret));
	CHECK(strcmp(secret, "x") == 0);
	CHECK(!wh_route_parse(prefix, "/squadstack/webhook/camp_1", campaign, secret));
	CHECK(!wh_route_parse(prefix, "/squadstack/webhook/camp_1/", campaign, secret));
	CHECK(!wh_route_parse(prefix, "/squadstack/webhook/camp_1/s/x", campaign, secret));
	CHECK(!wh_route_parse(prefix, "/squadstack/webhook/camp 1/s", campaign, secret));
	CHECK(!wh_route_parse(prefix, "/squadstack/webhook//s", campaign, secret));
	CHECK(!wh_route_parse(prefix, "/squadstack/webhookX/c/s", campaign, secret));
	CHECK(!wh_route_parse(prefix, "/other/c/s", campaign, secret));
	memset(longer, 0, sizeof(longer));
	snprintf(longer, sizeof(longer), "/squadstack/webhook/%065d/s", 0);
	CHECK(!wh_route_parse(prefix, longer, campaign, secret));
	snprintf(longer, sizeof(longer), "/squadstack/webhook/%064d/s", 0);
	CHECK(wh_route_parse(prefix, longer, campaign, secret));
	snprintf(longer, sizeof(longer), "/squadstack/webhook/c/%0257d", 0);
	CHECK(!wh_route_parse(prefix, longer, campaign, secret));
	snprintf(longer, sizeof(longer), "/squadstack/webhook/c/%0256d", 0);
	CHECK(wh_route_parse(prefix, longer, campaign, secret));
	CHECK(wh_route_parse("", "/c/s", campaign, secret));

	wh_route_redact(prefix, "/squadstack/webhook/camp_1/s3cr3t", out, sizeof(out));
	CHECK(strcmp(out, "/squadstack/webhook/camp_1/***") == 0);
	wh_route_redact(prefix, "/squadstack/webhook/camp_1/s3cr3t/more", out, sizeof(out));
	CHECK(strcmp(out, "/squadstack/webhook/camp_1/***") == 0);
	wh_route_redact(prefix, "/squadstack/webhook/camp_1", out, sizeof(out));
	CHECK(strcmp(out, "/squadstack/webhook/camp_1") == 0);
	wh_route_redact(prefix, "/other/s3cr3t", out, sizeof(out));
	CHECK(strcmp(out, "/other/***") == 0);
	wh_route_redact(prefix, "/a b\n", out, sizeof(out));
	CHECK(strcmp(out, "/a%20b%0A") == 0);
	wh_route_redact(prefix, "/squadstack/webhook/camp_1/s3cr3t", out, 12);
	CHECK(strlen(out) < 12 && strstr(out, "s3cr3t") == NULL);
}

static void
test_ratelimit(void)
{
	WhRateLimiter rl;
	WhBucket	b = {2.0, 0.0};
	int			retry = 0;
	int			i;

	CHECK(wh_bucket_take(&b, 1.0, 2.0, 0.0));
	CHECK(wh_bucket_take(&b, 1.0, 2.0, 0.0));
	CHECK(!wh_bucket_take(&b, 1.0, 2.0, 0.5));
	CHECK(wh_bucket_take(&b, 1.0, 2.0, 1.0));
	/* never more than the burst after a long pause */
	CHECK(wh_bucket_take(&b, 1.0, 2.0, 100.0));
	CHECK(wh_bucket_take(&b, 1.0, 2.0, 100.0));
	CHECK(!wh_bucket_take(&b, 1.0, 2.0, 100.0));

	CHECK(wh_rate_init(&rl, 10.0, 5.0, 1.0, 2.0, 0.0));
	CHECK(wh_rate_take(&rl, "10.0.0.1", 0.0, &retry) == WH_RATE_OK);
	CHECK(wh_rate_take(&rl, "10.0.0.1", 0.0, &retry) == WH_RATE_OK);
	CHECK(wh_rate_take(&rl, "10.0.0.1", 0.0, &retry) == WH_RATE_CLIENT);
	CHECK(retry == 1);
	CHECK(wh_rate_take(&rl, "10.0.0.2", 0.0, &retry) == WH_RATE_OK);
	CHECK(wh_rate_take(&rl, "10.0.0.3", 0.0, &retry) == WH_RATE_OK);
	CHECK(wh_rate_take(&rl, "10.0.0.4", 0.0, &retry) == WH_RATE_OK);
	CHECK(wh_rate_take(&rl, "10.0.0.5", 0.0, &retry) == WH_RATE_ALL);
	wh_rate_free(&rl);

	/* many addresses: the table stays bounded and keeps working */
	CHECK(wh_rate_init(&rl, 0.0, 1.0, 1.0, 1.0, 0.0));
	for (i = 0; i < 3 * WH_CLIENT_SLOTS; i++)
	{
		char		addr[32];

		snprintf(addr, sizeof(addr), "192.0.2.%d:%d", i % 256, i);
		CHECK(wh_rate_take(&rl, addr, i * 0.001, &retry) == WH_RATE_OK);
	}
	CHECK(wh_rate_take(&rl, "192.0.2.1:1", 100.0, &retry) == WH_RATE_OK);
	CHECK(wh_rate_take(&rl, "192.0.2.1:1", 100.0, &retry) == WH_RATE_CLIENT);
	wh_rate_free(&rl);
}

static void
test_settings(void)
{
	WhSettingsState st;
	char		err[512];
	char		path[] = "/tmp/webhookd-unit-XXXXXX";
	long		v;
	int			fd;
	FILE	   *f;

	CHECK(wh_parse_bytes("64kB", &v) && v == 65536);
	CHECK(wh_parse_bytes("2 MB", &v) && v == 2 * 1024 * 1024);
	CHECK(wh_parse_bytes("100", &v) && v == 100);
	CHECK(!wh_parse_bytes("-1", &v));
	CHECK(!wh_parse_bytes("1GB", &v));
	CHECK(wh_parse_ms("2s", &v) && v == 2000);
	CHECK(wh_parse_ms("250", &v) && v == 250);
	CHECK(!wh_parse_ms("1h", &v));
	CHECK(!wh_parse_long("12x", &v));

	wh_settings_init(&st);
	CHECK(st.values.max_body == 65536 && st.values.max_connections == 4);
	CHECK(strcmp(st.values.prefix, "/squadstack/webhook") == 0);
	CHECK(!wh_settings_set(&st, "no_such", "1", WH_SOURCE_FILE, err, sizeof(err)));
	CHECK(!wh_settings_set(&st, "max_connections", "0", WH_SOURCE_FILE, err, sizeof(err)));
	CHECK(wh_settings_set(&st, "max-connections", "8", WH_SOURCE_COMMAND_LINE, err, sizeof(err)));

	fd = mkstemp(path);
	CHECK(fd >= 0);
	f = fdopen(fd, "w");
	fputs("# comment\n\n  max_connections = 2\nprefix = '/hooks/'\n"
		  "dsn = host=db password=a#b\nrate_limit=0\n", f);
	fclose(f);
	CHECK(wh_settings_read_file(&st, path, err, sizeof(err)));
	/* the command line won */
	CHECK(st.values.max_connections == 8);
	CHECK(st.values.rate_limit == 0);
	CHECK(strcmp(st.values.dsn, "host=db password=a#b") == 0);
	CHECK(wh_settings_finish(&st, err, sizeof(err)));
	CHECK(strcmp(st.values.prefix, "/hooks") == 0);
	CHECK(wh_settings_set(&st, "dsn_file", "/x", WH_SOURCE_FILE, err, sizeof(err)));
	CHECK(!wh_settings_finish(&st, err, sizeof(err)));	/* both in the file */
	CHECK(wh_settings_set(&st, "dsn_file", "/y", WH_SOURCE_COMMAND_LINE, err, sizeof(err)));
	CHECK(wh_settings_finish(&st, err, sizeof(err)));
	CHECK(st.values.dsn[0] == '\0' && strcmp(st.values.dsn_file, "/y") == 0);
	wh_settings_free(&st);

	f = fopen(path, "w");
	fputs("max_body 12\n", f);
	fclose(f);
	wh_settings_init(&st);
	CHECK(!wh_settings_read_file(&st, path, err, sizeof(err)));
	CHECK(strstr(err, ":1:") != NULL);
	wh_settings_free(&st);
	unlink(path);
}

int
main(void)
{
	test_route();
	test_ratelimit();
	test_settings();
	printf("%d passed, %d failed\n", checks - failures, failures);
	return failures ? 1 : 0;
}
