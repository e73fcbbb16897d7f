/*-------------------------------------------------------------------------
 *
 * compat.h
 *		The differences between the PostgreSQL versions squadstack builds
 *		against (15, 16, 17 and 18), in one place.
 *
 * Each guard names the version that changed and what changed.  Code
 * elsewhere calls the names defined here and has no version tests of its
 * own.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_COMPAT_H
#define SQUADSTACK_COMPAT_H

#include "utils/datetime.h"

/*
 * PostgreSQL 16 gave DecodeDateTime() an eighth argument, a
 * DateTimeErrorExtra that receives the offending field of a time zone
 * error.  Callers here only need to know that a value did not parse.
 */
#if PG_VERSION_NUM >= 160000
#define squadstack_DecodeDateTime(field, ftype, nf, dtype, tm, fsec, tzp) \
	DecodeDateTime((field), (ftype), (nf), (dtype), (tm), (fsec), (tzp), \
				   &(DateTimeErrorExtra) {0})
#else
#define squadstack_DecodeDateTime(field, ftype, nf, dtype, tm, fsec, tzp) \
	DecodeDateTime((field), (ftype), (nf), (dtype), (tm), (fsec), (tzp))
#endif

#endif							/* SQUADSTACK_COMPAT_H */
