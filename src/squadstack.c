/*-------------------------------------------------------------------------
 *
 * squadstack.c
 *		Module entry point: settings, the worker, shared memory.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "guc.h"
#include "shmem.h"
#include "worker.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(squadstack_library_version);

void		_PG_init(void);

void
_PG_init(void)
{
	squadstack_define_gucs();

	/* last: it removes placeholders of settings not defined by now */
	MarkGUCPrefixReserved("squadstack");

	if (!process_shared_preload_libraries_in_progress)
		return;

	squadstack_shmem_init();
	squadstack_worker_register();
}

/* The version of this library; the update scripts check it. */
Datum
squadstack_library_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(SQUADSTACK_VERSION));
}
