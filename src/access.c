/*-------------------------------------------------------------------------
 *
 * access.c
 *		SQL functions that manage access: the access tokens of campaigns,
 *		the secrets their webhooks present, and which roles may use them.
 *
 * All of them are for the extension's owner (the install script revokes
 * them from PUBLIC).  A token or secret is never echoed in any message.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "grants.h"
#include "lead.h"
#include "shmem.h"
#include "token.h"
#include "webhook_secret.h"

PG_FUNCTION_INFO_V1(squadstack_set_token);
PG_FUNCTION_INFO_V1(squadstack_set_webhook_secret);
PG_FUNCTION_INFO_V1(squadstack_grant_campaign);
PG_FUNCTION_INFO_V1(squadstack_revoke_campaign);


/*
 * squadstack_set_token(campaign, token, business): set or remove (NULL)
 * the access token of one campaign, or with campaign "*" the default
 * token; the tokens of one business (NULL: the token is one of its own)
 * share one rate budget.
 */
Datum
squadstack_set_token(PG_FUNCTION_ARGS)
{
	char	   *campaign = squadstack_campaign_arg(fcinfo, 0, true);

	SPI_connect();
	squadstack_token_set(campaign,
						 PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)),
						 PG_NARGS() < 3 || PG_ARGISNULL(2) ? NULL :
						 text_to_cstring(PG_GETARG_TEXT_PP(2)));
	SPI_finish();
	/* a new token may resume a paused campaign */
	squadstack_wake_worker_at_commit();
	PG_RETURN_VOID();
}

/*
 * squadstack_set_webhook_secret(campaign, secret): set or remove (NULL)
 * the secret webhooks of a campaign ("*": of every campaign without its
 * own) must present.  Only its digest is kept.
 */
Datum
squadstack_set_webhook_secret(PG_FUNCTION_ARGS)
{
	char	   *campaign = squadstack_campaign_arg(fcinfo, 0, true);

	SPI_connect();
	squadstack_webhook_secret_set(campaign,
								  PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)));
	SPI_finish();
	PG_RETURN_VOID();
}

/* the role argument of a grant */
static Oid
role_arg(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("role must not be null")));
	return PG_GETARG_OID(1);
}

/*
 * squadstack_grant_campaign(campaign, role): role, and the roles that have
 * its privileges, may use campaign ('*': every campaign).
 */
Datum
squadstack_grant_campaign(PG_FUNCTION_ARGS)
{
	char	   *campaign = squadstack_campaign_arg(fcinfo, 0, true);

	squadstack_grant_campaign_to(campaign, role_arg(fcinfo));
	PG_RETURN_VOID();
}

/* squadstack_revoke_campaign(campaign, role): whether there was a grant */
Datum
squadstack_revoke_campaign(PG_FUNCTION_ARGS)
{
	char	   *campaign = squadstack_campaign_arg(fcinfo, 0, true);

	PG_RETURN_BOOL(squadstack_revoke_campaign_from(campaign, role_arg(fcinfo)));
}
