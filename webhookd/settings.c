/*-------------------------------------------------------------------------
 *
 * settings.c
 *		squadstack-webhookd's settings: defaults, the configuration file
 *		and the command line.
 *
 * Every setting has one name, used as the configuration file's key and,
 * with dashes for underscores, as the command-line option.  The command
 * line wins over the file, the file over the defaults.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "settings.h"

typedef enum WhKind
{
	WH_STRING,
	WH_COUNT,					/* plain integer */
	WH_BYTES,					/* integer with an optional kB/MB suffix */
	WH_MS,						/* duration in ms, or with an ms/s suffix */
	WH_SECONDS					/* duration in s, or with an ms/s suffix */
} WhKind;

typedef struct WhSettingDef
{
	const char *name;
	WhKind		kind;
	size_t		offset;
	long		min;
	long		max;
	const char *default_value;
	const char *help;
} WhSettingDef;

#define FIELD(f) offsetof(WhSettings, f)

static const WhSettingDef setting_defs[] = {
	{"listen", WH_STRING, FIELD(listen), 0, 0, "127.0.0.1:8080",
	"address and port to listen on (HOST:PORT, [IPV6]:PORT)"},
	{"dsn", WH_STRING, FIELD(dsn), 0, 0, "",
	"libpq connection string (default: libpq's PG* environment)"},
	{"dsn_file", WH_STRING, FIELD(dsn_file), 0, 0, "",
	"file whose content is the connection string"},
	{"prefix", WH_STRING, FIELD(prefix), 0, 0, "/squadstack/webhook",
	"path prefix of POST PREFIX/{campaign}/{secret}"},
	{"max_body", WH_BYTES, FIELD(max_body), 1, 64L * 1024 * 1024, "64kB",
	"largest request body accepted (larger: 413)"},
	{"max_connections", WH_COUNT, FIELD(max_connections), 1, 1000, "4",
	"database connections at most"},
	{"pool_wait", WH_MS, FIELD(pool_wait), 0, 60000, "1s",
	"how long a request waits for a free connection (then: 503)"},
	{"connect_timeout", WH_SECONDS, FIELD(connect_timeout), 1, 3600, "5s",
	"libpq connect_timeout unless the connection string sets one"},
	{"statement_timeout", WH_MS, FIELD(statement_timeout), 0, 3600000, "10s",
	"statement_timeout of the connections (0: none)"},
	{"rate_limit", WH_COUNT, FIELD(rate_limit), 0, 1000000, "200",
	"requests per second in all (0: no limit; over it: 429)"},
	{"rate_burst", WH_COUNT, FIELD(rate_burst), 1, 1000000, "400",
	"requests at once in all"},
	{"client_rate_limit", WH_COUNT, FIELD(client_rate_limit), 0, 1000000, "50",
	"requests per second per client address (0: no limit)"},
	{"client_rate_burst", WH_COUNT, FIELD(client_rate_burst), 1, 1000000, "100",
	"requests at once per client address"},
	{"client_address_header", WH_STRING, FIELD(client_address_header), 0, 0, "",
	"request header naming the client (behind a proxy), e.g. X-Real-IP"},
	{"http_connections", WH_COUNT, FIELD(http_connections), 1, 10000, "100",
	"open HTTP connections at most"},
	{"request_timeout", WH_SECONDS, FIELD(request_timeout), 1, 3600, "30s",
	"how long an HTTP connection may be idle"},
	{"shutdown_timeout", WH_MS, FIELD(shutdown_timeout), 0, 3600000, "10s",
	"how long a shutdown waits for requests in flight"},
};

#define N_SETTINGS (sizeof(setting_defs) / sizeof(setting_defs[0]))

_Static_assert(sizeof(setting_defs) / sizeof(setting_defs[0]) <=
			   sizeof(((WhSettingsState *) 0)->source) / sizeof(WhSource),
			   "WhSettingsState.source is too small");

static void set_error(char *errbuf, size_t errlen, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

static void
set_error(char *errbuf, size_t errlen, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
}

bool
wh_parse_long(const char *value, long *result)
{
	char	   *end;
	long		v;

	if (!isdigit((unsigned char) value[0]))
		return false;
	errno = 0;
	v = strtol(value, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*result = v;
	return true;
}

/* an integer, then optional spaces and a suffix; the suffix is returned */
static bool
parse_with_suffix(const char *value, long *number, const char **suffix)
{
	char	   *end;

	if (!isdigit((unsigned char) value[0]))
		return false;
	errno = 0;
	*number = strtol(value, &end, 10);
	if (errno != 0)
		return false;
	while (*end == ' ')
		end++;
	*suffix = end;
	return true;
}

bool
wh_parse_bytes(const char *value, long *result)
{
	long		n;
	long		unit;
	const char *suffix;

	if (!parse_with_suffix(value, &n, &suffix))
		return false;
	if (*suffix == '\0' || strcmp(suffix, "B") == 0)
		unit = 1;
	else if (strcmp(suffix, "kB") == 0)
		unit = 1024;
	else if (strcmp(suffix, "MB") == 0)
		unit = 1024 * 1024;
	else
		return false;
	if (n > LONG_MAX / unit)
		return false;
	*result = n * unit;
	return true;
}

bool
wh_parse_ms(const char *value, long *result)
{
	long		n;
	const char *suffix;

	if (!parse_with_suffix(value, &n, &suffix))
		return false;
	if (*suffix == '\0' || strcmp(suffix, "ms") == 0)
		*result = n;
	else if (strcmp(suffix, "s") == 0 && n <= LONG_MAX / 1000)
		*result = n * 1000;
	else
		return false;
	return true;
}

static bool
parse_seconds(const char *value, long *result)
{
	long		n;
	const char *suffix;

	if (!parse_with_suffix(value, &n, &suffix))
		return false;
	if (*suffix == '\0' || strcmp(suffix, "s") == 0)
		*result = n;
	else if (strcmp(suffix, "ms") == 0)
		*result = (n + 999) / 1000;
	else
		return false;
	return true;
}

static const WhSettingDef *
find_setting(const char *name, int *index)
{
	char		key[64];
	size_t		i;

	if (strlen(name) >= sizeof(key))
		return NULL;
	for (i = 0; name[i] != '\0'; i++)
		key[i] = name[i] == '-' ? '_' : name[i];
	key[i] = '\0';
	for (i = 0; i < N_SETTINGS; i++)
	{
		if (strcmp(setting_defs[i].name, key) == 0)
		{
			*index = (int) i;
			return &setting_defs[i];
		}
	}
	return NULL;
}

bool
wh_settings_known(const char *name)
{
	int			index;

	return find_setting(name, &index) != NULL;
}

static bool
apply(WhSettingsState *state, const WhSettingDef *def, const char *value,
	  char *errbuf, size_t errlen)
{
	char	   *base = (char *) &state->values;
	long		n = 0;
	bool		ok = true;

	switch (def->kind)
	{
		case WH_STRING:
			{
				char	  **field = (char **) (base + def->offset);
				char	   *copy = strdup(value);

				if (copy == NULL)
				{
					set_error(errbuf, errlen, "out of memory");
					return false;
				}
				free(*field);
				*field = copy;
				return true;
			}
		case WH_COUNT:
			ok = wh_parse_long(value, &n);
			break;
		case WH_BYTES:
			ok = wh_parse_bytes(value, &n);
			break;
		case WH_MS:
			ok = wh_parse_ms(value, &n);
			break;
		case WH_SECONDS:
			ok = parse_seconds(value, &n);
			break;
	}
	if (!ok || n < def->min || n > def->max)
	{
		set_error(errbuf, errlen,
				  "invalid value for \"%s\": \"%s\" (%s from %ld to %ld%s)",
				  def->name, value,
				  def->kind == WH_BYTES ? "bytes" :
				  def->kind == WH_MS ? "milliseconds" :
				  def->kind == WH_SECONDS ? "seconds" : "an integer",
				  def->min, def->max,
				  def->kind == WH_BYTES ? ", or with kB or MB" :
				  def->kind == WH_MS || def->kind == WH_SECONDS ?
				  ", or with ms or s" : "");
		return false;
	}
	*(long *) (base + def->offset) = n;
	return true;
}

void
wh_settings_init(WhSettingsState *state)
{
	char		errbuf[256];
	size_t		i;

	memset(state, 0, sizeof(*state));
	for (i = 0; i < N_SETTINGS; i++)
	{
		if (!apply(state, &setting_defs[i], setting_defs[i].default_value,
				   errbuf, sizeof(errbuf)))
		{
			/* cannot happen: the defaults are valid */
			fprintf(stderr, "bad default: %s\n", errbuf);
			abort();
		}
	}
}

void
wh_settings_free(WhSettingsState *state)
{
	char	   *base = (char *) &state->values;
	size_t		i;

	for (i = 0; i < N_SETTINGS; i++)
	{
		if (setting_defs[i].kind == WH_STRING)
		{
			char	  **field = (char **) (base + setting_defs[i].offset);

			free(*field);
			*field = NULL;
		}
	}
}

bool
wh_settings_set(WhSettingsState *state, const char *name, const char *value,
				WhSource source, char *errbuf, size_t errlen)
{
	int			index;
	const WhSettingDef *def = find_setting(name, &index);

	if (def == NULL)
	{
		set_error(errbuf, errlen, "unknown setting \"%s\"", name);
		return false;
	}
	/* the command line wins over the file whatever the order */
	if (state->source[index] > source)
		return true;
	if (!apply(state, def, value, errbuf, errlen))
		return false;
	state->source[index] = source;
	return true;
}

static char *
trim(char *s)
{
	char	   *end;

	while (isspace((unsigned char) *s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char) end[-1]))
		*--end = '\0';
	return s;
}

bool
wh_settings_read_file(WhSettingsState *state, const char *path,
					  char *errbuf, size_t errlen)
{
	FILE	   *f;
	char		line[4096];
	int			lineno = 0;
	bool		ok = true;

	f = fopen(path, "r");
	if (f == NULL)
	{
		set_error(errbuf, errlen, "could not open configuration file \"%s\": %s",
				  path, strerror(errno));
		return false;
	}
	while (ok && fgets(line, sizeof(line), f) != NULL)
	{
		char	   *key;
		char	   *value;
		char	   *eq;
		size_t		len;
		char		msg[512];

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f))
		{
			set_error(errbuf, errlen, "%s:%d: line too long", path, lineno);
			ok = false;
			break;
		}
		key = trim(line);
		/* a comment is a whole line; values may contain '#' */
		if (key[0] == '\0' || key[0] == '#')
			continue;
		eq = strchr(key, '=');
		if (eq == NULL)
		{
			set_error(errbuf, errlen, "%s:%d: expected \"key = value\"",
					  path, lineno);
			ok = false;
			break;
		}
		*eq = '\0';
		key = trim(key);
		value = trim(eq + 1);
		len = strlen(value);
		if (len >= 2 && (value[0] == '\'' || value[0] == '"') &&
			value[len - 1] == value[0])
		{
			value[len - 1] = '\0';
			value++;
		}
		if (!wh_settings_set(state, key, value, WH_SOURCE_FILE,
							 msg, sizeof(msg)))
		{
			set_error(errbuf, errlen, "%s:%d: %s", path, lineno, msg);
			ok = false;
		}
	}
	if (ok && ferror(f))
	{
		set_error(errbuf, errlen, "could not read configuration file \"%s\": %s",
				  path, strerror(errno));
		ok = false;
	}
	fclose(f);
	return ok;
}

bool
wh_settings_finish(WhSettingsState *state, char *errbuf, size_t errlen)
{
	WhSettings *s = &state->values;
	int			dsn_index;
	int			file_index;
	WhSource	dsn_source;
	WhSource	file_source;
	size_t		len;
	const char *p;

	find_setting("dsn", &dsn_index);
	find_setting("dsn_file", &file_index);
	dsn_source = state->source[dsn_index];
	file_source = state->source[file_index];

	/* the connection string comes from one place: the later source wins */
	if (dsn_source != WH_SOURCE_DEFAULT && dsn_source == file_source)
	{
		set_error(errbuf, errlen, "give either dsn or dsn_file, not both");
		return false;
	}
	if (file_source > dsn_source)
		s->dsn[0] = '\0';
	else
		s->dsn_file[0] = '\0';

	/* the prefix: "/a/b", never ending in a slash ("/" alone is none) */
	len = strlen(s->prefix);
	while (len > 0 && s->prefix[len - 1] == '/')
		s->prefix[--len] = '\0';
	if (len > 0 && s->prefix[0] != '/')
	{
		set_error(errbuf, errlen, "prefix must start with \"/\"");
		return false;
	}
	for (p = s->prefix; *p; p++)
	{
		if (*p == '?' || *p == '#' || *p == '%' ||
			isspace((unsigned char) *p) || iscntrl((unsigned char) *p))
		{
			set_error(errbuf, errlen,
					  "prefix must not contain spaces or the characters ? # %%");
			return false;
		}
	}
	if (len > 200)
	{
		set_error(errbuf, errlen, "prefix is longer than 200 characters");
		return false;
	}
	for (p = s->client_address_header; *p; p++)
	{
		if (!isalnum((unsigned char) *p) && *p != '-' && *p != '_')
		{
			set_error(errbuf, errlen,
					  "client_address_header must be a header name");
			return false;
		}
	}
	return true;
}

void
wh_settings_usage(FILE *out)
{
	size_t		i;

	for (i = 0; i < N_SETTINGS; i++)
	{
		char		option[64];
		size_t		j;

		snprintf(option, sizeof(option), "--%s", setting_defs[i].name);
		for (j = 2; option[j]; j++)
			if (option[j] == '_')
				option[j] = '-';
		fprintf(out, "  %-25s %s", option, setting_defs[i].help);
		if (setting_defs[i].default_value[0] != '\0')
			fprintf(out, " [%s]", setting_defs[i].default_value);
		fputc('\n', out);
	}
}
