/*-------------------------------------------------------------------------
 *
 * guc.h
 *		Every setting of the extension (guc.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_GUC_H
#define SQS_GUC_H

#include "squadstack.h"

/* the settings (guc.c) */
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

extern int	sqs_retention_s;
extern char *sqs_database_name;

extern void sqs_define_gucs(void);

/* why a token is not fit for an HTTP header, or NULL */
extern const char *sqs_token_problem(const char *token);

#endif							/* SQS_GUC_H */
