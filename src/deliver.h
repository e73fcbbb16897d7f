/*-------------------------------------------------------------------------
 *
 * deliver.h
 *		Delivering the outbox: claim, call, record (deliver.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_DELIVER_H
#define SQUADSTACK_DELIVER_H

#include "outbox.h"
#include "squadstack.h"

extern const char *squadstack_wait_text(SquadstackWait wait);
extern void squadstack_deliver(const SquadstackConfig *cfg, int max_calls,
						SquadstackDeliveryResult *result);

/* a delivering process's settings (deliver.c) */
extern void squadstack_set_delivery_session(int lock_timeout_ms);
extern bool squadstack_schema_is_current(void);

#endif							/* SQUADSTACK_DELIVER_H */
