/*
 * viewer_assets.h: the viewer's static files (src/viewer/), embedded at
 * build time: scripts/embed-assets writes viewer_assets.c into the build
 * directory (a build output, not in git). No page loads anything from
 * another origin.
 */
#ifndef TB_VIEWER_ASSETS_H
#define TB_VIEWER_ASSETS_H

#include <stddef.h>

struct viewer_asset {
	const char *name;	/* "viewer.css" */
	const char *ctype;
	const unsigned char *data;
	size_t len;
};

/* Terminated by an entry whose name is NULL. */
extern const struct viewer_asset viewer_assets[];

#endif
