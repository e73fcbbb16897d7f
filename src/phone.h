/*-------------------------------------------------------------------------
 *
 * phone.h
 *		Indian phone number normalisation (pure C, no PostgreSQL state).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_PHONE_H
#define SQUADSTACK_PHONE_H

#include <stdbool.h>
#include <stddef.h>

/* "+91" + 10 digits + NUL */
#define SQUADSTACK_PHONE_BUFSIZE 14

/*
 * Normalise an Indian phone number.  Spaces, dashes, dots and parentheses
 * are dropped, then one prefix "+91", "0091", "91" (only in front of ten
 * digits) or "0"; exactly ten digits must remain, the first not 0.
 *
 * On success writes the ten digits, NUL-terminated, to digits (at least 11
 * bytes) and returns true.
 */
extern bool squadstack_phone_normalise(const char *input, size_t len, char *digits);

#endif
