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
#include "utils/guc.h"

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

/*
 * PostgreSQL 17 moved the backend's local transaction id into
 * PGPROC.vxid (a VirtualTransactionId).
 */
#if PG_VERSION_NUM >= 170000
#define squadstack_my_lxid() (MyProc->vxid.lxid)
#else
#define squadstack_my_lxid() (MyProc->lxid)
#endif

/*
 * PostgreSQL 16 keeps GUC values and their "extra" data in a memory
 * context: a check hook's extra must come from guc_malloc(), since
 * PostgreSQL releases it with guc_free(), which is pfree() (a malloc'd
 * chunk makes it fail with "pfree called with invalid pointer").  Before
 * 16 an extra is malloc'd and released with free().  Either allocator
 * returns NULL when out of memory (guc_malloc logs it at LOG).
 */
#if PG_VERSION_NUM >= 160000
#define squadstack_guc_malloc(size) guc_malloc(LOG, (size))
#define squadstack_guc_free(ptr) guc_free(ptr)
#else
#define squadstack_guc_malloc(size) malloc(size)
#define squadstack_guc_free(ptr) free(ptr)
#endif

#endif							/* SQUADSTACK_COMPAT_H */
