/*-------------------------------------------------------------------------
 *
 * webhookd.c
 *		squadstack-webhookd: receives SquadStack's "lead processed"
 *		webhooks over HTTP and stores them with squadstack_receive_webhook().
 *
 *	squadstack-webhookd --listen HOST:PORT --dsn CONNINFO [--config FILE]
 *
 * A standalone program: it talks to PostgreSQL as an ordinary client, over
 * a small pool of libpq connections, and never runs inside the server.
 * The main thread only reads the settings, starts the HTTP server and then
 * waits for SIGTERM or SIGINT; libmicrohttpd's threads serve the requests.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "libpq-fe.h"

#include "pool.h"
#include "ratelimit.h"
#include "server.h"
#include "settings.h"
#include "version.h"
#include "wlog.h"

#define PROGRAM_NAME "squadstack-webhookd"

static void
usage(FILE *out)
{
	fprintf(out,
			"%s receives SquadStack's \"lead processed\" webhooks and stores them\n"
			"with squadstack_receive_webhook().\n\n"
			"Usage:\n"
			"  %s --listen HOST:PORT --dsn CONNINFO [--config FILE] [OPTION...]\n\n"
			"Options (each also a key of the configuration file, with _ for -;\n"
			"the command line wins over the file):\n"
			"  %-25s %s\n",
			PROGRAM_NAME, PROGRAM_NAME, "--config FILE",
			"read settings from FILE (\"key = value\" lines)");
	wh_settings_usage(out);
	fprintf(out,
			"  %-25s %s\n  %-25s %s\n\n"
			"It answers POST PREFIX/{campaign}/{secret}; the connection string may\n"
			"also come from libpq's PG* environment variables.\n",
			"--help", "show this help and exit",
			"--version", "show the version and exit");
}

/* the connection string from a file: its content, trailing space removed */
static char *
read_dsn_file(const char *path)
{
	FILE	   *f = fopen(path, "r");
	char	   *buf;
	size_t		len;

	if (f == NULL)
	{
		wh_log(WH_FATAL, "could not open dsn_file \"%s\": %s", path,
			   strerror(errno));
		return NULL;
	}
	buf = malloc(65536);
	if (buf == NULL)
	{
		fclose(f);
		wh_log(WH_FATAL, "out of memory");
		return NULL;
	}
	len = fread(buf, 1, 65535, f);
	if (ferror(f) || !feof(f))
	{
		wh_log(WH_FATAL, "could not read dsn_file \"%s\"%s", path,
			   ferror(f) ? "" : ": longer than 64 kB");
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
					   buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	buf[len] = '\0';
	return buf;
}

/* HOST:PORT or [IPV6]:PORT into an address to bind */
static struct addrinfo *
resolve_listen(const char *listen)
{
	char		host[256];
	const char *port;
	struct addrinfo hints;
	struct addrinfo *result = NULL;
	int			rc;

	if (listen[0] == '[')
	{
		const char *close = strchr(listen, ']');

		if (close == NULL || close[1] != ':' ||
			(size_t) (close - listen - 1) >= sizeof(host))
			goto bad;
		memcpy(host, listen + 1, close - listen - 1);
		host[close - listen - 1] = '\0';
		port = close + 2;
	}
	else
	{
		const char *colon = strrchr(listen, ':');

		if (colon == NULL || (size_t) (colon - listen) >= sizeof(host))
			goto bad;
		memcpy(host, listen, colon - listen);
		host[colon - listen] = '\0';
		port = colon + 1;
	}
	if (host[0] == '\0' || port[0] == '\0')
		goto bad;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &result);
	if (rc != 0)
	{
		wh_log(WH_FATAL, "could not resolve listen address \"%s\": %s",
			   listen, gai_strerror(rc));
		return NULL;
	}
	return result;

bad:
	wh_log(WH_FATAL, "invalid listen address \"%s\" (expected HOST:PORT or [IPV6]:PORT)",
		   listen);
	return NULL;
}

/* --name=value or --name value */
static bool
parse_arguments(int argc, char **argv, WhSettingsState *state)
{
	char		errbuf[512];
	const char *config = NULL;
	int			pass;
	int			i;

	/* the file first, so that options given before --config still win */
	for (pass = 0; pass < 2; pass++)
	{
		for (i = 1; i < argc; i++)
		{
			const char *arg = argv[i];
			char		name[64];
			const char *value;
			const char *eq;

			if (strncmp(arg, "--", 2) != 0)
			{
				fprintf(stderr, "%s: unexpected argument \"%s\"\n",
						PROGRAM_NAME, arg);
				return false;
			}
			arg += 2;
			eq = strchr(arg, '=');
			if ((eq ? (size_t) (eq - arg) : strlen(arg)) >= sizeof(name))
			{
				fprintf(stderr, "%s: unknown option \"%s\"\n", PROGRAM_NAME, argv[i]);
				return false;
			}
			if (eq)
			{
				memcpy(name, arg, eq - arg);
				name[eq - arg] = '\0';
				value = eq + 1;
			}
			else
			{
				strcpy(name, arg);
				if (i + 1 >= argc)
				{
					fprintf(stderr, "%s: option \"--%s\" needs a value\n",
							PROGRAM_NAME, name);
					return false;
				}
				value = argv[++i];
			}
			if (strcmp(name, "config") == 0)
			{
				config = value;
				continue;
			}
			if (pass == 0)
			{
				if (!wh_settings_known(name))
				{
					fprintf(stderr, "%s: unknown option \"--%s\"\nTry \"%s --help\".\n",
							PROGRAM_NAME, name, PROGRAM_NAME);
					return false;
				}
				continue;
			}
			if (!wh_settings_set(state, name, value, WH_SOURCE_COMMAND_LINE,
								 errbuf, sizeof(errbuf)))
			{
				fprintf(stderr, "%s: %s\n", PROGRAM_NAME, errbuf);
				return false;
			}
		}
		if (pass == 0 && config != NULL &&
			!wh_settings_read_file(state, config, errbuf, sizeof(errbuf)))
		{
			fprintf(stderr, "%s: %s\n", PROGRAM_NAME, errbuf);
			return false;
		}
	}
	if (!wh_settings_finish(state, errbuf, sizeof(errbuf)))
	{
		fprintf(stderr, "%s: %s\n", PROGRAM_NAME, errbuf);
		return false;
	}
	return true;
}

static double
monotonic_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	WhSettingsState state;
	WhSettings *s = &state.values;
	char	   *conninfo;
	struct addrinfo *addr;
	WhPool	   *pool;
	WhPoolConn	pc;
	WhRateLimiter limiter;
	WhServer   *server;
	sigset_t	sigs;
	int			i;
	int			sig;

	for (i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
		{
			usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0)
		{
			printf("%s %s\n", PROGRAM_NAME, SQUADSTACK_VERSION);
			return 0;
		}
	}

	wh_settings_init(&state);
	if (!parse_arguments(argc, argv, &state))
	{
		wh_settings_free(&state);
		return 2;
	}

	if (!PQisthreadsafe())
	{
		wh_log(WH_FATAL, "this libpq is not thread-safe");
		wh_settings_free(&state);
		return 1;
	}
	conninfo = s->dsn_file[0] ? read_dsn_file(s->dsn_file) : strdup(s->dsn);
	if (conninfo == NULL)
	{
		wh_settings_free(&state);
		return 1;
	}
	addr = resolve_listen(s->listen);
	if (addr == NULL)
	{
		free(conninfo);
		wh_settings_free(&state);
		return 1;
	}

	pool = wh_pool_create((int) s->max_connections, conninfo,
						  s->connect_timeout, s->statement_timeout);
	memset(conninfo, 0, strlen(conninfo));
	free(conninfo);
	if (pool == NULL ||
		!wh_rate_init(&limiter, (double) s->rate_limit, (double) s->rate_burst,
					  (double) s->client_rate_limit,
					  (double) s->client_rate_burst, monotonic_now()))
	{
		wh_log(WH_FATAL, "out of memory");
		return 1;
	}

	/*
	 * Signals are taken by sigwait() in this thread alone: block them before
	 * libmicrohttpd starts its threads, which inherit the mask.
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0)
	{
		wh_log(WH_FATAL, "could not block signals");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);

	server = wh_server_start(s, pool, &limiter, addr->ai_addr);
	if (server == NULL)
	{
		wh_log(WH_FATAL, "could not listen on %s", s->listen);
		freeaddrinfo(addr);
		wh_pool_destroy(pool);
		wh_rate_free(&limiter);
		wh_settings_free(&state);
		return 1;
	}
	freeaddrinfo(addr);
	wh_log(WH_LOG, "%s %s listening on %s (port %d), path %s/{campaign}/{secret}",
		   PROGRAM_NAME, SQUADSTACK_VERSION, s->listen, wh_server_port(server),
		   s->prefix);

	/* connect once now, so that a wrong connection string shows at start */
	switch (wh_pool_acquire(pool, s->pool_wait, &pc))
	{
		case WH_POOL_OK:
			wh_pool_release(pool, &pc, false);
			wh_log(WH_LOG, "connected to the database");
			break;
		case WH_POOL_BUSY:
		case WH_POOL_DOWN:
			/* logged; requests get 503 until the database is back */
			break;
	}

	for (;;)
	{
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP)
		{
			wh_log(WH_LOG, "SIGHUP ignored: restart to apply a new configuration");
			continue;
		}
		break;
	}

	wh_log(WH_LOG, "received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	wh_server_stop(server, s->shutdown_timeout);
	wh_pool_destroy(pool);
	wh_rate_free(&limiter);
	wh_settings_free(&state);
	wh_log(WH_LOG, "stopped");
	return 0;
}
