/*-------------------------------------------------------------------------
 *
 * phone.c
 *		Indian phone number normalisation.
 *
 * Kept free of PostgreSQL state so it can be tested on its own.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "phone.h"

/* long enough for any prefix plus ten digits */
#define PHONE_SCRATCH 16

bool
squadstack_phone_normalise(const char *input, size_t len, char *digits)
{
	char		buf[PHONE_SCRATCH];
	size_t		n = 0;
	const char *p;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		char		c = input[i];

		if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' ||
			c == '\t')
			continue;
		/* '+' is accepted only as the first character, as in "+91" */
		if (!((c >= '0' && c <= '9') || (c == '+' && n == 0)))
			return false;
		if (n >= sizeof(buf) - 1)
			return false;
		buf[n++] = c;
	}
	buf[n] = '\0';

	p = buf;
	if (n == 13 && strncmp(buf, "+91", 3) == 0)
		p = buf + 3;
	else if (n == 14 && strncmp(buf, "0091", 4) == 0)
		p = buf + 4;
	else if (n == 12 && strncmp(buf, "91", 2) == 0)
		p = buf + 2;
	else if (n == 11 && buf[0] == '0')
		p = buf + 1;

	if (strlen(p) != 10 || p[0] == '0')
		return false;
	for (i = 0; i < 10; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;

	memcpy(digits, p, 10);
	digits[10] = '\0';
	return true;
}
