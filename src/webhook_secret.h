/*-------------------------------------------------------------------------
 *
 * webhook_secret.h
 *		Webhook secrets: their digests, and checking the one a webhook
 *		presents (webhook_secret.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_WEBHOOK_SECRET_H
#define SQUADSTACK_WEBHOOK_SECRET_H

#include "postgres.h"

/*
 * Set (secret not NULL) or remove the secret of campaign ("*": of every
 * campaign without its own).  Inside SPI.
 */
extern void squadstack_webhook_secret_set(const char *campaign, char *secret);

/*
 * Whether a webhook of campaign (NULL: a payload whose campaign is not
 * known) presenting given (NULL: none) may be stored.  Inside SPI.
 */
extern bool squadstack_webhook_secret_ok(const char *campaign, const char *given);

#endif							/* SQUADSTACK_WEBHOOK_SECRET_H */
