/*-------------------------------------------------------------------------
 *
 * grants.h
 *		Campaign grants: which roles may use which campaigns (grants.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_GRANTS_H
#define SQUADSTACK_GRANTS_H

#include "postgres.h"

#include "squadstack.h"

/*
 * SQL that is true when the role (an oid expression) may use the campaign
 * (a text expression): it, or a role it has the privileges of, has a grant
 * of the campaign or of '*' that has not expired.  Superusers are not
 * special here: callers test for them first.  Qualify a column given as
 * campaign: the grants have a campaign_id too.
 */
#define SQUADSTACK_GRANTED_SQL(campaign, role) \
	"EXISTS (SELECT FROM squadstack.campaign_grants g" \
	" WHERE g.campaign_id IN (" campaign ", '*')" \
	" AND (g.expires_at IS NULL OR g.expires_at > pg_catalog.now())" \
	" AND pg_catalog.pg_has_role(" role ", g.role_id::pg_catalog.oid, 'USAGE'))"

/*
 * The role a SQL function of the extension acts for: the session's current
 * role (after SET ROLE), as the functions are SECURITY DEFINER.
 */
extern Oid	squadstack_calling_role(void);

/*
 * ERROR (42501) unless role may use campaign: a superuser, or a role with a
 * grant.  A grant that expires (the one the update to 0.3.0 made) works
 * with a WARNING.  Runs its query as the current user, who must be able to
 * read squadstack.campaign_grants.
 */
extern void squadstack_require_campaign(const char *campaign, Oid role);

/* whether role may use campaign, known without a query (else ask the above) */
extern bool squadstack_campaign_known(const char *campaign, Oid role);

/* 0 if role is a superuser (no campaign is closed to it), else role */
extern Oid	squadstack_restricted_role(Oid role);

extern void squadstack_grant_campaign_to(const char *campaign, Oid role);
extern void squadstack_forget_dropped_roles(void);
extern bool squadstack_revoke_campaign_from(const char *campaign, Oid role);

#endif							/* SQUADSTACK_GRANTS_H */
