/*-------------------------------------------------------------------------
 *
 * worker.h
 *		The background worker (worker.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_WORKER_H
#define SQUADSTACK_WORKER_H

#include "postgres.h"

extern void squadstack_worker_register(void);

#endif							/* SQUADSTACK_WORKER_H */
