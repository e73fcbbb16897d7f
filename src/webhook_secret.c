/*-------------------------------------------------------------------------
 *
 * webhook_secret.c
 *		squadstack.webhook_secrets: the secret a campaign's webhooks must
 *		present, kept as a SHA-256 digest only, and the check of the one a
 *		webhook presents.
 *
 * The secret itself is never stored and never appears in a message.  The
 * deprecated setting squadstack.webhook_secret is the last default.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "digest.h"
#include "guc.h"
#include "spi_util.h"
#include "webhook_secret.h"

/* Compare a secret with an expected digest, in constant time. */
static bool
digest_matches(const char *given, const uint8 *expected)
{
	uint8		a[PG_SHA256_DIGEST_LENGTH];
	uint8		diff = 0;
	int			i;

	squadstack_sha256(given, a);
	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		diff |= a[i] ^ expected[i];
	return diff == 0;
}

/*
 * The digest of the secret a webhook for campaign (NULL: a payload whose
 * campaign is not known) must present, into digest; false if none is
 * required.  The campaign's own secret, else the default ("*", else the
 * deprecated squadstack.webhook_secret).  A payload of no known campaign
 * needs the default, and is refused (true with no digest that can match)
 * when there is none but some campaign has a secret.  Inside SPI.
 */
static bool
expected_secret(const char *campaign, uint8 *digest, bool *any_match)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	char		nulls[1] = {' '};
	bool		found_own = false;
	bool		found_all = false;
	bool		others = false;
	uint64		i;

	*any_match = true;
	if (campaign != NULL)
		args[0] = CStringGetTextDatum(campaign);
	else
		nulls[0] = 'n';
	squadstack_exec("SELECT campaign_id, secret_digest,"
					" EXISTS (SELECT FROM squadstack.webhook_secrets)"
					" FROM pg_catalog.generate_series(1, 1)"
					" LEFT JOIN squadstack.webhook_secrets"
					"   ON campaign_id = $1 OR campaign_id = '*'",
					1, argtypes, args, nulls, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *c = SPI_getvalue(tup, td, 1);
		Datum		d;

		others = DatumGetBool(SPI_getbinval(tup, td, 3, &isnull));
		if (c == NULL)
			continue;
		d = SPI_getbinval(tup, td, 2, &isnull);
		if (isnull || VARSIZE_ANY_EXHDR(DatumGetByteaPP(d)) != PG_SHA256_DIGEST_LENGTH)
			continue;
		if (strcmp(c, "*") == 0)
		{
			if (found_own)
				continue;
			found_all = true;
		}
		else
			found_own = true;
		memcpy(digest, VARDATA_ANY(DatumGetByteaPP(d)), PG_SHA256_DIGEST_LENGTH);
	}
	if (found_own || found_all)
		return true;
	if (squadstack_webhook_secret != NULL && squadstack_webhook_secret[0] != '\0')
	{
		squadstack_sha256(squadstack_webhook_secret, digest);
		return true;
	}
	if (campaign == NULL && others)
	{
		*any_match = false;
		return true;
	}
	return false;
}

void
squadstack_webhook_secret_set(const char *campaign, char *secret)
{
	Datum		args[2];
	Oid			argtypes[2] = {TEXTOID, BYTEAOID};

	args[0] = CStringGetTextDatum(campaign);
	if (secret == NULL)
		squadstack_exec("DELETE FROM squadstack.webhook_secrets WHERE campaign_id = $1",
						1, argtypes, args, NULL, SPI_OK_DELETE);
	else
	{
		bytea	   *d = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);

		if (secret[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid webhook secret for campaign \"%s\"", campaign),
					 errdetail("A secret is not empty; use NULL to remove a campaign's secret.")));
		SET_VARSIZE(d, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
		squadstack_sha256(secret, (uint8 *) VARDATA(d));
		explicit_bzero(secret, strlen(secret));
		args[1] = PointerGetDatum(d);
		squadstack_exec("INSERT INTO squadstack.webhook_secrets AS s (campaign_id, secret_digest)"
						" VALUES ($1, $2) ON CONFLICT (campaign_id)"
						" DO UPDATE SET secret_digest = excluded.secret_digest, updated_at = now()",
						2, argtypes, args, NULL, SPI_OK_INSERT);
	}
}

bool
squadstack_webhook_secret_ok(const char *campaign, const char *given)
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	bool		any_match;

	if (!expected_secret(campaign, digest, &any_match))
		return true;
	return given != NULL && any_match && digest_matches(given, digest);
}
