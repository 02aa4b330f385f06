#!/usr/bin/env node
// A real OTLP/HTTP trace receiver for tests/integration/test_otlp.py.
//
// Protobuf bodies are decoded by OpenTelemetry's own generated code
// (@opentelemetry/otlp-transformer 0.216.0, build/src/generated/root.js:
// ExportTraceServiceRequest.decode), not by anything of ours; gzip by zlib;
// JSON bodies by JSON.parse (the OTLP JSON mapping: hex ids, strings for
// 64-bit integers). Each request is appended as one JSON line to --out:
// {method, path, headers, status, body: the decoded request with ids as
// lowercase hex}.
//
// Usage: otlp_receiver.js --out FILE [--port N] [--fail N] [--fail-status S]
//   [--retry-after S] [--status S] [--partial N] [--tls CERT KEY] [--discard]
//   [--delay-first MS]
// prints {"port": N} on stdout once listening. --fail N: the first N export
// requests get --fail-status (503) with Retry-After; --status: every answer
// has that status; --partial N: 200 with partial_success rejecting N spans;
// --delay-first MS: the first request is answered MS milliseconds late;
// --discard: no decoding, count requests only (benchmarks), nothing written.
'use strict';
const fs = require('fs');
const http = require('http');
const https = require('https');
const zlib = require('zlib');
const root = require('@opentelemetry/otlp-transformer/build/src/generated/root.js');

const Req = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
const Resp = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse;

const args = process.argv.slice(2);
const opt = { port: 0, fail: 0, failStatus: 503, retryAfter: '1', status: 200,
  partial: 0, out: null, tls: null, discard: false, delayFirst: 0 };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--port') opt.port = Number(args[++i]);
  else if (a === '--fail') opt.fail = Number(args[++i]);
  else if (a === '--fail-status') opt.failStatus = Number(args[++i]);
  else if (a === '--retry-after') opt.retryAfter = args[++i];
  else if (a === '--status') opt.status = Number(args[++i]);
  else if (a === '--partial') opt.partial = Number(args[++i]);
  else if (a === '--out') opt.out = args[++i];
  else if (a === '--tls') { opt.tls = { cert: args[++i], key: args[++i] }; }
  else if (a === '--discard') opt.discard = true;
  else if (a === '--delay-first') opt.delayFirst = Number(args[++i]);
  else { console.error('unknown argument ' + a); process.exit(2); }
}

function hexIds(o) {
  // protobufjs gives bytes as Buffers; the JSON mapping writes hex
  for (const rs of o.resourceSpans || [])
    for (const ss of rs.scopeSpans || [])
      for (const s of ss.spans || [])
        for (const k of ['traceId', 'spanId', 'parentSpanId'])
          if (s[k] !== undefined && typeof s[k] !== 'string')
            s[k] = Buffer.from(s[k]).toString('hex');
  return o;
}

let requests = 0, spans = 0;

function countSpans(o) {
  let n = 0;
  for (const rs of o.resourceSpans || [])
    for (const ss of rs.scopeSpans || [])
      n += (ss.spans || []).length;
  return n;
}

function handle(req, res) {
  if (opt.discard) {
    // a collector that costs nothing: read, answer, count requests only
    req.on('data', () => {});
    req.on('end', () => { requests++; res.writeHead(200, { 'Content-Length': 0 }); res.end(); });
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let raw = Buffer.concat(chunks);
    const rec = { method: req.method, path: req.url, headers: req.headers };
    const isJson = (req.headers['content-type'] || '').startsWith('application/json');
    try {
      if (req.headers['content-encoding'] === 'gzip') raw = zlib.gunzipSync(raw);
      if (isJson) rec.body = JSON.parse(raw.toString('utf8'));
      else rec.body = hexIds(Req.toObject(Req.decode(raw),
        { longs: String, enums: Number, bytes: Buffer, defaults: false }));
    } catch (e) {
      rec.error = String(e);
    }
    requests++;
    let status = opt.status;
    const hdrs = {};
    if (opt.fail > 0) {
      opt.fail--;
      status = opt.failStatus;
      if (opt.retryAfter !== '') hdrs['Retry-After'] = opt.retryAfter;
    } else if (rec.error) {
      status = 400;
    }
    rec.status = status;
    if (status === 200 && rec.body) spans += countSpans(rec.body);
    let body = Buffer.alloc(0);
    if (status === 200 && opt.partial > 0) {
      const p = { partialSuccess: { rejectedSpans: opt.partial, errorMessage: 'too old' } };
      body = isJson ? Buffer.from(JSON.stringify({ partialSuccess:
        { rejectedSpans: String(opt.partial), errorMessage: 'too old' } }))
        : Buffer.from(Resp.encode(Resp.fromObject(p)).finish());
    }
    hdrs['Content-Type'] = isJson ? 'application/json' : 'application/x-protobuf';
    hdrs['Content-Length'] = body.length;
    const answer = () => {
      if (!opt.discard && opt.out) fs.appendFileSync(opt.out, JSON.stringify(rec) + '\n');
      res.writeHead(status, hdrs);
      res.end(body);
    };
    if (requests === 1 && opt.delayFirst > 0) {
      rec.delayed = true;
      setTimeout(answer, opt.delayFirst);
    } else answer();
  });
}

const server = opt.tls
  ? https.createServer({ cert: fs.readFileSync(opt.tls.cert), key: fs.readFileSync(opt.tls.key) }, handle)
  : http.createServer(handle);
server.keepAliveTimeout = 60000;
server.listen(opt.port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
process.on('SIGUSR1', () => {
  process.stdout.write(JSON.stringify({ requests, spans }) + '\n');
});
process.on('SIGTERM', () => {
  process.stdout.write(JSON.stringify({ requests, spans }) + '\n');
  process.exit(0);
});
