/*-------------------------------------------------------------------------
 *
 * grants.c
 *		Campaign grants: squadstack.campaign_grants says which roles may
 *		queue for, retry, flush and read which campaigns.
 *
 * A superuser may use every campaign.  Any other role needs a grant of
 * the campaign, or of '*' (every campaign), to itself or to a role whose
 * privileges it has.  A grant with an end (expires_at) is the transitional
 * one the update to 0.3.0 gives roles that used the extension before
 * grants existed: it works until then, with a WARNING at every use.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "grants.h"
#include "spi_util.h"

/*
 * The last answer, for the transaction that asked: a sync trigger asks for
 * every row, nearly always about the same role and campaign.
 */
static struct
{
	LocalTransactionId lxid;
	Oid			role;
	char		campaign[SQUADSTACK_MAX_CAMPAIGN_LEN + 1];
} last_allowed;

Oid
squadstack_calling_role(void)
{
	return GetOuterUserId();
}

Oid
squadstack_restricted_role(Oid role)
{
	return superuser_arg(role) ? InvalidOid : role;
}

bool
squadstack_campaign_known(const char *campaign, Oid role)
{
	if (last_allowed.lxid == squadstack_my_lxid() && last_allowed.role == role &&
		strcmp(last_allowed.campaign, campaign) == 0)
		return true;
	return superuser_arg(role);
}

void
squadstack_require_campaign(const char *campaign, Oid role)
{
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		args[2];
	bool		allowed = false;
	bool		transitional = false;
	char	   *until = NULL;

	if (squadstack_campaign_known(campaign, role))
		return;

	args[0] = CStringGetTextDatum(campaign);
	args[1] = ObjectIdGetDatum(role);
	SPI_connect();
	/* a lasting grant wins over the transitional one */
	SQUADSTACK_EXEC_KEPT("SELECT g.expires_at IS NOT NULL, g.expires_at::pg_catalog.text"
						 " FROM squadstack.campaign_grants g"
						 " WHERE g.campaign_id IN ($1, '*')"
						 " AND (g.expires_at IS NULL OR g.expires_at > pg_catalog.now())"
						 " AND pg_catalog.pg_has_role($2, g.role_id::pg_catalog.oid, 'USAGE')"
						 " ORDER BY g.expires_at IS NOT NULL LIMIT 1",
						 2, argtypes, args, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		bool		isnull;

		allowed = true;
		transitional = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1, &isnull));
		if (transitional)
			until = pstrdup(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
	}
	SPI_finish();

	if (!allowed)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for campaign \"%s\"", campaign),
				 errdetail("Role \"%s\" has no grant of campaign \"%s\".",
						   GetUserNameFromId(role, false), campaign),
				 errhint("A superuser grants it with squadstack_grant_campaign().")));
	if (transitional)
		ereport(WARNING,
				(errcode(ERRCODE_WARNING_DEPRECATED_FEATURE),
				 errmsg("role \"%s\" uses campaign \"%s\" through the transitional grant of the update to 0.3.0",
						GetUserNameFromId(role, false), campaign),
				 errdetail("That grant of every campaign ends at %s.", until),
				 errhint("Grant the campaigns the role needs with squadstack_grant_campaign(), then remove the transitional grant with squadstack_revoke_campaign('*', role).")));
	else
	{
		last_allowed.lxid = squadstack_my_lxid();
		last_allowed.role = role;
		strlcpy(last_allowed.campaign, campaign, sizeof(last_allowed.campaign));
	}
}

/*
 * Remove the grants of roles that no longer exist, so that a role created
 * later with a dropped role's OID does not inherit its campaigns.  Inside
 * SPI.
 */
void
squadstack_forget_dropped_roles(void)
{
	squadstack_exec("DELETE FROM squadstack.campaign_grants g"
					" WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles r"
					"                   WHERE r.oid = g.role_id::pg_catalog.oid)",
					0, NULL, NULL, NULL, SPI_OK_DELETE);
}

void
squadstack_grant_campaign_to(const char *campaign, Oid role)
{
	Oid			argtypes[3] = {TEXTOID, OIDOID, OIDOID};
	Datum		args[3];

	last_allowed.lxid = InvalidLocalTransactionId;
	args[0] = CStringGetTextDatum(campaign);
	args[1] = ObjectIdGetDatum(role);
	args[2] = ObjectIdGetDatum(squadstack_calling_role());
	SPI_connect();
	squadstack_forget_dropped_roles();
	/* a grant replaces a transitional one: it does not end */
	squadstack_exec("INSERT INTO squadstack.campaign_grants AS g"
					" (campaign_id, role_id, granted_by)"
					" VALUES ($1, $2::pg_catalog.regrole, $3::pg_catalog.regrole)"
					" ON CONFLICT (campaign_id, role_id) DO UPDATE"
					" SET granted_by = excluded.granted_by, granted_at = pg_catalog.now(),"
					"     expires_at = NULL",
					3, argtypes, args, NULL, SPI_OK_INSERT);
	SPI_finish();
}

bool
squadstack_revoke_campaign_from(const char *campaign, Oid role)
{
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		args[2];
	bool		found;

	last_allowed.lxid = InvalidLocalTransactionId;
	args[0] = CStringGetTextDatum(campaign);
	args[1] = ObjectIdGetDatum(role);
	SPI_connect();
	squadstack_forget_dropped_roles();
	squadstack_exec("DELETE FROM squadstack.campaign_grants"
					" WHERE campaign_id = $1 AND role_id = $2::pg_catalog.regrole",
					2, argtypes, args, NULL, SPI_OK_DELETE);
	found = SPI_processed > 0;
	SPI_finish();
	return found;
}
