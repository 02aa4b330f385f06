/*
 * otlp.h: the edge span in OpenTelemetry's data model (OTLP/trace v1) and
 * its two wire encodings, protobuf (otlp_pb.c, our own small encoder: the
 * few message types of ExportTraceServiceRequest need varints, lengths and
 * fixed64, not a library) and the OTLP JSON mapping (otlp_json.c, jansson).
 * Pure: no I/O; the exporter that queues and sends them is sink_otlp.c.
 *
 * Ids follow osprofiler's own OTLP driver (osprofiler/drivers/otlp.py), so a
 * service using it behind tracebridge lands under the proxy span in the same
 * trace: trace id = uuid.UUID(base_id).int (128 bits), span id = the low 64
 * bits of the edge span's uuid (the parent the downstream service sees),
 * parent span id = the low 64 bits of the caller's span uuid.
 */
#ifndef TB_OTLP_H
#define TB_OTLP_H

#include <stddef.h>
#include <stdint.h>

struct span_rec;
struct span_buf;

enum otlp_value_type {
	OTLP_V_STR = 0,
	OTLP_V_INT,
	OTLP_V_DOUBLE,
};

/* One attribute; never owns its bytes. */
struct otlp_kv {
	const char *key;
	enum otlp_value_type type;
	const char *s;		/* OTLP_V_STR: s[0..slen) */
	size_t slen;
	int64_t i;		/* OTLP_V_INT */
	double d;		/* OTLP_V_DOUBLE */
};

#define OTLP_MAX_ATTRS	32

/* Span.kind and Status.code values of the proto. */
#define OTLP_KIND_SERVER	2
#define OTLP_STATUS_UNSET	0
#define OTLP_STATUS_ERROR	2

/*
 * One span, as otlp_span_from_rec() derives it. Its string pointers point
 * into the span_rec it was made from or into its own buf: it is valid
 * while both are.
 */
struct otlp_span {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t parent_span_id[8];
	int has_parent;			/* 0: the trace starts here */
	const char *trace_state;	/* W3C tracestate or NULL */
	size_t trace_state_len;
	const char *name;
	size_t name_len;
	uint64_t start_ns, end_ns;	/* unix nanoseconds */
	struct otlp_kv attrs[OTLP_MAX_ATTRS];
	size_t n_attrs;
	int status_code;		/* OTLP_STATUS_* */
	const char *status_message;	/* NULL: none */
	/* the "exception" event (at end_ns) when etype is set */
	const char *etype;
	const char *message;
	char buf[320];			/* derived strings: host, status text */
};

/*
 * Parse a uuid text (8-4-4-4-12, any case) into 16 big-endian bytes.
 * 0, or -1 when s is not one.
 */
int otlp_uuid_bytes(const char *s, uint8_t out[16]);

/*
 * Fill *o from r (see span.h for r's fields): ids, name (r->operation, or
 * r->name when there is none), times, the HTTP semantic-convention
 * attributes, status. 0, or -1 when the ids are not uuids.
 */
int otlp_span_from_rec(const struct span_rec *r, struct otlp_span *o);

/* ---- protobuf (otlp_pb.c) ---- */

/* Write v as a base-128 varint into out (at most 10 bytes); its length. */
size_t otlp_pb_varint(uint8_t *out, uint64_t v);

/* Append the Span message of s (its fields, no tag/length of its own). */
int otlp_pb_span(const struct otlp_span *s, struct span_buf *out);

/*
 * Append one ResourceSpans field (tag 1 of ExportTraceServiceRequest) with
 * the resource attributes res[0..n_res), one ScopeSpans of scope
 * (name, version) and the n already-encoded Span messages spans[i] of
 * lens[i] bytes. A request is such fields back to back (protobuf's
 * repeated fields concatenate), so a batch of several services is one
 * call per service. 0, or -1 on ENOMEM.
 */
int otlp_pb_resource_spans(struct span_buf *out, const struct otlp_kv *res,
    size_t n_res, const char *scope_name, const char *scope_version,
    const char *const *spans, const size_t *lens, size_t n);

/* ---- JSON (otlp_json.c), the OTLP/HTTP JSON mapping ---- */

/* Append s as one JSON object of the Span message (hex ids, integer
 * enums, 64-bit integers as strings). 0, or -1. */
int otlp_json_span(const struct otlp_span *s, struct span_buf *out);

/* Append one element of "resourceSpans" (the caller writes the
 * {"resourceSpans":[ ... ]} around them, joined by commas); spans[i] are
 * otlp_json_span() objects. 0, or -1. */
int otlp_json_resource_spans(struct span_buf *out, const struct otlp_kv *res,
    size_t n_res, const char *scope_name, const char *scope_version,
    const char *const *spans, const size_t *lens, size_t n);

#endif
