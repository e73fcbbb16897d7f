/*-------------------------------------------------------------------------
 *
 * guc_check.h
 *		The check and assign hooks of the settings (guc_check.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_GUC_CHECK_H
#define SQUADSTACK_GUC_CHECK_H

#include "postgres.h"

#include "utils/guc.h"

#include "squadstack.h"
#include "token_file.h"

extern bool squadstack_check_api_url(char **newval, void **extra, GucSource source);
extern bool squadstack_check_token(char **newval, void **extra, GucSource source);
extern bool squadstack_check_webhook_secret(char **newval, void **extra, GucSource source);
extern bool squadstack_check_token_file(char **newval, void **extra, GucSource source);
extern void squadstack_assign_token_file(const char *newval, void *extra);
extern bool squadstack_check_http_proxy(char **newval, void **extra, GucSource source);
extern bool squadstack_check_no_proxy(char **newval, void **extra, GucSource source);
extern bool squadstack_check_ca_file(char **newval, void **extra, GucSource source);
extern bool squadstack_check_webhook_timezone(char **newval, void **extra, GucSource source);
extern bool squadstack_check_duplicate_pattern(char **newval, void **extra, GucSource source);

/* the token squadstack.token_file names for campaign ("*": default), or NULL */
extern const char *squadstack_file_token(const char *campaign);
/*
 * The business the i-th entry of squadstack.token_file gives its token (""
 * if none), with its token; NULL after the last.  What this reads changes
 * when squadstack_file_generation() does.
 */
extern const char *squadstack_file_business(int i, const char **token);
extern uint64 squadstack_file_generation(void);

#endif							/* SQUADSTACK_GUC_CHECK_H */
