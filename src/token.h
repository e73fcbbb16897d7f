/*-------------------------------------------------------------------------
 *
 * token.h
 *		Access tokens: lookup and digest (token.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_TOKEN_H
#define SQS_TOKEN_H

#include "squadstack.h"

/* access tokens (token.c) */
extern char *sqs_campaign_token(const char *campaign, const SqsConfig *cfg);
extern char *sqs_token_id(const char *token);

#endif							/* SQS_TOKEN_H */
