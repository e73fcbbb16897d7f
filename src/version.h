/*-------------------------------------------------------------------------
 *
 * version.h
 *		The extension's version, as in squadstack.control: sent as the
 *		User-Agent and reported by squadstack.library_version().
 *
 * The Makefile defines SQUADSTACK_VERSION from default_version in
 * squadstack.control, the one place the version is written down.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SQUADSTACK_VERSION_H
#define SQUADSTACK_VERSION_H

#ifndef SQUADSTACK_VERSION
#error "SQUADSTACK_VERSION is not defined: build with the Makefile"
#endif

#endif							/* SQUADSTACK_VERSION_H */
