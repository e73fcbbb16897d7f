/*-------------------------------------------------------------------------
 *
 * lead_list.c
 *		A call's leads, validated one at a time into the arrays its
 *		queueing statement takes (lead ids as text[], payloads as jsonb[]),
 *		built in place, with duplicate lead ids found by a small hash table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/pg_type_d.h"
#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "lead.h"
#include "lead_list.h"
#include "lead_text.h"

/*
 * A one-dimensional array without NULLs being filled one element at a
 * time: its final form from the start, so no element is copied twice.
 */
typedef struct ArrayBuf
{
	char	   *data;			/* an ArrayType, header filled at the end */
	Size		len;			/* bytes used */
	Size		cap;			/* bytes allocated */
	int			n;				/* elements */
} ArrayBuf;

/* a lead_id seen earlier in the same call, found by its bytes */
typedef struct SeenLead
{
	uint32		offset;			/* of its text in the lead_ids array */
	uint32		hash;
	int32		position;
	char		status;
} SeenLead;

static inline uint32 seen_hash_key(void *ids, uint32 offset);
static inline bool seen_equal(void *ids, uint32 a, uint32 b);

#define SH_PREFIX			seen
#define SH_ELEMENT_TYPE		SeenLead
#define SH_KEY_TYPE			uint32
#define SH_KEY				offset
#define SH_HASH_KEY(tb, key)	seen_hash_key((tb)->private_data, key)
#define SH_EQUAL(tb, a, b)	seen_equal((tb)->private_data, a, b)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)	((a)->hash)
#define SH_SCOPE			static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/*
 * Arrays filled in place.  The capacity given is a guess: memory allocated
 * but never written costs nothing, and growing copies.
 */
static void
abuf_init(ArrayBuf *b, Size cap)
{
	b->len = ARR_OVERHEAD_NONULLS(1);
	b->cap = Min(Max(cap, b->len + 256), MaxAllocSize);
	b->data = palloc(b->cap);
	memset(b->data, 0, b->len);
	b->n = 0;
}

/* Make room for an element of size bytes; returns where it goes. */
static char *
abuf_reserve(ArrayBuf *b, Size size)
{
	Size		need = INTALIGN(b->len + size);
	char	   *at;

	if (need > b->cap)
	{
		Size		cap = Max(need, b->cap * 2);

		if (need > MaxAllocSize)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("the leads of one call are too large"),
					 errdetail("Their lead ids or payloads together exceed %zu bytes.",
							   (Size) MaxAllocSize),
					 errhint("Queue the leads in several calls.")));
		b->cap = Min(cap, MaxAllocSize);
		b->data = repalloc(b->data, b->cap);
	}
	at = b->data + b->len;
	/* the alignment padding, zeroed as construct_array() leaves it */
	memset(at + size, 0, need - b->len - size);
	b->len = need;
	b->n++;
	return at;
}

/* Append a varlena with a 4-byte header (a jsonb that was just built). */
static void
abuf_add(ArrayBuf *b, const struct varlena *v)
{
	Size		size = VARSIZE(v);

	memcpy(abuf_reserve(b, size), v, size);
}

/* Append a C string as text; returns its offset. */
static uint32
abuf_add_text(ArrayBuf *b, const char *s)
{
	Size		len = strlen(s);
	char	   *at = abuf_reserve(b, VARHDRSZ + len);

	SET_VARSIZE(at, VARHDRSZ + len);
	memcpy(at + VARHDRSZ, s, len);
	return (uint32) (at - b->data);
}

static Datum
abuf_finish(ArrayBuf *b, Oid elemtype)
{
	ArrayType  *a = (ArrayType *) b->data;

	if (b->n == 0)
		return PointerGetDatum(construct_empty_array(elemtype));
	SET_VARSIZE(a, b->len);
	a->ndim = 1;
	a->dataoffset = 0;
	a->elemtype = elemtype;
	ARR_DIMS(a)[0] = b->n;
	ARR_LBOUND(a)[0] = 1;
	return PointerGetDatum(a);
}

static inline uint32
seen_hash_key(void *ids, uint32 offset)
{
	const char *t = ((ArrayBuf *) ids)->data + offset;

	return hash_bytes((const unsigned char *) VARDATA(t), VARSIZE(t) - VARHDRSZ);
}

static inline bool
seen_equal(void *ids, uint32 a, uint32 b)
{
	const char *data = ((ArrayBuf *) ids)->data;
	const char *ta = data + a;
	const char *tb = data + b;

	return VARSIZE(ta) == VARSIZE(tb) &&
		memcmp(VARDATA(ta), VARDATA(tb), VARSIZE(ta) - VARHDRSZ) == 0;
}

/*
 * Walk the leads argument: an array of elements or one element.  fn
 * validates each, given its 1-based position, and returns its lead_id and
 * payload, which go into the arrays the queueing statement takes.
 *
 * Everything fn allocates lives in a context reset after each lead, so a
 * call's memory is its input, the two arrays and a small hash table of the
 * lead ids, whatever the leads' validation needs on the way.
 */
typedef SquadstackLeadOp *(*lead_elem_fn) (JsonbValue *elem, int pos);

static void
add_lead(ArrayBuf *ids, ArrayBuf *payloads,
		 seen_hash *seen, MemoryContext lead_cxt, lead_elem_fn fn,
		 JsonbValue *elem, int pos)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(lead_cxt);
	SquadstackLeadOp  *op = fn(elem, pos);
	uint32		offset;

	MemoryContextSwitchTo(oldcxt);
	offset = abuf_add_text(ids, op->lead_id);
	if (seen != NULL)
	{
		bool		found;
		SeenLead   *e = seen_insert(seen, offset, &found);

		if (found)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("duplicate lead_id \"%s\" at positions %d and %d",
							op->lead_id, e->position, pos),
					 errdetail("A lead_id may appear only once in one call.")));
		e->position = pos;
	}
	abuf_add(payloads, (struct varlena *) op->payload);
	MemoryContextReset(lead_cxt);
}

static SquadstackLeadArrays *
parse_lead_list(Jsonb *leads, const char *argname, bool scalars_ok,
				lead_elem_fn fn)
{
	SquadstackLeadArrays *out = palloc0(sizeof(SquadstackLeadArrays));
	MemoryContext lead_cxt;
	ArrayBuf	ids;
	ArrayBuf	payloads;
	seen_hash  *seen = NULL;
	JsonbValue	v;
	int			count = 1;
	int			pos = 0;

	if (JB_ROOT_IS_SCALAR(leads))
	{
		if (!scalars_ok)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must be a JSON array or object, not a JSON %s",
							argname, squadstack_jsonb_root_type_name(leads))));
	}
	else if (JB_ROOT_IS_ARRAY(leads))
	{
		count = JsonContainerSize(&leads->root);
		if (count == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must not be an empty array", argname)));
	}

	lead_cxt = AllocSetContextCreate(CurrentMemoryContext, "squadstack lead",
									 ALLOCSET_DEFAULT_SIZES);
	/* a payload is about as large as its lead in the input */
	abuf_init(&ids, (Size) count * 16);
	abuf_init(&payloads, VARSIZE(leads) + (Size) count * 16);

	if (JB_ROOT_IS_SCALAR(leads))
	{
		JsonbExtractScalar(&leads->root, &v);
		add_lead(&ids, &payloads, NULL, lead_cxt, fn, &v, 1);
	}
	else if (JB_ROOT_IS_OBJECT(leads))
	{
		v.type = jbvBinary;
		v.val.binary.data = &leads->root;
		v.val.binary.len = VARSIZE(leads) - VARHDRSZ;
		add_lead(&ids, &payloads, NULL, lead_cxt, fn, &v, 1);
	}
	else
	{
		JsonbIterator *it = JsonbIteratorInit(&leads->root);
		JsonbIteratorToken tok;

		seen = seen_create(CurrentMemoryContext, count, &ids);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			CHECK_FOR_INTERRUPTS();
			if (tok != WJB_ELEM)
				continue;
			pos++;
			add_lead(&ids, &payloads, seen, lead_cxt, fn, &v, pos);
		}
		seen_destroy(seen);
	}
	MemoryContextDelete(lead_cxt);

	out->n = ids.n;
	out->lead_ids = abuf_finish(&ids, TEXTOID);
	out->payloads = abuf_finish(&payloads, JSONBOID);
	return out;
}

static SquadstackLeadOp *
create_elem(JsonbValue *elem, int pos)
{
	return squadstack_parse_lead(squadstack_lead_object(elem, pos), pos, false);
}

SquadstackLeadArrays *
squadstack_parse_create_leads(Jsonb *leads)
{
	return parse_lead_list(leads, "leads", false, create_elem);
}

SquadstackLeadArrays *
squadstack_parse_disable_leads(Jsonb *lead_ids)
{
	return parse_lead_list(lead_ids, "lead_ids", true, squadstack_parse_disable_elem);
}

