/*-------------------------------------------------------------------------
 *
 * http.c
 *		The HTTP client: one call to the SquadStack API with libcurl.
 *
 * libcurl runs callbacks from inside curl_easy_perform(), so nothing here
 * may longjmp out of them: the callbacks use malloc and report failure by
 * their return value, and PostgreSQL ERRORs are raised only after curl has
 * returned.  The handle is kept for the life of the process so that
 * connections are reused; the header list is freed on every path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>
#include <json-c/json.h>

#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/pmsignal.h"

#include "backoff.h"
#include "http.h"

/* an answer longer than this is cut; error bodies are short */
#define MAX_BODY (1024 * 1024)
#define MAX_HEADER_VALUE 256
#define CONNECT_TIMEOUT_MS 10000
/* as squadstack_retry_after_seconds_ms() caps the seconds form: a week */
#define MAX_RETRY_AFTER_MS ((int64) 7 * 86400 * 1000)

typedef struct Transfer
{
	char	   *body;			/* malloc'd */
	size_t		len;
	size_t		cap;
	bool		oom;
	char		retry_after[MAX_HEADER_VALUE];
} Transfer;

static CURL *handle = NULL;

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	Transfer   *t = (Transfer *) userdata;
	size_t		n = size * nmemb;
	size_t		keep = n;

	if (t->len + keep > MAX_BODY)
		keep = MAX_BODY - t->len;
	if (keep > 0)
	{
		if (t->len + keep + 1 > t->cap)
		{
			size_t		newcap = Max(t->cap * 2, t->len + keep + 1);
			char	   *p = realloc(t->body, newcap);

			if (p == NULL)
			{
				t->oom = true;
				return 0;		/* makes curl fail the transfer */
			}
			t->body = p;
			t->cap = newcap;
		}
		memcpy(t->body + t->len, ptr, keep);
		t->len += keep;
		t->body[t->len] = '\0';
	}
	return n;
}

static size_t
header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
	Transfer   *t = (Transfer *) userdata;
	size_t		n = size * nitems;
	static const char name[] = "retry-after:";

	if (n > sizeof(name) - 1 && pg_strncasecmp(buf, name, sizeof(name) - 1) == 0)
	{
		size_t		vlen = n - (sizeof(name) - 1);

		if (vlen >= MAX_HEADER_VALUE)
			vlen = MAX_HEADER_VALUE - 1;
		memcpy(t->retry_after, buf + sizeof(name) - 1, vlen);
		t->retry_after[vlen] = '\0';
	}
	return n;
}

/* Abort the transfer when the backend is asked to stop or the server died. */
static int
progress_cb(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
			curl_off_t ultotal, curl_off_t ulnow)
{
	if (QueryCancelPending || ProcDiePending || !PostmasterIsAlive())
		return 1;
	return 0;
}

static CURL *
get_handle(void)
{
	static bool initialized = false;

	if (!initialized)
	{
		if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not initialize libcurl")));
		initialized = true;
	}
	if (handle == NULL)
	{
		handle = curl_easy_init();
		if (handle == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl handle")));
	}
	else
		curl_easy_reset(handle);	/* keeps open connections */
	return handle;
}

/* Milliseconds to wait from a Retry-After value: seconds or an HTTP date. */
static int64
parse_retry_after(char *value)
{
	int64		ms;
	char	   *end;
	time_t		when;

	/* trim the value as it came in the header */
	while (*value == ' ' || *value == '\t')
		value++;
	end = value + strlen(value);
	while (end > value && (end[-1] == '\r' || end[-1] == '\n' ||
						   end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	if (*value == '\0')
		return -1;

	ms = squadstack_retry_after_seconds_ms(value);
	if (ms >= 0)
		return ms;
	when = curl_getdate(value, NULL);
	if (when == (time_t) -1)
		return -1;
	ms = ((int64) when - (int64) time(NULL)) * 1000;
	return Min(Max(ms, 0), MAX_RETRY_AFTER_MS);
}

void
squadstack_http_call(const char *method, const char *url, const char *token,
			  const char *body, int timeout_ms, SquadstackHttpResult *res)
{
	CURL	   *h = get_handle();
	struct curl_slist *volatile headers = NULL;
	Transfer	t;
	char		errbuf[CURL_ERROR_SIZE];
	CURLcode	rc = CURLE_OK;
	instr_time	start,
				duration;

	memset(&t, 0, sizeof(t));
	memset(res, 0, sizeof(*res));
	res->retry_after_ms = -1;
	errbuf[0] = '\0';

	PG_TRY();
	{
		char	   *auth = psprintf("Authorization: Bearer %s", token);
		struct curl_slist *l;

		l = curl_slist_append(headers, auth);
		/* the token should not linger in memory we no longer use */
		explicit_bzero(auth, strlen(auth));
		pfree(auth);
		if (l == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		headers = l;
		l = curl_slist_append(headers, "Content-Type: application/json");
		if (l == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		l = curl_slist_append(headers, "Accept: application/json");
		if (l == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));

		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
		/* the token goes to api_url and nowhere else, not to a proxy */
		curl_easy_setopt(h, CURLOPT_PROXY, "");
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) timeout_ms);
		curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
						 (long) Min(timeout_ms, CONNECT_TIMEOUT_MS));
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(h, CURLOPT_USERAGENT, "squadstack-postgresql/" SQUADSTACK_VERSION);
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
		curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress_cb);

		if (strcmp(method, "GET") == 0)
			curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
		else
		{
			if (strcmp(method, "POST") != 0)
				curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
			curl_easy_setopt(h, CURLOPT_POST, 1L);
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long) (body ? strlen(body) : 0));
		}

		INSTR_TIME_SET_CURRENT(start);
		rc = curl_easy_perform(h);
		INSTR_TIME_SET_CURRENT(duration);
		INSTR_TIME_SUBTRACT(duration, start);
		res->duration_ms = INSTR_TIME_GET_MILLISEC(duration);

		/* drop the request's references to our memory before anything else */
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, NULL);

		/* a cancel or shutdown that aborted the transfer is raised here */
		CHECK_FOR_INTERRUPTS();
		/* a transfer cut short by the postmaster's death is not an answer */
		if (!PostmasterIsAlive())
			ereport(FATAL,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("terminating squadstack sender because the postmaster died")));

		if (rc == CURLE_OK)
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
		else
		{
			res->status = 0;
			res->timed_out = (rc == CURLE_OPERATION_TIMEDOUT);
			if (t.oom)
				res->error = pstrdup("out of memory while receiving the answer");
			else
				res->error = psprintf("%s: %s", curl_easy_strerror(rc),
									  errbuf[0] ? errbuf : "no detail");
		}
		res->body = pnstrdup(t.body ? t.body : "", t.len);
		/* a NUL in the answer ends it: such a body is not JSON anyway */
		res->body_len = strlen(res->body);
		if (t.retry_after[0] != '\0')
			res->retry_after_ms = parse_retry_after(t.retry_after);
	}
	PG_FINALLY();
	{
		if (headers != NULL)
			curl_slist_free_all(headers);
		free(t.body);
	}
	PG_END_TRY();
}

bool
squadstack_json_is_valid(const char *buf, size_t len)
{
	struct json_tokener *tok;
	json_object *obj;
	enum json_tokener_error err;
	size_t		used;

	if (len == 0 || len > INT_MAX)
		return false;
	tok = json_tokener_new();
	if (tok == NULL)
		return false;
	obj = json_tokener_parse_ex(tok, buf, (int) len);
	err = json_tokener_get_error(tok);
	used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (obj != NULL)
		json_object_put(obj);
	if (obj == NULL || err != json_tokener_success)
		return false;
	/* only white space may follow the value */
	for (; used < len; used++)
		if (!isspace((unsigned char) buf[used]))
			return false;
	return true;
}
