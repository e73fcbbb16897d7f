/*-------------------------------------------------------------------------
 *
 * server.c
 *		The HTTP side of squadstack-webhookd (libmicrohttpd).
 *
 * libmicrohttpd runs a thread per connection, so a request waiting for
 * the database holds up nobody else; the connection limit bounds the
 * threads.  A request goes through these checks in turn, each answering
 * at once when it fails: the rate limits (429), the path (404), the
 * method (405), the Content-Type (415), the announced length (413).  The
 * body is then read up to max_body (413 beyond) and handed to the
 * database (201, 400, 403, 500, 503).  Every request ends in one log
 * line, written when libmicrohttpd reports it complete.
 *
 *-------------------------------------------------------------------------
 */
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "receive.h"
#include "route.h"
#include "server.h"
#include "wlog.h"

struct WhServer
{
	struct MHD_Daemon *daemon;
	const WhSettings *settings;
	WhPool	   *pool;
	WhRateLimiter *limiter;
	pthread_mutex_t lock;		/* protects the fields below and limiter */
	int			in_flight;		/* requests begun and not yet complete */
	bool		stopping;
};

typedef struct WhRequest
{
	double		start;
	int			status;			/* 0 until answered */
	const char *reason;
	bool		too_large;
	char	   *body;
	size_t		len;
	size_t		cap;
	char		method[16];
	char		client[WH_ADDRESS_LEN];
	char		campaign[WH_CAMPAIGN_MAX + 1];
	char		secret[WH_SECRET_MAX + 1];
	char		logged_path[256];
} WhRequest;

static double
monotonic_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *
status_message(int status)
{
	switch (status)
	{
		case 201:
			return "stored";
		case 400:
			return "malformed payload";
		case 403:
			return "forbidden";
		case 404:
			return "not found";
		case 405:
			return "method not allowed";
		case 413:
			return "payload too large";
		case 415:
			return "unsupported media type";
		case 429:
			return "too many requests";
		case 503:
			return "service unavailable";
	}
	return "internal error";
}

static enum MHD_Result
respond(WhServer *server, struct MHD_Connection *connection, WhRequest *req,
		int status, const char *reason, int retry_after)
{
	char		body[128];
	char		seconds[16];
	struct MHD_Response *response;
	enum MHD_Result ret;
	bool		ok = true;
	bool		stopping;
	int			len;

	req->status = status;
	req->reason = reason;
	len = snprintf(body, sizeof(body), "{\"status\": %d, \"message\": \"%s\"}\n",
				   status, status_message(status));
	response = MHD_create_response_from_buffer((size_t) len, body,
											   MHD_RESPMEM_MUST_COPY);
	if (response == NULL)
	{
		wh_log(WH_WARNING, "could not create a response");
		return MHD_NO;
	}
	pthread_mutex_lock(&server->lock);
	stopping = server->stopping;
	pthread_mutex_unlock(&server->lock);

	ok = MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
								 "application/json") == MHD_YES;
	if (ok && status == 405)
		ok = MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW,
									 "POST") == MHD_YES;
	if (ok && retry_after > 0)
	{
		snprintf(seconds, sizeof(seconds), "%d", retry_after);
		ok = MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER,
									 seconds) == MHD_YES;
	}
	if (ok && stopping)
		ok = MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION,
									 "close") == MHD_YES;
	if (!ok)
	{
		wh_log(WH_WARNING, "could not add a response header");
		MHD_destroy_response(response);
		return MHD_NO;
	}
	ret = MHD_queue_response(connection, (unsigned int) status, response);
	MHD_destroy_response(response);
	if (ret != MHD_YES)
		wh_log(WH_WARNING, "could not queue a response");
	return ret;
}

/* the client's address: the socket's, or the proxy's header if set */
static void
client_address(WhServer *server, struct MHD_Connection *connection,
			   char *out, size_t outlen)
{
	const char *header = server->settings->client_address_header;
	const union MHD_ConnectionInfo *info;

	snprintf(out, outlen, "unknown");
	if (header[0] != '\0')
	{
		const char *value = MHD_lookup_connection_value(connection,
														MHD_HEADER_KIND,
														header);

		if (value != NULL && value[0] != '\0')
		{
			/* X-Forwarded-For: the last address is the one the proxy saw */
			const char *last = strrchr(value, ',');
			size_t		n;

			last = last ? last + 1 : value;
			while (*last == ' ' || *last == '\t')
				last++;
			n = strcspn(last, " \t");
			if (n >= outlen)
				n = outlen - 1;
			if (n > 0)
			{
				size_t		i;

				for (i = 0; i < n; i++)
				{
					unsigned char c = (unsigned char) last[i];

					out[i] = (c > 0x20 && c < 0x7f) ? (char) c : '?';
				}
				out[n] = '\0';
				return;
			}
		}
	}
	info = MHD_get_connection_info(connection,
								   MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (info != NULL && info->client_addr != NULL)
	{
		const struct sockaddr *sa = info->client_addr;
		socklen_t	salen = sa->sa_family == AF_INET6 ?
			sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

		if (getnameinfo(sa, salen, out, outlen, NULL, 0, NI_NUMERICHOST) != 0)
			snprintf(out, outlen, "unknown");
	}
}

/* application/json, with parameters such as charset allowed */
static bool
json_content_type(const char *value)
{
	static const char json[] = "application/json";
	size_t		n = sizeof(json) - 1;

	while (*value == ' ')
		value++;
	if (strncasecmp(value, json, n) != 0)
		return false;
	value += n;
	while (*value == ' ')
		value++;
	return *value == '\0' || *value == ';';
}

/* the checks made once the headers are in; returns 0 when all passed */
static int
check_request(WhServer *server, struct MHD_Connection *connection,
			  WhRequest *req, const char *url, const char *method,
			  const char **reason, int *retry_after)
{
	const WhSettings *s = server->settings;
	const char *value;
	WhRateResult rate;

	pthread_mutex_lock(&server->lock);
	rate = wh_rate_take(server->limiter, req->client, monotonic_now(),
						retry_after);
	pthread_mutex_unlock(&server->lock);
	if (rate != WH_RATE_OK)
	{
		*reason = rate == WH_RATE_CLIENT ? "rate_limited_client" : "rate_limited";
		return 429;
	}
	if (!wh_route_parse(s->prefix, url, req->campaign, req->secret))
	{
		*reason = "unknown_path";
		return 404;
	}
	if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
	{
		*reason = "method";
		return 405;
	}
	value = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
										MHD_HTTP_HEADER_CONTENT_TYPE);
	if (value != NULL && !json_content_type(value))
	{
		*reason = "content_type";
		return 415;
	}
	value = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
										MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (value != NULL)
	{
		char	   *end;
		unsigned long long length = strtoull(value, &end, 10);

		if (end != value && length > (unsigned long long) s->max_body)
		{
			*reason = "body_too_large";
			return 413;
		}
	}
	return 0;
}

static bool
append_body(WhRequest *req, const char *data, size_t size, size_t max)
{
	if (req->too_large)
		return true;
	if (size > max || req->len > max - size)
	{
		req->too_large = true;
		free(req->body);
		req->body = NULL;
		req->len = req->cap = 0;
		return true;
	}
	if (req->len + size + 1 > req->cap)
	{
		size_t		cap = req->cap ? req->cap : 1024;
		char	   *body;

		while (cap < req->len + size + 1)
			cap *= 2;
		body = realloc(req->body, cap);
		if (body == NULL)
			return false;
		req->body = body;
		req->cap = cap;
	}
	memcpy(req->body + req->len, data, size);
	req->len += size;
	req->body[req->len] = '\0';
	return true;
}

static enum MHD_Result
handle_request(void *cls, struct MHD_Connection *connection,
			   const char *url, const char *method, const char *version,
			   const char *upload_data, size_t *upload_data_size,
			   void **con_cls)
{
	WhServer   *server = cls;
	WhRequest  *req = *con_cls;
	WhAnswer	a;

	if (req == NULL)
	{
		const char *reason = NULL;
		int			retry_after = 0;
		int			status;

		req = calloc(1, sizeof(WhRequest));
		if (req == NULL)
		{
			wh_log(WH_WARNING, "out of memory");
			return MHD_NO;
		}
		req->start = monotonic_now();
		snprintf(req->method, sizeof(req->method), "%s", method);
		wh_route_redact(server->settings->prefix, url, req->logged_path,
						sizeof(req->logged_path));
		client_address(server, connection, req->client, sizeof(req->client));
		*con_cls = req;
		pthread_mutex_lock(&server->lock);
		server->in_flight++;
		pthread_mutex_unlock(&server->lock);

		status = check_request(server, connection, req, url, method,
							   &reason, &retry_after);
		if (status != 0)
			return respond(server, connection, req, status, reason,
						   retry_after);
		return MHD_YES;
	}

	if (*upload_data_size > 0)
	{
		if (!append_body(req, upload_data, *upload_data_size,
						 (size_t) server->settings->max_body))
		{
			wh_log(WH_WARNING, "out of memory");
			return MHD_NO;
		}
		*upload_data_size = 0;
		return MHD_YES;
	}

	if (req->status != 0)
		return MHD_YES;			/* answered already */
	if (req->too_large)
		return respond(server, connection, req, 413, "body_too_large", 0);
	if (req->body == NULL && !append_body(req, "", 0, 1))
		return MHD_NO;

	a = wh_receive(server->pool, server->settings->pool_wait,
				   req->campaign, req->secret, req->body, req->len);
	return respond(server, connection, req, a.status, a.reason,
				   a.status == 503 ? 1 : 0);
}

static void
request_completed(void *cls, struct MHD_Connection *connection,
				  void **con_cls, enum MHD_RequestTerminationCode toe)
{
	WhServer   *server = cls;
	WhRequest  *req = *con_cls;

	if (req == NULL)
		return;
	*con_cls = NULL;
	if (req->status == 0)
		wh_log(WH_LOG, "request client=%s method=%s path=%s status=none reason=%s duration_ms=%.1f",
			   req->client, req->method, req->logged_path,
			   toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? "timeout" :
			   toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? "shutdown" :
			   "connection_closed",
			   (monotonic_now() - req->start) * 1000.0);
	else
		wh_log(WH_LOG, "request client=%s method=%s path=%s status=%d%s%s duration_ms=%.1f",
			   req->client, req->method, req->logged_path, req->status,
			   req->reason ? " reason=" : "", req->reason ? req->reason : "",
			   (monotonic_now() - req->start) * 1000.0);
	/* the secret and the body are not kept past the request */
	memset(req->secret, 0, sizeof(req->secret));
	free(req->body);
	free(req);
	pthread_mutex_lock(&server->lock);
	server->in_flight--;
	pthread_mutex_unlock(&server->lock);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
			__attribute__((format(printf, 2, 0)));

static void
mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char		message[512];

	vsnprintf(message, sizeof(message), fmt, ap);
	wh_log(WH_LOG, "libmicrohttpd: %s", message);
}

WhServer *
wh_server_start(const WhSettings *settings, WhPool *pool,
				WhRateLimiter *limiter, const struct sockaddr *addr)
{
	WhServer   *server = calloc(1, sizeof(WhServer));
	unsigned int flags = MHD_USE_THREAD_PER_CONNECTION |
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;

	if (server == NULL)
		return NULL;
	server->settings = settings;
	server->pool = pool;
	server->limiter = limiter;
	if (pthread_mutex_init(&server->lock, NULL) != 0)
	{
		free(server);
		return NULL;
	}
	if (addr->sa_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	server->daemon = MHD_start_daemon(flags, 0, NULL, NULL,
									  handle_request, server,
									  /* first, so that it gets every message */
									  MHD_OPTION_EXTERNAL_LOGGER,
									  mhd_logger, NULL,
									  MHD_OPTION_SOCK_ADDR, addr,
									  MHD_OPTION_CONNECTION_LIMIT,
									  (unsigned int) settings->http_connections,
									  MHD_OPTION_CONNECTION_TIMEOUT,
									  (unsigned int) settings->request_timeout,
									  MHD_OPTION_NOTIFY_COMPLETED,
									  request_completed, server,
									  MHD_OPTION_END);
	if (server->daemon == NULL)
	{
		pthread_mutex_destroy(&server->lock);
		free(server);
		return NULL;
	}
	return server;
}

int
wh_server_port(WhServer *server)
{
	const union MHD_DaemonInfo *info;

	info = MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
	return info != NULL ? info->port : -1;
}

void
wh_server_stop(WhServer *server, long timeout_ms)
{
	MHD_socket	listen_fd;
	double		deadline = monotonic_now() + timeout_ms / 1000.0;
	int			in_flight;

	pthread_mutex_lock(&server->lock);
	server->stopping = true;
	pthread_mutex_unlock(&server->lock);

	listen_fd = MHD_quiesce_daemon(server->daemon);
	if (listen_fd == MHD_INVALID_SOCKET)
		wh_log(WH_WARNING, "could not stop listening; closing at once");
	for (;;)
	{
		pthread_mutex_lock(&server->lock);
		in_flight = server->in_flight;
		pthread_mutex_unlock(&server->lock);
		if (in_flight == 0 || listen_fd == MHD_INVALID_SOCKET)
			break;
		if (monotonic_now() >= deadline)
		{
			wh_log(WH_WARNING, "%d requests still in flight after shutdown_timeout",
				   in_flight);
			break;
		}
		usleep(20000);
	}
	MHD_stop_daemon(server->daemon);
	if (listen_fd != MHD_INVALID_SOCKET)
		close(listen_fd);
	pthread_mutex_destroy(&server->lock);
	free(server);
}
