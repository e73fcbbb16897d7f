/*-------------------------------------------------------------------------
 *
 * token_file.c
 *		Reading squadstack.token_file: access tokens kept in a file that
 *		only the server can read, as ssl_key_file is; what makes a token.
 *
 * The file has one entry a line: "campaign token", "* token" for the
 * default token, or a line with a token alone, which is the default token
 * too; a third field names the business the token belongs to, whose tokens
 * share one rate budget ("campaign token business").  Blank lines and lines starting with "#" are ignored.  It is read
 * by the setting's check hook, so at server start and at every reload, in
 * every process; a file that cannot be used is refused with a message and
 * the tokens read before stay in force.  Tokens never appear in a message:
 * a problem is reported by its line number.
 *
 * The result is a GUC's "extra", which PostgreSQL releases itself, so it
 * is allocated as PostgreSQL's GUC code expects (squadstack_guc_malloc,
 * compat.h); the file's text, read and released here, uses malloc.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "compat.h"
#include "token_file.h"

/* a bound on what is read: a thousand campaigns with long tokens */
#define TOKEN_FILE_MAX_BYTES (1024 * 1024)
#define TOKEN_FILE_MAX_ENTRIES 10000

typedef struct TokenFileEntry
{
	char		campaign[SQUADSTACK_MAX_CAMPAIGN_LEN + 1];
	char		token[SQUADSTACK_TOKEN_MAX];
	char		business[SQUADSTACK_BUSINESS_MAX + 1];	/* "" if none */
} TokenFileEntry;

struct SquadstackTokenFile
{
	int			n;
	TokenFileEntry entries[FLEXIBLE_ARRAY_MEMBER];
};

const char *
squadstack_token_problem(const char *token)
{
	const char *p;

	if (strlen(token) >= SQUADSTACK_TOKEN_MAX)
		return "A token must be shorter than 1024 bytes.";
	/* it becomes an HTTP header */
	for (p = token; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			return "A token must not contain control characters.";
	return NULL;
}

const char *
squadstack_business_problem(const char *business)
{
	const char *p;

	if (business[0] == '\0')
		return "A business name is not empty; use NULL for a token that is a business of its own.";
	if (strlen(business) > SQUADSTACK_BUSINESS_MAX)
		return "A business name is at most 63 bytes long.";
	for (p = business; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			return "A business name must not contain control characters.";
	return NULL;
}

static bool
valid_campaign(const char *c, size_t len)
{
	size_t		i;

	if (len == 1 && c[0] == '*')
		return true;
	if (len == 0 || len > SQUADSTACK_MAX_CAMPAIGN_LEN)
		return false;
	for (i = 0; i < len; i++)
		if (!((c[i] >= 'a' && c[i] <= 'z') || (c[i] >= 'A' && c[i] <= 'Z') ||
			  (c[i] >= '0' && c[i] <= '9') || c[i] == '_' || c[i] == '-'))
			return false;
	return true;
}

/*
 * Read the whole file after checking who may read it: like ssl_key_file, a
 * regular file owned by the server's user with no group or other
 * permissions, or owned by root and readable by its group at most.
 */
static char *
read_private_file(const char *path, size_t *len, char *problem, size_t problem_len)
{
	FILE	   *f;
	struct stat st;
	char	   *buf;

	f = fopen(path, "r");
	if (f == NULL)
	{
		snprintf(problem, problem_len, "could not open token file \"%s\": %m", path);
		return NULL;
	}
	if (fstat(fileno(f), &st) != 0)
	{
		snprintf(problem, problem_len, "could not stat token file \"%s\": %m", path);
		fclose(f);
		return NULL;
	}
	if (!S_ISREG(st.st_mode))
	{
		snprintf(problem, problem_len, "token file \"%s\" is not a regular file", path);
		fclose(f);
		return NULL;
	}
	if ((st.st_uid == geteuid() && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) ||
		(st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO)) != 0))
	{
		snprintf(problem, problem_len,
				 "token file \"%s\" has group or world access; it must be u=rw (0600) or less if owned by the database user, or u=rw,g=r (0640) or less if owned by root",
				 path);
		fclose(f);
		return NULL;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0)
	{
		snprintf(problem, problem_len,
				 "token file \"%s\" must be owned by the database user or root", path);
		fclose(f);
		return NULL;
	}
	if (st.st_size > TOKEN_FILE_MAX_BYTES)
	{
		snprintf(problem, problem_len, "token file \"%s\" is larger than %d bytes",
				 path, TOKEN_FILE_MAX_BYTES);
		fclose(f);
		return NULL;
	}
	buf = malloc(st.st_size + 1);
	if (buf == NULL)
	{
		snprintf(problem, problem_len, "out of memory");
		fclose(f);
		return NULL;
	}
	*len = fread(buf, 1, st.st_size, f);
	buf[*len] = '\0';
	if (ferror(f))
	{
		snprintf(problem, problem_len, "could not read token file \"%s\"", path);
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	return buf;
}

SquadstackTokenFile *
squadstack_token_file_read(const char *path, char *problem, size_t problem_len)
{
	SquadstackTokenFile *tf;
	char	   *buf;
	char	   *line;
	char	   *next;
	size_t		len = 0;
	int			lineno = 0;
	int			nlines = 0;
	char	   *p;

	problem[0] = '\0';
	if (path == NULL || path[0] == '\0')
	{
		tf = squadstack_guc_malloc(offsetof(SquadstackTokenFile, entries));
		if (tf == NULL)
			snprintf(problem, problem_len, "out of memory");
		else
			tf->n = 0;
		return tf;
	}
	buf = read_private_file(path, &len, problem, problem_len);
	if (buf == NULL)
		return NULL;
	if (memchr(buf, '\0', len) != NULL)
	{
		snprintf(problem, problem_len, "token file \"%s\" contains a NUL byte", path);
		free(buf);
		return NULL;
	}
	for (p = buf; *p; p++)
		if (*p == '\n')
			nlines++;
	nlines = Min(nlines + 1, TOKEN_FILE_MAX_ENTRIES + 1);
	tf = squadstack_guc_malloc(offsetof(SquadstackTokenFile, entries) +
							   nlines * sizeof(TokenFileEntry));
	if (tf == NULL)
	{
		snprintf(problem, problem_len, "out of memory");
		free(buf);
		return NULL;
	}
	tf->n = 0;

	for (line = buf; line != NULL; line = next)
	{
		char	   *end;
		char	   *first;
		char	   *second = NULL;
		char	   *third = NULL;
		size_t		flen;
		size_t		slen;
		const char *campaign;
		size_t		clen;
		const char *token;
		int			i;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		lineno++;
		/* trim blanks and a CR */
		end = line + strlen(line);
		while (end > line && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
			*--end = '\0';
		while (*line == ' ' || *line == '\t')
			line++;
		if (*line == '\0' || *line == '#')
			continue;

		first = line;
		flen = strcspn(first, " \t");
		if (first[flen] != '\0')
		{
			first[flen] = '\0';
			second = first + flen + 1;
			while (*second == ' ' || *second == '\t')
				second++;
			slen = strcspn(second, " \t");
			if (second[slen] != '\0')
			{
				second[slen] = '\0';
				third = second + slen + 1;
				while (*third == ' ' || *third == '\t')
					third++;
				if (strcspn(third, " \t") != strlen(third))
				{
					snprintf(problem, problem_len,
							 "line %d of token file \"%s\" has more than three fields", lineno, path);
					goto fail;
				}
			}
		}
		if (second == NULL)
		{
			campaign = SQUADSTACK_ALL_CAMPAIGNS;
			clen = 1;
			token = first;
		}
		else
		{
			campaign = first;
			clen = flen;
			token = second;
		}
		if (!valid_campaign(campaign, clen))
		{
			snprintf(problem, problem_len,
					 "line %d of token file \"%s\" names an invalid campaign id", lineno, path);
			goto fail;
		}
		if (third != NULL && squadstack_business_problem(third) != NULL)
		{
			snprintf(problem, problem_len, "line %d of token file \"%s\": %s",
					 lineno, path, squadstack_business_problem(third));
			goto fail;
		}
		/* the file serves every database, whatever its encoding */
		for (p = third; p != NULL && *p; p++)
			if ((unsigned char) *p > 0x7e)
			{
				snprintf(problem, problem_len,
						 "line %d of token file \"%s\": A business name in the token file is ASCII.",
						 lineno, path);
				goto fail;
			}
		if (squadstack_token_problem(token) != NULL)
		{
			snprintf(problem, problem_len, "line %d of token file \"%s\": %s",
					 lineno, path, squadstack_token_problem(token));
			goto fail;
		}
		for (i = 0; i < tf->n; i++)
			if (strcmp(tf->entries[i].campaign, campaign) == 0)
			{
				snprintf(problem, problem_len,
						 "line %d of token file \"%s\" repeats a campaign", lineno, path);
				goto fail;
			}
		if (tf->n >= TOKEN_FILE_MAX_ENTRIES)
		{
			snprintf(problem, problem_len,
					 "token file \"%s\" has more than %d entries", path, TOKEN_FILE_MAX_ENTRIES);
			goto fail;
		}
		strlcpy(tf->entries[tf->n].campaign, campaign, sizeof(tf->entries[tf->n].campaign));
		strlcpy(tf->entries[tf->n].token, token, sizeof(tf->entries[tf->n].token));
		strlcpy(tf->entries[tf->n].business, third ? third : "",
				sizeof(tf->entries[tf->n].business));
		tf->n++;
	}
	explicit_bzero(buf, len);
	free(buf);
	return tf;

fail:
	explicit_bzero(buf, len);
	free(buf);
	explicit_bzero(tf, offsetof(SquadstackTokenFile, entries) + nlines * sizeof(TokenFileEntry));
	squadstack_guc_free(tf);
	return NULL;
}

const char *
squadstack_token_file_lookup(const SquadstackTokenFile *tf, const char *campaign)
{
	int			i;

	if (tf == NULL)
		return NULL;
	for (i = 0; i < tf->n; i++)
		if (strcmp(tf->entries[i].campaign, campaign) == 0)
			return tf->entries[i].token;
	return NULL;
}

const char *
squadstack_token_file_business(const SquadstackTokenFile *tf, int i, const char **token)
{
	if (tf == NULL || i < 0 || i >= tf->n)
		return NULL;
	*token = tf->entries[i].token;
	return tf->entries[i].business;
}
