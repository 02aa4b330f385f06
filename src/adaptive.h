/*
 * adaptive.h: fleet-wide adaptive sampling through Redis (issue 15), a
 * module (module.h) on the control thread; see adaptive.c for how the
 * proxies count, elect a leader and share the probabilities, and
 * adaptive_calc.h for the arithmetic.
 */
#ifndef TB_ADAPTIVE_H
#define TB_ADAPTIVE_H

#include <jansson.h>

struct tb_module;

extern const struct tb_module adaptive_module;

/* This proxy's part for GET /sampling: {"enabled", "instance",
 * "is_leader", "lease_holder", "last_computed_here", "rounds", "flushes",
 * "redis_connected"}. New reference or NULL; control thread. */
json_t *adaptive_status_json(void);

#endif
