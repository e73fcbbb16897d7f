/*
 * Unit tests for phone number normalisation and the backoff and limiter
 * arithmetic.
 */
#include <stdio.h>
#include <string.h>

#include "backoff.h"
#include "phone.h"

static int	passed = 0;
static int	failed = 0;

static void
check(int ok, const char *what)
{
	if (ok)
		passed++;
	else
	{
		failed++;
		printf("FAIL: %s\n", what);
	}
}

static void
phone_ok(const char *in, const char *want)
{
	char		out[SQUADSTACK_PHONE_BUFSIZE];
	char		what[128];

	snprintf(what, sizeof(what), "phone \"%s\" -> %s", in, want);
	check(squadstack_phone_normalise(in, strlen(in), out) && strcmp(out, want) == 0, what);
}

static void
phone_bad(const char *in)
{
	char		out[SQUADSTACK_PHONE_BUFSIZE];
	char		what[128];

	snprintf(what, sizeof(what), "phone \"%s\" rejected", in);
	check(!squadstack_phone_normalise(in, strlen(in), out), what);
}

int
main(void)
{
	int			i;

	phone_ok("9876543210", "9876543210");
	phone_ok("098765 43210", "9876543210");
	phone_ok("+91 98765-43210", "9876543210");
	phone_ok("+919876543210", "9876543210");
	phone_ok("0091 (98765) 43210", "9876543210");
	phone_ok("91.98765.43210", "9876543210");
	phone_ok("919876543210", "9876543210");
	phone_ok("9123456789", "9123456789");	/* 10 digits starting 91: no prefix */
	phone_ok("1123456789", "1123456789");	/* a Delhi landline */
	phone_ok("011 2345 6789", "1123456789");

	phone_bad("");
	phone_bad("12345");
	phone_bad("0123456789");	/* first digit 0 */
	phone_bad("98765432101");	/* 11 digits, no 0 prefix */
	phone_bad("+1 987 654 3210");
	phone_bad("+91 0 98765 43210"); /* two prefixes */
	phone_bad("00910 9876543210");
	phone_bad("98765x43210");
	phone_bad("9876+543210");
	phone_bad("++919876543210");
	phone_bad("919876543210123456789");
	phone_bad("+91");

	/* backoff: within [0, cap], cap doubling up to max */
	check(squadstack_backoff_ms(1, 1000, 3600000, 0.0) == 0, "backoff lower bound");
	check(squadstack_backoff_ms(1, 1000, 3600000, 0.999999) <= 1000, "backoff first cap");
	check(squadstack_backoff_ms(3, 1000, 3600000, 0.999999) <= 4000 &&
		  squadstack_backoff_ms(3, 1000, 3600000, 0.999999) > 3990, "backoff third cap");
	check(squadstack_backoff_ms(1000, 1000, 3600000, 0.999999) <= 3600000, "backoff max");
	check(squadstack_backoff_ms(1000, 1000, 3600000, 0.999999) > 3590000, "backoff reaches max");
	check(squadstack_backoff_ms(0, 1000, 3600000, 0.5) <= 1000, "backoff attempt 0");
	check(squadstack_backoff_ms(5, 1000, 3600000, 2.0) <= 16000, "backoff clamps rnd");
	for (i = 1; i < 64; i++)
		check(squadstack_backoff_ms(i, 86400000, 86400000, 0.999999) <= 86400000, "backoff no overflow");

	/* the limiter's window margin keeps >= 97% of the budget usable */
	check(squadstack_window_with_margin_ms(60000) > 60000, "margin positive");
	check(60000.0 / squadstack_window_with_margin_ms(60000) >= 0.97, "margin 60 s");
	check(2000.0 / squadstack_window_with_margin_ms(2000) >= 0.97, "margin 2 s");
	check(squadstack_window_with_margin_ms(2000) >= 2050, "margin at least 50 ms");

	/* Retry-After in seconds */
	check(squadstack_retry_after_seconds_ms("120") == 120000, "retry-after 120");
	check(squadstack_retry_after_seconds_ms(" 0 ") == 0, "retry-after 0");
	check(squadstack_retry_after_seconds_ms("Wed, 21 Oct 2015 07:28:00 GMT") == -1, "retry-after date is not seconds");
	check(squadstack_retry_after_seconds_ms("1.5") == -1, "retry-after fraction");
	check(squadstack_retry_after_seconds_ms("") == -1, "retry-after empty");
	check(squadstack_retry_after_seconds_ms("99999999999999999999") == 86400LL * 7 * 1000, "retry-after capped");

	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
