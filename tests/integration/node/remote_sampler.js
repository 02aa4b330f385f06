// The real @opentelemetry/sampler-jaeger-remote against tracebridge's
// remote-sampling answer (tests/integration/test_adaptive.py, issue 15).
//
//   node remote_sampler.js ENDPOINT SERVICE N OPERATION...
//
// ENDPOINT is what an application would configure (the sampler GETs
// ENDPOINT/sampling?service=SERVICE). Fetches the strategies once, then
// decides N new root spans with random trace ids per operation and prints
// {"response": <what was served>, "rates": {OPERATION: sampled / N}}.
'use strict';

const crypto = require('crypto');
const api = require('@opentelemetry/api');
const { JaegerRemoteSampler } = require('@opentelemetry/sampler-jaeger-remote');

async function main() {
  const [endpoint, service, nText, ...ops] = process.argv.slice(2);
  const n = parseInt(nText, 10);
  const sampler = new JaegerRemoteSampler({
    endpoint,
    serviceName: service,
    poolingInterval: 3600 * 1000,
    initialSampler: { shouldSample: () => ({ decision: 0 }), toString: () => 'off' },
  });
  const response = await sampler.getSamplerConfig(service);
  await sampler.getAndUpdateSampler();
  const rates = {};
  for (const op of ops) {
    let sampled = 0;
    for (let i = 0; i < n; i++) {
      const traceId = crypto.randomBytes(16).toString('hex');
      const r = sampler.shouldSample(api.ROOT_CONTEXT, traceId, op,
        api.SpanKind.SERVER, {}, []);
      // SamplingDecision.RECORD_AND_SAMPLED
      if (r.decision === 2) sampled++;
    }
    rates[op] = sampled / n;
  }
  process.stdout.write(JSON.stringify({ response, rates }) + '\n');
  process.exit(0);   // the sampler's polling timer would keep us alive
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(1);
});
