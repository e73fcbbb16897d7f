/*-------------------------------------------------------------------------
 *
 * squadstack.h
 *		Declarations shared by the squadstack extension's source files.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_H
#define SQUADSTACK_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"

#define SQS_MAX_CAMPAIGN_LEN	64
#define SQS_MAX_LEAD_ID_LEN		255
#define SQS_MAX_DETAIL_LEN		32
#define SQS_URL_MAX				1024
#define SQS_TOKEN_MAX			1024

typedef enum SqsPhoneFormat
{
	SQS_PHONE_E164,
	SQS_PHONE_NATIONAL,
	SQS_PHONE_AS_GIVEN
} SqsPhoneFormat;

/*
 * The settings a sender works with.  Copied from the GUCs of the process
 * that asks for a delivery, so squadstack_flush() honours its session's
 * settings although the calls are made by a short-lived worker.
 */
typedef struct SqsConfig
{
	char		api_url[SQS_URL_MAX];
	char		token[SQS_TOKEN_MAX];
	int			rate_limit;
	int			rate_window_ms;
	int			batch_size;
	int			request_timeout_ms;
	int			max_attempts;
	int			retry_base_ms;
	int			retry_max_ms;
} SqsConfig;

/* GUC variables (squadstack.c) */
extern char *sqs_api_url;
extern char *sqs_token;
extern int	sqs_rate_limit;
extern int	sqs_rate_window_ms;
extern int	sqs_batch_size;
extern int	sqs_request_timeout_ms;
extern int	sqs_max_attempts;
extern int	sqs_retry_base_ms;
extern int	sqs_retry_max_ms;
extern int	sqs_phone_format;

extern void sqs_config_from_gucs(SqsConfig *cfg);

/* campaign and lead validation (lead.c) */
extern void sqs_check_campaign(const char *campaign);
extern char *sqs_lead_id_from_jsonb(JsonbValue *v, const char *context);

typedef struct SqsLeadOp
{
	char	   *lead_id;		/* as text, for ordering and lookups */
	Jsonb	   *payload;		/* what is sent for this lead */
} SqsLeadOp;

extern List *sqs_parse_create_leads(Jsonb *leads);
extern List *sqs_parse_disable_leads(Jsonb *lead_ids);
extern SqsLeadOp *sqs_parse_update_lead(Jsonb *lead);

/* queueing (enqueue.c) */
extern int64 sqs_enqueue(const char *campaign, const char *op, List *ops,
						 bool skip_existing);

/* access tokens (token.c) */
extern char *sqs_campaign_token(const char *campaign, const SqsConfig *cfg);
extern char *sqs_token_id(const char *token);
extern const char *sqs_token_problem(const char *token);

/* waking the background worker (shmem.c) */
extern void sqs_wake_worker_at_commit(void);

/* delivery (deliver.c); runs in a process that may commit */
typedef struct SqsDeliveryResult
{
	int			calls;			/* HTTP calls made */
	int			errors;			/* calls that did not end in 2xx */
	bool		more;			/* stopped at max_calls with work left */
	TimestampTz next_wakeup;	/* when more work may become sendable, or 0 */
	const char *waiting_for;	/* what next_wakeup waits for */
} SqsDeliveryResult;

extern void sqs_deliver(const SqsConfig *cfg, int max_calls,
						SqsDeliveryResult *result);

#endif							/* SQUADSTACK_H */
