/*-------------------------------------------------------------------------
 *
 * settings.h
 *		squadstack-webhookd's settings: defaults, the configuration file
 *		and the command line.
 *
 * Pure C with no server state, so that it can be tested alone.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WH_SETTINGS_H
#define WH_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct WhSettings
{
	char	   *listen;			/* HOST:PORT */
	char	   *dsn;			/* libpq connection string, may be empty */
	char	   *dsn_file;		/* file holding the connection string */
	char	   *prefix;			/* path prefix, no trailing slash */
	char	   *client_address_header;	/* header naming the client, or "" */
	long		max_body;		/* bytes */
	long		max_connections;	/* database connections */
	long		pool_wait;		/* ms to wait for a free connection */
	long		connect_timeout;	/* s, libpq's connect_timeout */
	long		statement_timeout;	/* ms */
	long		rate_limit;		/* requests per second in all, 0 = none */
	long		rate_burst;
	long		client_rate_limit;	/* per client address, 0 = none */
	long		client_rate_burst;
	long		http_connections;	/* open HTTP connections at most */
	long		request_timeout;	/* s an HTTP connection may be idle */
	long		shutdown_timeout;	/* ms to finish requests at shutdown */
} WhSettings;

/* where a value came from; a later source wins */
typedef enum WhSource
{
	WH_SOURCE_DEFAULT = 0,
	WH_SOURCE_FILE,
	WH_SOURCE_COMMAND_LINE
} WhSource;

typedef struct WhSettingsState
{
	WhSettings	values;
	WhSource	source[32];		/* per entry of the settings table */
} WhSettingsState;

extern void wh_settings_init(WhSettingsState *state);
extern void wh_settings_free(WhSettingsState *state);

/*
 * Set "name" (a configuration file key; dashes are taken as underscores)
 * to "value".  Returns false with a message in errbuf when the name is
 * unknown or the value invalid.
 */
extern bool wh_settings_set(WhSettingsState *state, const char *name,
							const char *value, WhSource source,
							char *errbuf, size_t errlen);

/* read a configuration file of "key = value" lines */
extern bool wh_settings_read_file(WhSettingsState *state, const char *path,
								  char *errbuf, size_t errlen);

/* checks that need every value; decides between dsn and dsn_file */
extern bool wh_settings_finish(WhSettingsState *state,
							   char *errbuf, size_t errlen);

/* print the settings table for --help */
extern void wh_settings_usage(FILE *out);

/* whether a command-line option takes a value (known setting) */
extern bool wh_settings_known(const char *name);

/* parse helpers, exposed for the unit tests */
extern bool wh_parse_long(const char *value, long *result);
extern bool wh_parse_bytes(const char *value, long *result);
extern bool wh_parse_ms(const char *value, long *result);

#endif							/* WH_SETTINGS_H */
