/*-------------------------------------------------------------------------
 *
 * version.h
 *		The extension's version, as in squadstack.control: sent as the
 *		User-Agent and reported by squadstack.library_version().
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_VERSION_H
#define SQS_VERSION_H

#define SQS_VERSION "0.3.0"

#endif							/* SQS_VERSION_H */
