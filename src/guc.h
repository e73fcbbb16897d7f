/*-------------------------------------------------------------------------
 *
 * guc.h
 *		Every setting of the extension (guc.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_GUC_H
#define SQUADSTACK_GUC_H

#include "http.h"
#include "squadstack.h"
#include "guc_check.h"

/* the settings (guc.c) */
extern char *squadstack_api_url;
extern char *squadstack_token;
extern int	squadstack_rate_limit;
extern int	squadstack_rate_window_ms;
extern int	squadstack_batch_size;
extern int	squadstack_request_timeout_ms;
extern int	squadstack_max_attempts;
extern int	squadstack_retry_base_ms;
extern int	squadstack_retry_max_ms;
extern int	squadstack_phone_format;
extern char *squadstack_webhook_secret;
extern char *squadstack_webhook_timezone;
extern int	squadstack_max_lead_bytes;
extern int	squadstack_max_request_bytes;
extern int	squadstack_lock_timeout_ms;
extern char *squadstack_duplicate_create_pattern;
extern char *squadstack_http_proxy;
extern char *squadstack_no_proxy;
extern char *squadstack_ca_file;
extern int	squadstack_tls_min_version;

extern void squadstack_config_from_gucs(SquadstackConfig *cfg);
/* the HTTP client's options for one call under cfg; points into cfg */
extern void squadstack_http_options(const SquadstackConfig *cfg,
									SquadstackHttpOptions *opts);

extern int	squadstack_retention_s;
extern char *squadstack_database_name;
extern char *squadstack_token_file;

extern void squadstack_define_gucs(void);
extern void squadstack_config_to_session(const SquadstackConfig *cfg);

#endif							/* SQUADSTACK_GUC_H */
