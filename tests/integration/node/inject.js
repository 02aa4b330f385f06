#!/usr/bin/env node
// Print the trace headers a real OpenTelemetry JS client would send.
//
//   node inject.js TRACE_ID SPAN_ID SAMPLED FORMAT [TRACESTATE|-] [BAGGAGE]
//
// TRACE_ID: 32 lowercase hex, SPAN_ID: 16 lowercase hex, SAMPLED: 1 or 0,
// FORMAT: w3c | b3single | b3multi | jaeger | xray. TRACESTATE (w3c only):
// a W3C tracestate list such as "vendor=value,other=x" ("-": none).
// BAGGAGE: "key=value,key=value" set as OpenTelemetry baggage; the jaeger
// propagator writes it as uberctx-* headers, for w3c the W3C baggage
// propagator adds a baggage header; the other formats carry none.
// Output: one JSON object {header-name: value} on stdout, exactly what the
// propagator's inject() put into the carrier. Used by test_trace_e2e.py.
'use strict';

const api = require('@opentelemetry/api');
const { W3CTraceContextPropagator, W3CBaggagePropagator, TraceState } =
  require('@opentelemetry/core');
const { B3Propagator, B3InjectEncoding } = require('@opentelemetry/propagator-b3');
const { JaegerPropagator } = require('@opentelemetry/propagator-jaeger');
const { AWSXRayPropagator } = require('@opentelemetry/propagator-aws-xray');

function usage(msg) {
  process.stderr.write(`inject.js: ${msg}\n` +
    'usage: inject.js TRACE_ID SPAN_ID SAMPLED FORMAT [TRACESTATE|-] [BAGGAGE]\n');
  process.exit(2);
}

const [traceId, spanId, sampled, format, tracestate, baggage] = process.argv.slice(2);
if (!format)
  usage('missing arguments');
if (!api.isValidTraceId(traceId))
  usage(`invalid trace id ${traceId}`);
if (!api.isValidSpanId(spanId))
  usage(`invalid span id ${spanId}`);
if (sampled !== '0' && sampled !== '1')
  usage('SAMPLED must be 0 or 1');

const propagators = {
  w3c: () => new W3CTraceContextPropagator(),
  b3single: () => new B3Propagator({ injectEncoding: B3InjectEncoding.SINGLE_HEADER }),
  b3multi: () => new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER }),
  jaeger: () => new JaegerPropagator(),
  xray: () => new AWSXRayPropagator(),
};
if (!(format in propagators))
  usage(`unknown format ${format}`);

const spanContext = {
  traceId,
  spanId,
  traceFlags: sampled === '1' ? api.TraceFlags.SAMPLED : api.TraceFlags.NONE,
  isRemote: false,
};
if (tracestate && tracestate !== '-')
  spanContext.traceState = new TraceState(tracestate);

let ctx = api.trace.setSpanContext(api.ROOT_CONTEXT, spanContext);
if (baggage) {
  const entries = {};
  for (const member of baggage.split(',')) {
    const eq = member.indexOf('=');
    if (eq <= 0)
      usage(`bad baggage member ${member}`);
    entries[member.slice(0, eq)] = { value: member.slice(eq + 1) };
  }
  ctx = api.propagation.setBaggage(ctx, api.propagation.createBaggage(entries));
}
const carrier = {};
propagators[format]().inject(ctx, carrier, api.defaultTextMapSetter);
if (baggage && format === 'w3c')
  new W3CBaggagePropagator().inject(ctx, carrier, api.defaultTextMapSetter);
if (Object.keys(carrier).length === 0)
  usage(`the ${format} propagator injected nothing`);
process.stdout.write(JSON.stringify(carrier) + '\n');
