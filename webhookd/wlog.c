/*-------------------------------------------------------------------------
 *
 * wlog.c
 *		squadstack-webhookd's log: one line per event on stderr.
 *
 * A line is "YYYY-MM-DD HH:MM:SS.mmm UTC [pid] LEVEL:  message", written
 * with one write() so that lines of concurrent requests never interleave.
 * Nothing logged here ever holds a secret or a request body: callers log
 * paths through wh_route_redact() and database errors by SQLSTATE.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "wlog.h"

void
wh_vlog(const char *level, const char *fmt, va_list ap)
{
	char		line[1024];
	struct timeval tv;
	struct tm	tm;
	size_t		len;
	int			n;
	ssize_t		written;
	size_t		i;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	len = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
	n = snprintf(line + len, sizeof(line) - len, ".%03d UTC [%d] %s:  ",
				 (int) (tv.tv_usec / 1000), (int) getpid(), level);
	if (n > 0)
		len += n;
	if (len < sizeof(line))
	{
		n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
		if (n > 0)
			len += n;
	}
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	/* one line per event, whatever the message holds */
	while (len > 0 && line[len - 1] == '\n')
		len--;
	for (i = 0; i < len; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[len++] = '\n';
	written = write(STDERR_FILENO, line, len);
	(void) written;				/* nowhere to report a failed log write */
}

void
wh_log(const char *level, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	wh_vlog(level, fmt, ap);
	va_end(ap);
}
