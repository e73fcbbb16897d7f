/*-------------------------------------------------------------------------
 *
 * token_file.h
 *		Access tokens read from squadstack.token_file (token_file.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_TOKEN_FILE_H
#define SQUADSTACK_TOKEN_FILE_H

#include "squadstack.h"

/* the campaign that stands for every campaign: the default token */
#define SQUADSTACK_ALL_CAMPAIGNS "*"

/* the longest business name, in bytes */
#define SQUADSTACK_BUSINESS_MAX 63

/* why a token is not fit for an HTTP header, or NULL */
extern const char *squadstack_token_problem(const char *token);

/* why a business name cannot be used, or NULL */
extern const char *squadstack_business_problem(const char *business);

typedef struct SquadstackTokenFile SquadstackTokenFile;

/*
 * Read and check path into a SquadstackTokenFile allocated as a GUC's extra
 * must be (squadstack_guc_malloc, compat.h); on failure NULL,
 * with why in problem (which never quotes a token).  An empty path gives an
 * empty set.
 */
extern SquadstackTokenFile *squadstack_token_file_read(const char *path,
														 char *problem, size_t problem_len);
/* the token the file names for campaign ("*": the default), or NULL */
extern const char *squadstack_token_file_lookup(const SquadstackTokenFile *tf,
												const char *campaign);

/*
 * The business the file's i-th entry (from 0) gives its token ("" if none),
 * its token into *token; NULL after the last entry.
 */
extern const char *squadstack_token_file_business(const SquadstackTokenFile *tf, int i,
												  const char **token);

#endif							/* SQUADSTACK_TOKEN_FILE_H */
