/*-------------------------------------------------------------------------
 *
 * wlog.h
 *		squadstack-webhookd's log: one line per event on stderr.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WH_LOG_H
#define WH_LOG_H

#include <stdarg.h>

/* levels, as PostgreSQL names them */
#define WH_LOG "LOG"
#define WH_WARNING "WARNING"
#define WH_FATAL "FATAL"

extern void wh_log(const char *level, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
extern void wh_vlog(const char *level, const char *fmt, va_list ap)
			__attribute__((format(printf, 2, 0)));

#endif							/* WH_LOG_H */
