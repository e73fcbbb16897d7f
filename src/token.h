/*-------------------------------------------------------------------------
 *
 * token.h
 *		Access tokens: lookup and digest (token.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_TOKEN_H
#define SQUADSTACK_TOKEN_H

#include "squadstack.h"

/* access tokens (token.c) */
extern char *squadstack_campaign_token(const char *campaign, const SquadstackConfig *cfg);
extern char *squadstack_token_id(const char *token);
extern void squadstack_token_set(const char *campaign, char *token, const char *business);
extern char *squadstack_token_budget(const char *token_id);

#endif							/* SQUADSTACK_TOKEN_H */
