/*-------------------------------------------------------------------------
 *
 * intake.c
 *		The sync triggers' queue: squadstack.intake.
 *
 * A sync trigger queues one operation per CRM row inside the CRM
 * statement, so whatever that costs, every write to the CRM table pays.
 * The trigger therefore does not write the outbox, whose indexes and lead
 * registry a delivery needs, but appends the operation to
 * squadstack.intake: a table without indexes, written here with the table
 * access method directly, without an executor or a plan.  Its ids come
 * from the outbox's sequence, so operations keep one order whichever way
 * they were queued.
 *
 * Whoever delivers moves a campaign's oldest operations from the intake
 * into the outbox when it is about to make a call for that campaign, a
 * bounded number at a time, under a lock that serialises claims.  While no
 * call can be made (the rate limit is used up, the token is paused) the
 * intake is left alone, so a CRM write then costs one row and its index
 * entry, not a second indexed write.  A lead's operation in the outbox is
 * held back while an earlier one of the same lead is still in the intake
 * (deliver.c), so the order per lead holds.  The move touches no row but
 * the intake's and the new outbox rows, so it never waits for a user's
 * transaction; the lead registry learns of a trigger's create when its
 * call is answered, and skip_existing looks for unsent creates in the
 * intake and the outbox meanwhile (enqueue.c).
 *
 * No privilege on the intake is checked when writing it: the caller is the
 * extension's own trigger, acting for the extension as a SECURITY DEFINER
 * function would.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_class_d.h"
#include "catalog/pg_type_d.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "nodes/execnodes.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "intake.h"
#include "shmem.h"
#include "spi_util.h"

/* squadstack.intake's columns, as the extension script creates them */
enum
{
	INTAKE_ID = 1,
	INTAKE_CAMPAIGN_ID,
	INTAKE_LEAD_ID,
	INTAKE_OP,
	INTAKE_PAYLOAD,
	INTAKE_CREATED_AT,
	INTAKE_NATTS = INTAKE_CREATED_AT
};

static const struct
{
	const char *name;
	Oid			basetype;
}			intake_columns[INTAKE_NATTS] = {
	{"id", INT8OID},
	{"campaign_id", TEXTOID},
	{"lead_id", TEXTOID},
	{"op", TEXTOID},
	{"payload", JSONBOID},
	{"created_at", TIMESTAMPTZOID},
};

/*
 * The intake's and the sequence's OIDs, looked up once per backend and
 * forgotten when the intake's relcache entry is invalidated (also by DROP
 * EXTENSION, ALTER TABLE and VACUUM; looking up again is cheap).
 */
static bool intake_valid = false;
static bool callback_registered = false;
static Oid	intake_relid = InvalidOid;
static Oid	intake_seqid = InvalidOid;
/* counts invalidations, so that one during the lookup is not lost */
static uint64 intake_invals = 0;

static void
intake_relcache_callback(Datum arg, Oid relid)
{
	intake_invals++;
	if (relid == InvalidOid || relid == intake_relid)
		intake_valid = false;
}

/* The table must have the columns this file writes, in this order. */
static void
check_intake_columns(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TupleDesc	tupdesc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < INTAKE_NATTS; i++)
	{
		Form_pg_attribute att;

		if (i >= tupdesc->natts)
			elog(ERROR, "table squadstack.intake has no column \"%s\"",
				 intake_columns[i].name);
		att = TupleDescAttr(tupdesc, i);
		if (att->attisdropped ||
			strcmp(NameStr(att->attname), intake_columns[i].name) != 0 ||
			getBaseType(att->atttypid) != intake_columns[i].basetype)
			elog(ERROR, "column %d of table squadstack.intake is not \"%s\" as expected",
				 i + 1, intake_columns[i].name);
	}
	table_close(rel, AccessShareLock);
}

/*
 * squadstack.intake's OID, or InvalidOid where the extension's schema is
 * older than this library (the intake came with version 0.2.0): callers
 * then queue to the outbox as before.
 */
Oid
squadstack_intake_relid(void)
{
	Oid			nsp;
	Oid			relid;
	uint64		invals = intake_invals;

	if (intake_valid)
		return intake_relid;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(intake_relcache_callback, (Datum) 0);
		callback_registered = true;
	}

	nsp = get_namespace_oid("squadstack", false);
	relid = get_relname_relid("intake", nsp);
	intake_relid = relid;
	if (!OidIsValid(relid))
		return InvalidOid;		/* not cached: the update may come any time */

	intake_seqid = get_relname_relid("outbox_id_seq", nsp);
	if (!OidIsValid(intake_seqid) || get_rel_relkind(intake_seqid) != RELKIND_SEQUENCE)
		elog(ERROR, "sequence squadstack.outbox_id_seq does not exist");
	check_intake_columns(relid);

	/* after an invalidation during the lookup, look again next time */
	intake_valid = (invals == intake_invals);
	return relid;
}

/*
 * The intake's indexes, built once per backend like the OIDs above: their
 * IndexInfo is the same for every row, and building it costs a good part
 * of what a row costs.  Forgotten at any invalidation of the intake.
 */
static MemoryContext index_cxt = NULL;
static int	nindexes = -1;
static Oid *index_oids = NULL;
static IndexInfo **index_infos = NULL;
static uint64 index_invals = 0;

static void
load_indexes(Relation rel)
{
	List	   *indexes;
	ListCell   *lc;
	MemoryContext old;
	int			i = 0;

	if (index_cxt == NULL)
		index_cxt = AllocSetContextCreate(CacheMemoryContext, "squadstack intake indexes",
										  ALLOCSET_SMALL_SIZES);
	MemoryContextReset(index_cxt);
	nindexes = -1;
	indexes = RelationGetIndexList(rel);
	old = MemoryContextSwitchTo(index_cxt);
	index_oids = palloc(sizeof(Oid) * Max(list_length(indexes), 1));
	index_infos = palloc(sizeof(IndexInfo *) * Max(list_length(indexes), 1));
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		IndexInfo  *info = BuildIndexInfo(index);

		if (info->ii_Expressions != NIL || info->ii_Predicate != NIL)
			elog(ERROR, "index \"%s\" of squadstack.intake has expressions",
				 RelationGetRelationName(index));
		index_oids[i] = lfirst_oid(lc);
		index_infos[i] = info;
		i++;
		index_close(index, AccessShareLock);
	}
	MemoryContextSwitchTo(old);
	list_free(indexes);
	nindexes = i;
	index_invals = intake_invals;
}

/*
 * Add the index entries of a row written with table_tuple_insert(), as
 * the executor would: the intake's indexes are plain column indexes.
 */
static void
insert_index_entries(Relation rel, TupleTableSlot *slot)
{
	int			i;

	if (nindexes < 0 || index_invals != intake_invals)
		load_indexes(rel);
	for (i = 0; i < nindexes; i++)
	{
		Relation	index = index_open(index_oids[i], RowExclusiveLock);
		Datum		values[INDEX_MAX_KEYS];
		bool		isnull[INDEX_MAX_KEYS];

		FormIndexDatum(index_infos[i], slot, NULL, values, isnull);
		index_insert(index, values, isnull, &slot->tts_tid, rel,
					 UNIQUE_CHECK_NO, false, index_infos[i]);
		index_close(index, NoLock);
	}
}

/*
 * Append one validated operation to squadstack.intake in the current
 * transaction: what INSERT INTO squadstack.intake VALUES (nextval(...),
 * ...) would do, without parsing, planning or starting an executor.
 */
void
squadstack_intake_insert(Oid relid, const char *campaign, SquadstackOp op,
				  const SquadstackLeadOp *lop)
{
	Relation	rel = table_open(relid, RowExclusiveLock);
	TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(rel),
													table_slot_callbacks(rel));
	Datum	   *values = slot->tts_values;
	bool	   *isnull = slot->tts_isnull;
	int			i;

	ExecClearTuple(slot);
	for (i = 0; i < slot->tts_tupleDescriptor->natts; i++)
	{
		values[i] = (Datum) 0;
		isnull[i] = true;		/* columns added after these stay NULL */
	}
	for (i = 0; i < INTAKE_NATTS; i++)
		isnull[i] = false;
	values[INTAKE_ID - 1] = Int64GetDatum(nextval_internal(intake_seqid, false));
	values[INTAKE_CAMPAIGN_ID - 1] = CStringGetTextDatum(campaign);
	values[INTAKE_LEAD_ID - 1] = CStringGetTextDatum(lop->lead_id);
	values[INTAKE_OP - 1] = CStringGetTextDatum(squadstack_op_name(op));
	values[INTAKE_PAYLOAD - 1] = JsonbPGetDatum(lop->payload);
	values[INTAKE_CREATED_AT - 1] =
		TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	ExecStoreVirtualTuple(slot);

	table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);
	if (rel->rd_rel->relhasindex)
		insert_index_entries(rel, slot);

	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	squadstack_note_work(campaign);
}

/*
 * Take the lock that serialises claims: on the intake as an object, which
 * no table lock conflicts with, held until commit.  A claim therefore
 * never sees a lead's later operation in the outbox while an earlier one
 * is still on its way there in another claim's transaction.
 */
void
squadstack_lock_intake(void)
{
	Oid			relid = squadstack_intake_relid();

	if (OidIsValid(relid))
		LockDatabaseObject(RelationRelationId, relid, 0, ExclusiveLock);
}

/*
 * Move a campaign's oldest operations, at most max of them, from the
 * intake into the outbox, keeping ids.  Runs in a claim's transaction,
 * inside SPI, after squadstack_lock_intake().  Returns the number moved.
 */
uint64
squadstack_absorb_intake(const char *campaign, int max)
{
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		args[2];
	bool		isnull;

	if (!OidIsValid(squadstack_intake_relid()))
		return 0;
	args[0] = CStringGetTextDatum(campaign);
	args[1] = Int32GetDatum(max);
	SQUADSTACK_EXEC_KEPT("WITH moved AS ("
			 "  DELETE FROM squadstack.intake WHERE ctid = ANY (ARRAY("
			 "    SELECT ctid FROM squadstack.intake WHERE campaign_id = $1"
			 "    ORDER BY id LIMIT $2))"
			 "  RETURNING *),"
			 "queued AS ("
			 "  INSERT INTO squadstack.outbox"
			 "    (id, campaign_id, lead_id, op, payload, created_at, next_attempt_at)"
			 "  OVERRIDING SYSTEM VALUE"
			 "  SELECT id, campaign_id, lead_id, op, payload, created_at, created_at"
			 "  FROM moved ORDER BY id"
			 "  RETURNING 1) "
			 "SELECT count(*) FROM queued",
			 2, argtypes, args, NULL, SPI_OK_SELECT);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									   &isnull));
}
