/*-------------------------------------------------------------------------
 *
 * writeback.c
 *		Outcomes written back into CRM tables: squadstack_writeback(),
 *		squadstack_drop_writeback(), and applying them to an outcome.
 *
 * A write-back maps outcome fields to columns of a user's table, in the
 * style of squadstack_sync_trigger()'s arguments:
 *
 *	 'id=lead_id', 'outcome=lead_outcome', 'interest=lead_responses.interest'
 *
 * The first names the key column, which matches lead_id.  Each applied
 * outcome of the campaign updates the row with that key (or, with
 * 'on_missing=insert', inserts one when there is none), converting each
 * value to the column's type as an explicit cast would.  It runs as the
 * table's owner, with privilege checks, and with the search_path of the
 * session that defined it, never as the extension's owner.
 *
 * Definitions live in squadstack.writebacks; the mapping is checked
 * against the table (writeback_map.c) when it is defined and again when it
 * is applied, so a column dropped since is reported then.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "grants.h"
#include "lead.h"
#include "spi_util.h"
#include "writeback.h"
#include "writeback_map.h"

PG_FUNCTION_INFO_V1(squadstack_writeback);
PG_FUNCTION_INFO_V1(squadstack_drop_writeback);


static Oid
check_table(Oid relid, Oid role)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Form_pg_class cls;
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table with OID %u does not exist", relid)));
	cls = (Form_pg_class) GETSTRUCT(tup);
	if (cls->relkind != RELKIND_RELATION && cls->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", NameStr(cls->relname))));
	if (OidIsValid(role) && !has_privs_of_role(role, cls->relowner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", NameStr(cls->relname)),
				 errdetail("Outcomes are written back as the table's owner.")));
	owner = cls->relowner;
	ReleaseSysCache(tup);
	return owner;
}


static void
writeback_context(void *arg)
{
	errcontext("write-back of an outcome into table %s", (const char *) arg);
}

/* Apply one write-back to an outcome, as the table's owner. */
static void
apply_one(const SquadstackOutcome *o, SquadstackWriteback *wb, const char *search_path)
{
	Oid		   *types = palloc(sizeof(Oid) * wb->n);
	Datum	   *values = palloc(sizeof(Datum) * wb->n);
	char	   *nulls = palloc(wb->n + 1);
	HeapTuple	tup;
	Oid			owner;
	SquadstackRunAs	ctx;
	ErrorContextCallback errcallback;

	squadstack_writeback_params(wb, o, types, values, nulls);

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(wb->relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", wb->relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	errcallback.callback = writeback_context;
	errcallback.arg = wb->table;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	squadstack_run_as(owner, search_path, &ctx);
	if (SPI_execute_with_args(squadstack_writeback_update_sql(wb), wb->n, types, values, nulls,
							  false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not write an outcome back");
	if (SPI_processed == 0 && wb->insert_missing &&
		SPI_execute_with_args(squadstack_writeback_insert_sql(wb), wb->n, types, values, nulls,
							  false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write an outcome back");
	squadstack_end_run_as(&ctx);

	error_context_stack = errcallback.previous;
}

/*
 * Write an applied outcome into every write-back of its campaign.  Runs in
 * the webhook's apply step, inside its subtransaction: an error here fails
 * the apply, which keeps the payload as apply_failed.
 */
void
squadstack_writeback_apply(const SquadstackOutcome *o)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	SPITupleTable *defs;
	uint64		n;
	uint64		i;

	SPI_connect();
	args[0] = CStringGetTextDatum(o->campaign_id);
	/*
	 * A write-back whose table's owner may no longer use the campaign (its
	 * grant revoked or expired) is skipped: it never fails the apply, so
	 * that it cannot hold back the campaign's outcomes.
	 */
	squadstack_exec("SELECT w.target::oid, w.mapping, w.search_path"
			 " FROM squadstack.writebacks w"
			 " JOIN pg_catalog.pg_class c ON c.oid = w.target::pg_catalog.oid"
			 " WHERE w.campaign_id = $1"
			 "   AND (EXISTS (SELECT FROM pg_catalog.pg_roles r"
			 "                WHERE r.oid = c.relowner AND r.rolsuper)"
			 "        OR " SQUADSTACK_GRANTED_SQL("w.campaign_id", "c.relowner") ")"
			 " ORDER BY w.created_at, w.target::oid",
			 1, argtypes, args, NULL, SPI_OK_SELECT);
	defs = SPI_tuptable;
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(defs->vals[i], defs->tupdesc, 1, &isnull));
		ArrayType  *mapping = DatumGetArrayTypeP(SPI_getbinval(defs->vals[i], defs->tupdesc, 2, &isnull));
		char	   *search_path = SPI_getvalue(defs->vals[i], defs->tupdesc, 3);
		Datum	   *items;
		int			nitems;

		deconstruct_array_builtin(mapping, TEXTOID, &items, NULL, &nitems);
		apply_one(o, squadstack_writeback_parse(relid, items, nitems), search_path);
	}
	SPI_finish();
}

/*
 * ERROR unless the calling role, and the role the outcomes are written as
 * (owner, if valid), may use campaign.  The functions run as their caller;
 * the grants are read as the extension's owner.
 */
static void
require_campaign(const char *campaign, Oid owner, FunctionCallInfo fcinfo)
{
	Oid			role = squadstack_calling_role();
	SquadstackRunAs ctx;

	squadstack_run_as(squadstack_function_owner(fcinfo->flinfo->fn_oid), "pg_catalog, pg_temp", &ctx);
	squadstack_require_campaign(campaign, role);
	if (OidIsValid(owner) && owner != role)
		squadstack_require_campaign(campaign, owner);
	squadstack_end_run_as(&ctx);
}

/*
 * squadstack_writeback(campaign, target, VARIADIC mapping): define (or
 * replace) the write-back of a campaign's outcomes into target.  The
 * caller must own target.  Runs as the caller, and stores the definition
 * as the function's owner.
 */
Datum
squadstack_writeback(PG_FUNCTION_ARGS)
{
	char	   *campaign;
	Oid			relid;
	ArrayType  *mapping;
	Datum	   *items;
	bool	   *item_nulls;
	int			nitems;
	int			i;
	const char *search_path = GetConfigOption("search_path", false, false);
	Oid			argtypes[5] = {TEXTOID, OIDOID, TEXTARRAYOID, TEXTOID, OIDOID};
	Datum		args[5];
	SquadstackRunAs	ctx;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("campaign, target and mapping must not be null")));
	campaign = text_to_cstring(PG_GETARG_TEXT_PP(0));
	squadstack_check_campaign(campaign);
	relid = PG_GETARG_OID(1);
	mapping = PG_GETARG_ARRAYTYPE_P(2);
	deconstruct_array_builtin(mapping, TEXTOID, &items, &item_nulls, &nitems);
	for (i = 0; i < nitems; i++)
		if (item_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a write-back mapping must not be null")));

	/* the caller and the table's owner, who the outcomes are written as */
	require_campaign(campaign, check_table(relid, GetUserId()), fcinfo);
	/* checked now, and again whenever it is applied */
	(void) squadstack_writeback_parse(relid, items, nitems);

	args[0] = CStringGetTextDatum(campaign);
	args[1] = ObjectIdGetDatum(relid);
	args[2] = PointerGetDatum(mapping);
	args[3] = CStringGetTextDatum(search_path ? search_path : "");
	args[4] = ObjectIdGetDatum(GetUserId());
	SPI_connect();
	squadstack_run_as(squadstack_function_owner(fcinfo->flinfo->fn_oid), "pg_catalog, pg_temp", &ctx);
	squadstack_exec("INSERT INTO squadstack.writebacks AS w"
			 " (campaign_id, target, mapping, search_path, defined_by)"
			 " VALUES ($1, $2::regclass, $3, $4, $5::regrole)"
			 " ON CONFLICT (campaign_id, target) DO UPDATE SET"
			 "  mapping = excluded.mapping, search_path = excluded.search_path,"
			 "  defined_by = excluded.defined_by, created_at = now()",
			 5, argtypes, args, NULL, SPI_OK_INSERT);
	squadstack_end_run_as(&ctx);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * squadstack_drop_writeback(campaign, target): remove a write-back; true
 * if there was one.  The caller must own target.
 */
Datum
squadstack_drop_writeback(PG_FUNCTION_ARGS)
{
	char	   *campaign;
	Oid			relid;
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		args[2];
	SquadstackRunAs	ctx;
	bool		dropped;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("campaign and target must not be null")));
	campaign = text_to_cstring(PG_GETARG_TEXT_PP(0));
	squadstack_check_campaign(campaign);
	require_campaign(campaign, InvalidOid, fcinfo);
	relid = PG_GETARG_OID(1);
	check_table(relid, GetUserId());

	args[0] = CStringGetTextDatum(campaign);
	args[1] = ObjectIdGetDatum(relid);
	SPI_connect();
	squadstack_run_as(squadstack_function_owner(fcinfo->flinfo->fn_oid), "pg_catalog, pg_temp", &ctx);
	squadstack_exec("DELETE FROM squadstack.writebacks WHERE campaign_id = $1 AND target = $2::regclass",
			 2, argtypes, args, NULL, SPI_OK_DELETE);
	dropped = SPI_processed > 0;
	squadstack_end_run_as(&ctx);
	SPI_finish();
	PG_RETURN_BOOL(dropped);
}
