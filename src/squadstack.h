/*-------------------------------------------------------------------------
 *
 * squadstack.h
 *		Limits and types shared by the extension's source files; each
 *		module declares what it offers in a header of its own.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_H
#define SQUADSTACK_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"

#define SQUADSTACK_MAX_CAMPAIGN_LEN	64
#define SQUADSTACK_MAX_LEAD_ID_LEN		255
#define SQUADSTACK_MAX_DETAIL_LEN		32
#define SQUADSTACK_URL_MAX				1024
#define SQUADSTACK_TOKEN_MAX			1024
#define SQUADSTACK_PATTERN_MAX			256
#define SQUADSTACK_TZ_MAX				64
/* the longest text of an API answer kept as an error */
#define SQUADSTACK_MAX_ERROR_TEXT		8192

typedef enum SquadstackPhoneFormat
{
	SQUADSTACK_PHONE_E164,
	SQUADSTACK_PHONE_NATIONAL,
	SQUADSTACK_PHONE_AS_GIVEN
} SquadstackPhoneFormat;

/*
 * The settings a delivery or a job works with.  Copied from the GUCs of the
 * process that asks for it, so squadstack_flush() and
 * squadstack_sync_responses() honour their session's settings (webhook and
 * phone settings included) although a short-lived worker does the work.
 */
typedef struct SquadstackConfig
{
	char		api_url[SQUADSTACK_URL_MAX];
	char		token[SQUADSTACK_TOKEN_MAX];
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
	char		duplicate_create_pattern[SQUADSTACK_PATTERN_MAX];
	/* read where outcomes are stored and leads validated */
	char		webhook_timezone[SQUADSTACK_TZ_MAX];
	int			phone_format;	/* a SquadstackPhoneFormat */
	int			max_lead_bytes;
} SquadstackConfig;

/* one validated lead operation: its id and what is sent for it */
typedef struct SquadstackLeadOp
{
	char	   *lead_id;		/* as text, for ordering and lookups */
	Jsonb	   *payload;		/* what is sent for this lead */
} SquadstackLeadOp;


#endif							/* SQUADSTACK_H */
