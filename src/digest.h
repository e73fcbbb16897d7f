/*-------------------------------------------------------------------------
 *
 * digest.h
 *		SHA-256 digests of secrets (digest.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_DIGEST_H
#define SQUADSTACK_DIGEST_H

#include "postgres.h"

#include "common/sha2.h"

/* the SHA-256 digest of a NUL-terminated text into out */
extern void squadstack_sha256(const char *text, uint8 out[PG_SHA256_DIGEST_LENGTH]);

#endif							/* SQUADSTACK_DIGEST_H */
