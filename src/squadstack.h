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
#define SQS_PATTERN_MAX			256

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
	int			max_request_bytes;
	int			lock_timeout_ms;
	bool		linger;			/* a partial batch may wait when budget is scarce */
	char		duplicate_create_pattern[SQS_PATTERN_MAX];
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
extern char *sqs_webhook_secret;
extern char *sqs_webhook_timezone;
extern int	sqs_max_lead_bytes;
extern int	sqs_max_request_bytes;
extern int	sqs_lock_timeout_ms;
extern char *sqs_duplicate_create_pattern;

extern void sqs_config_from_gucs(SqsConfig *cfg);

/* campaign and lead validation (lead.c) */
extern void sqs_check_campaign(const char *campaign);
extern char *sqs_lead_id_from_jsonb(JsonbValue *v, const char *context);

/* one key/value pair of a lead object, as found at its top level */
typedef struct SqsLeadField
{
	char	   *key;
	JsonbValue	value;			/* scalar, or jbvBinary for a container */
} SqsLeadField;

typedef struct SqsLeadOp
{
	char	   *lead_id;		/* as text, for ordering and lookups */
	Jsonb	   *payload;		/* what is sent for this lead */
} SqsLeadOp;

extern void sqs_push_pair(JsonbParseState **state, const char *key,
						  JsonbValue *value);
extern void sqs_push_string_pair(JsonbParseState **state, const char *key,
								 const char *value);
extern List *sqs_parse_create_leads(Jsonb *leads);
extern List *sqs_parse_disable_leads(Jsonb *lead_ids);
extern SqsLeadOp *sqs_parse_update_lead(Jsonb *lead);
extern SqsLeadOp *sqs_parse_lead_fields(SqsLeadField *fields, int n, bool is_update);
extern SqsLeadOp *sqs_parse_lead_id(JsonbValue *id);
extern int	sqs_jsonb_key_cmp(const char *a, const char *b);

/* queueing (enqueue.c) */
struct _SPI_plan;
extern struct _SPI_plan *sqs_prepare_kept(const char *sql, int nargs, Oid *argtypes);
extern int64 sqs_enqueue(const char *campaign, const char *op, List *ops,
						 bool skip_existing);

/* the sync triggers' queue (intake.c) */
extern Oid	sqs_intake_relid(void);
extern void sqs_intake_insert(Oid relid, const char *campaign, const char *op,
							  const SqsLeadOp *lop);
extern void sqs_lock_intake(void);
extern uint64 sqs_absorb_intake(const char *campaign, int max);

/* access tokens (token.c) */
extern char *sqs_campaign_token(const char *campaign, const SqsConfig *cfg);
extern char *sqs_token_id(const char *token);
extern const char *sqs_token_problem(const char *token);

/* waking the background worker (shmem.c) */
extern void sqs_wake_worker_at_commit(void);
extern void sqs_note_work(const char *campaign);

/* what a delivery waits for when nothing can be sent now */
typedef enum SqsWait
{
	SQS_WAIT_WORK,
	SQS_WAIT_RETRY,
	SQS_WAIT_RATE_SLOT,
	SQS_WAIT_PAUSED_TOKEN,
	SQS_WAIT_TOKEN_CHANGE,
	SQS_WAIT_BACKOFF,
	SQS_WAIT_FULLER_BATCH,
	SQS_WAIT_ERROR
} SqsWait;

#define SQS_MAX_BLOCKED 64

/* a campaign with due work that cannot be sent before a time (0: unknown) */
typedef struct SqsBlocked
{
	char		campaign[SQS_MAX_CAMPAIGN_LEN + 1];
	TimestampTz until;
} SqsBlocked;

/* delivery (deliver.c); runs in a process that may commit */
typedef struct SqsDeliveryResult
{
	int			calls;			/* HTTP calls made */
	int			errors;			/* calls that did not end in 2xx, and failures */
	bool		more;			/* stopped at max_calls with work left */
	TimestampTz next_wakeup;	/* when more work may become sendable, or 0 */
	SqsWait		waiting_for;	/* what next_wakeup waits for */
	bool		records_pending;	/* registry updates wait for a lock */
	/* when nothing could be sent: the campaigns that wait, and until when */
	int			nblocked;
	bool		blocked_overflow;	/* more than fit in blocked[] */
	SqsBlocked	blocked[SQS_MAX_BLOCKED];
} SqsDeliveryResult;

extern const char *sqs_wait_text(SqsWait wait);
extern void sqs_deliver(const SqsConfig *cfg, int max_calls,
						SqsDeliveryResult *result);

/* a delivering process's settings (deliver.c) */
extern void sqs_set_delivery_session(int lock_timeout_ms);
extern bool sqs_schema_is_current(void);

/* API work run in a background worker for the calling session (flush.c) */
typedef enum SqsJobKind
{
	SQS_JOB_FLUSH,
	SQS_JOB_SYNC_RESPONSES
} SqsJobKind;

typedef struct SqsJob
{
	SqsJobKind	kind;
	int			max_calls;		/* flush: 0 for no limit */
	char		campaign[SQS_MAX_CAMPAIGN_LEN + 1]; /* sync_responses */
	bool		has_since;
	TimestampTz since;
} SqsJob;

extern int64 sqs_run_job(const SqsJob *job);

/* pulling outcomes from the responses endpoint (responses.c) */
extern int64 sqs_sync_responses_run(const SqsConfig *cfg, const SqsJob *job);

#include "spi_util.h"

#endif							/* SQUADSTACK_H */
