/*-------------------------------------------------------------------------
 *
 * limiter.h
 *		The rate limiter, the call log and token pauses (limiter.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_LIMITER_H
#define SQUADSTACK_LIMITER_H

#include "postgres.h"

#include "datatype/timestamp.h"

#include "http.h"
#include "squadstack.h"

/* whether a call may start now for a token, and if not, why */
typedef enum SquadstackAdmission
{
	SQUADSTACK_ADMITTED,
	SQUADSTACK_NO_RATE_SLOT,			/* the limit is used up until a slot frees */
	SQUADSTACK_TOKEN_PAUSED,			/* 429/503: paused until a time */
	SQUADSTACK_TOKEN_REFUSED			/* 401/403: paused until the token changes */
} SquadstackAdmission;

typedef struct SquadstackAdmit
{
	SquadstackAdmission result;
	int			used;			/* calls of the token within the window */
	TimestampTz until;			/* when a call may start; 0 if unknown */
} SquadstackAdmit;

extern SquadstackAdmission squadstack_admit_call(const SquadstackConfig *cfg, const char *token_id,
								   SquadstackAdmit *admit);
extern const char *squadstack_admission_wait_text(SquadstackAdmission result);
extern int64 squadstack_log_call_start(const char *token_id, const char *campaign,
								const char *op, const char *method, int n_leads);
extern void squadstack_log_call_end(int64 call_id, const SquadstackHttpResult *res,
							 const char *error);
extern void squadstack_log_call_error(int64 call_id, const char *error);
extern bool squadstack_pause_token_if_needed(const SquadstackConfig *cfg, const char *token_id,
									  const SquadstackHttpResult *res);
extern void squadstack_token_answered(const char *token_id);

/* campaigns backed off after errors in the extension itself */
extern void squadstack_campaign_backoff(const SquadstackConfig *cfg, const char *campaign,
								 const char *error);
extern void squadstack_campaign_answered(const char *campaign);

#endif							/* SQUADSTACK_LIMITER_H */
