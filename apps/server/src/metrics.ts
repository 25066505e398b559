/**
 * Prometheus metrics of one server (its own registry, so several servers can live in one
 * process, as tests start them).
 */
import type { GenerationUsage } from '@kascade/engine';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export interface ServerMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'endpoint' | 'status'>;
  readonly tokens: Counter<'kind'>;
  readonly prefillTokensPerS: Histogram<'policy'>;
  readonly decodeTokensPerS: Histogram<'policy'>;
  readonly attentionSeconds: Counter<'policy'>;
  readonly effectiveK: Gauge<'policy'>;
  readonly effectiveKRatio: Histogram<'policy'>;
  readonly queueDepth: Gauge;
  readonly inFlight: Gauge;
  readonly rejected: Counter<'reason'>;
  readonly cancelled: Counter<'phase'>;
  readonly requestSeconds: Histogram<'endpoint'>;
  /** Records what one finished generation did. */
  observe(usage: GenerationUsage): void;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): ServerMetrics {
  const registry = new Registry();
  if (options.defaultMetrics ?? true)
    collectDefaultMetrics({ register: registry, prefix: 'kascade_process_' });
  const registers = [registry];
  const rateBuckets = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 50000];
  const metrics: Omit<ServerMetrics, 'observe'> = {
    registry,
    requests: new Counter({
      name: 'kascade_requests_total',
      help: 'HTTP requests answered, by endpoint and status code',
      labelNames: ['endpoint', 'status'],
      registers,
    }),
    tokens: new Counter({
      name: 'kascade_tokens_total',
      help: 'Tokens processed: prompt (prefill) and completion (decode)',
      labelNames: ['kind'],
      registers,
    }),
    prefillTokensPerS: new Histogram({
      name: 'kascade_prefill_tokens_per_second',
      help: 'Prefill throughput of each generation, tokens/s',
      labelNames: ['policy'],
      buckets: rateBuckets,
      registers,
    }),
    decodeTokensPerS: new Histogram({
      name: 'kascade_decode_tokens_per_second',
      help: 'Decode throughput of each generation, tokens/s',
      labelNames: ['policy'],
      buckets: rateBuckets,
      registers,
    }),
    attentionSeconds: new Counter({
      name: 'kascade_attention_seconds_total',
      help: 'Wall time spent inside attention ops',
      labelNames: ['policy'],
      registers,
    }),
    effectiveK: new Gauge({
      name: 'kascade_effective_k',
      help: 'Mean keys attended per KV head per decode step in sparse layers, last generation',
      labelNames: ['policy'],
      registers,
    }),
    effectiveKRatio: new Histogram({
      name: 'kascade_effective_k_ratio',
      help: 'Effective k over the context length, per generation',
      labelNames: ['policy'],
      buckets: [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1],
      registers,
    }),
    queueDepth: new Gauge({ name: 'kascade_queue_depth', help: 'Requests waiting for a slot', registers }),
    inFlight: new Gauge({ name: 'kascade_in_flight', help: 'Generations running now', registers }),
    rejected: new Counter({
      name: 'kascade_rejected_total',
      help: 'Requests refused before generating, by reason',
      labelNames: ['reason'],
      registers,
    }),
    cancelled: new Counter({
      name: 'kascade_cancelled_total',
      help: 'Generations cancelled because the client went away or the server shut down',
      labelNames: ['phase'],
      registers,
    }),
    requestSeconds: new Histogram({
      name: 'kascade_request_duration_seconds',
      help: 'Time from request to the last byte of the answer',
      labelNames: ['endpoint'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
  };
  return {
    ...metrics,
    observe(usage: GenerationUsage): void {
      const policy = usage.kascade.policy;
      metrics.tokens.inc({ kind: 'prompt' }, usage.promptTokens);
      metrics.tokens.inc({ kind: 'completion' }, usage.completionTokens);
      if (Number.isFinite(usage.prefillTokensPerS) && usage.promptTokens > 0) {
        metrics.prefillTokensPerS.observe({ policy }, usage.prefillTokensPerS);
      }
      if (Number.isFinite(usage.decodeTokensPerS) && usage.completionTokens > 0) {
        metrics.decodeTokensPerS.observe({ policy }, usage.decodeTokensPerS);
      }
      if (Number.isFinite(usage.attentionMs))
        metrics.attentionSeconds.inc({ policy }, usage.attentionMs / 1000);
      if (Number.isFinite(usage.kascade.effectiveK)) {
        metrics.effectiveK.set({ policy }, usage.kascade.effectiveK);
        if (usage.kascade.contextKeys > 0) {
          metrics.effectiveKRatio.observe({ policy }, usage.kascade.effectiveK / usage.kascade.contextKeys);
        }
      }
    },
  };
}
