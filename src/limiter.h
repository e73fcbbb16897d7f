/*-------------------------------------------------------------------------
 *
 * limiter.h
 *		The rate limiter, the call log and token pauses (limiter.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_LIMITER_H
#define SQS_LIMITER_H

#include "postgres.h"

#include "datatype/timestamp.h"

#include "http.h"
#include "squadstack.h"

/* whether a call may start now for a token, and if not, why */
typedef enum SqsAdmission
{
	SQS_ADMITTED,
	SQS_NO_RATE_SLOT,			/* the limit is used up until a slot frees */
	SQS_TOKEN_PAUSED,			/* 429/503: paused until a time */
	SQS_TOKEN_REFUSED			/* 401/403: paused until the token changes */
} SqsAdmission;

typedef struct SqsAdmit
{
	SqsAdmission result;
	int			used;			/* calls of the token within the window */
	TimestampTz until;			/* when a call may start; 0 if unknown */
} SqsAdmit;

extern SqsAdmission sqs_admit_call(const SqsConfig *cfg, const char *token_id,
								   SqsAdmit *admit);
extern const char *sqs_admission_wait_text(SqsAdmission result);
extern int64 sqs_log_call_start(const char *token_id, const char *campaign,
								const char *op, const char *method, int n_leads);
extern void sqs_log_call_end(int64 call_id, const SqsHttpResult *res,
							 const char *error);
extern void sqs_log_call_error(int64 call_id, const char *error);
extern bool sqs_pause_token_if_needed(const SqsConfig *cfg, const char *token_id,
									  const SqsHttpResult *res);
extern void sqs_token_answered(const char *token_id);

#endif							/* SQS_LIMITER_H */
