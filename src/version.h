/*-------------------------------------------------------------------------
 *
 * version.h
 *		The extension's version, as in squadstack.control: sent as the
 *		User-Agent and reported by squadstack.library_version().
 *
 * The Makefile defines SQS_VERSION from default_version in
 * squadstack.control, the one place the version is written down.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQS_VERSION_H
#define SQS_VERSION_H

#ifndef SQS_VERSION
#error "SQS_VERSION is not defined: build with the Makefile"
#endif

#endif							/* SQS_VERSION_H */
