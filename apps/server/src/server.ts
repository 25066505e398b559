/**
 * The OpenAI-compatible HTTP server: `buildServer({ engine })` wires routes, the bounded
 * queue, metrics and the playground around any `KascadeEngine`.
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import { KascadeRangeError } from '@kascade/core';
import type {
  ChatMessage,
  GenerateInput,
  GenerateOptions,
  Generation,
  GenerationUsage,
  KascadeEngine,
  PolicySpec,
} from '@kascade/engine';
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { HttpError, invalidRequest } from './errors.js';
import { createMetrics, type ServerMetrics } from './metrics.js';
import { QueueAbortedError, QueueFullError, Scheduler } from './scheduler.js';
import {
  type ChatRequest,
  type CompletionRequest,
  chatRequestSchema,
  completionRequestSchema,
  type KascadeField,
  parseBody,
} from './schemas.js';

export interface ServerLimits {
  /** Most prompt tokens a request may send (after the chat template). */
  readonly maxPromptTokens: number;
  /** Most tokens a request may ask to generate (`max_tokens`). */
  readonly maxTokens: number;
  /** Largest request body, bytes. */
  readonly bodyLimitBytes: number;
}

export interface BuildServerOptions {
  readonly engine: KascadeEngine;
  /** Validated plan served by default (`kascade` policy); defaults to `engine.defaultPlan`. */
  readonly plan?: unknown;
  /**
   * Validates a plan sent in a request's `kascade.plan` and returns the validated plan;
   * throws with a message saying what is wrong. Without it, request plans are refused.
   */
  readonly validatePlan?: (raw: unknown) => unknown;
  /** Generations that run at once (default 1). */
  readonly concurrency?: number;
  /** Requests that may wait for a slot (default 16). */
  readonly maxQueue?: number;
  readonly limits?: Partial<ServerLimits>;
  /** Seconds a client is told to wait after a 429 (default 1). */
  readonly retryAfterS?: number;
  /** fastify's logger option (default off). */
  readonly logger?: boolean;
  /** Also export Node process metrics (default true). */
  readonly processMetrics?: boolean;
}

export interface KascadeServer {
  readonly app: FastifyInstance;
  readonly engine: KascadeEngine;
  readonly scheduler: Scheduler;
  readonly metrics: ServerMetrics;
  readonly limits: ServerLimits;
  /** Generations holding a slot now (they hold KV caches). */
  readonly inFlight: number;
  /** Listens and resolves with the address, e.g. `http://127.0.0.1:8080`. */
  listen(options: { host?: string; port?: number }): Promise<string>;
  /**
   * Stops accepting requests, lets in-flight ones finish for up to `graceMs` (default
   * 10 s), cancels the rest, then closes the server. Connections whose generation has not
   * ended `forceMs` (default 5 s) after its cancellation are cut.
   */
  shutdown(options?: { graceMs?: number; forceMs?: number }): Promise<void>;
}

/** The playground's folder (`apps/server/public`), the same from `src/` and `dist/`. */
export const PUBLIC_DIR = fileURLToPath(new URL('../public/', import.meta.url));

const DEFAULT_LIMITS = { maxTokens: 1024, bodyLimitBytes: 1 << 20 };

type Endpoint = 'completions' | 'chat';

interface Prepared {
  readonly endpoint: Endpoint;
  readonly input: GenerateInput;
  readonly options: Omit<GenerateOptions, 'signal'>;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly promptTokens: number;
}

function requestId(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString('hex')}`;
}

function positiveInt(name: string, value: number): number {
  if (!(Number.isInteger(value) && value >= 1))
    throw new RangeError(`${name} must be an integer >= 1, got ${value}`);
  return value;
}

function sseWrite(res: ServerResponse, payload: string): Promise<void> {
  if (res.destroyed || res.writableEnded) return Promise.resolve();
  if (res.write(`data: ${payload}\n\n`)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

export function usageBody(usage: GenerationUsage, decodeOnly: boolean | undefined) {
  const k = usage.kascade;
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.promptTokens + usage.completionTokens,
    kascade: {
      policy: k.policy,
      ...(decodeOnly === undefined ? {} : { decode_only: decodeOnly }),
      effective_k: k.effectiveK,
      context_keys: k.contextKeys,
      anchor_layers: [...k.anchorLayers],
      anchors_hit: k.anchorsHit,
      prefill_tokens_per_s: usage.prefillTokensPerS,
      decode_tokens_per_s: usage.decodeTokensPerS,
      attention_ms: usage.attentionMs,
      total_ms: usage.totalMs,
    },
  };
}

export async function buildServer(options: BuildServerOptions): Promise<KascadeServer> {
  const { engine } = options;
  const model = engine.model;
  const limits: ServerLimits = {
    maxPromptTokens: positiveInt('maxPromptTokens', options.limits?.maxPromptTokens ?? model.maxContext),
    maxTokens: positiveInt(
      'maxTokens',
      options.limits?.maxTokens ?? Math.min(DEFAULT_LIMITS.maxTokens, model.maxContext),
    ),
    bodyLimitBytes: positiveInt(
      'bodyLimitBytes',
      options.limits?.bodyLimitBytes ?? DEFAULT_LIMITS.bodyLimitBytes,
    ),
  };
  const scheduler = new Scheduler({
    concurrency: options.concurrency ?? 1,
    maxQueue: options.maxQueue ?? 16,
  });
  const metrics = createMetrics({ defaultMetrics: options.processMetrics ?? true });
  const retryAfterS = options.retryAfterS ?? 1;
  const serverPlan = options.plan ?? engine.defaultPlan;
  const defaultPolicy: PolicySpec =
    serverPlan !== undefined ? { kind: 'kascade', plan: serverPlan } : { kind: 'dense' };
  const controllers = new Set<AbortController>();
  let draining = false;
  const created = Math.floor(Date.now() / 1000);

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: limits.bodyLimitBytes,
    forceCloseConnections: 'idle',
  });

  // Every body is read as JSON whatever its content type (curl -d sends form encoding).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') {
      done(invalidRequest('the request body is empty; send a JSON object', null, 'invalid_json'), undefined);
      return;
    }
    try {
      done(null, JSON.parse(text));
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      done(invalidRequest(`the request body is not valid JSON: ${why}`, null, 'invalid_json'), undefined);
    }
  });

  app.setErrorHandler((error: FastifyError | HttpError | KascadeRangeError, request, reply) => {
    if (error instanceof HttpError) {
      void reply.code(error.statusCode).headers(error.headers).send(error.toBody());
      return;
    }
    if (error instanceof KascadeRangeError) {
      // The engine refused an argument the schema let through: the request is at fault.
      void reply.code(400).send(invalidRequest(error.message, null, 'invalid_value').toBody());
      return;
    }
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const body = invalidRequest(
        `the request body is larger than this server's limit of ${limits.bodyLimitBytes} bytes (--body-limit)`,
        null,
        'body_too_large',
      );
      void reply.code(400).send(body.toBody());
      return;
    }
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      void reply.code(status).send(new HttpError(status, error.message, 'invalid_request_error').toBody());
      return;
    }
    request.log.error(error);
    void reply
      .code(500)
      .send(
        new HttpError(
          500,
          `internal error: ${error.message}`,
          'server_error',
          null,
          'internal_error',
        ).toBody(),
      );
  });

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0];
    void reply
      .code(404)
      .send(
        new HttpError(
          404,
          `no route for ${request.method} ${path}`,
          'not_found_error',
          null,
          'not_found',
        ).toBody(),
      );
  });

  app.addHook('onResponse', async (request, reply) => {
    const endpoint = request.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ endpoint, status: String(reply.statusCode) });
    metrics.requestSeconds.observe({ endpoint }, reply.elapsedTime / 1000);
  });

  const updateGauges = () => {
    metrics.queueDepth.set(scheduler.queued);
    metrics.inFlight.set(scheduler.running);
  };

  function resolvePolicy(field: KascadeField | undefined): PolicySpec {
    if (field === undefined) return defaultPolicy;
    let plan = serverPlan;
    if (field.plan !== undefined) {
      if (options.validatePlan === undefined) {
        throw invalidRequest('this server does not accept plans in requests', 'kascade.plan', 'invalid_plan');
      }
      try {
        plan = options.validatePlan(field.plan);
      } catch (error) {
        const why = error instanceof Error ? error.message : String(error);
        throw invalidRequest(`Invalid 'kascade.plan': ${why}`, 'kascade.plan', 'invalid_plan');
      }
    }
    const decodeOnly = field.decodeOnly;
    const withDecodeOnly = decodeOnly === undefined ? {} : { decodeOnly };
    switch (field.policy) {
      case 'dense':
        return { kind: 'dense' };
      case 'kascade':
      case 'all-heads-pooled':
        if (plan === undefined) {
          throw invalidRequest(
            `policy '${field.policy}' needs a plan: this server has none loaded (start it with --plan FILE) and the request sent no 'kascade.plan'`,
            'kascade.plan',
            'plan_required',
          );
        }
        return { kind: field.policy, plan, ...withDecodeOnly };
      case 'oracle-topk':
        return { kind: 'oracle-topk', ...withDecodeOnly };
      case 'streaming':
        return { kind: 'streaming', ...withDecodeOnly };
    }
  }

  function checkModel(requested: string | undefined): void {
    if (requested === undefined || requested === model.id) return;
    throw new HttpError(
      404,
      `The model '${requested}' does not exist; this server serves '${model.id}' (see GET /v1/models)`,
      'invalid_request_error',
      'model',
      'model_not_found',
    );
  }

  function countPrompt(input: GenerateInput, param: string): number {
    try {
      return engine.countTokens(input);
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      throw invalidRequest(`Invalid '${param}': ${why}`, param, 'invalid_value');
    }
  }

  /** Limits and the sampler's options, shared by both endpoints. */
  function prepare(
    endpoint: Endpoint,
    body: CompletionRequest | ChatRequest,
    input: GenerateInput,
    inputParam: string,
    requestedMax: { value: number | null | undefined; param: string },
  ): Prepared {
    checkModel(body.model);
    const policy = resolvePolicy(body.kascade);
    const promptTokens = countPrompt(input, inputParam);
    if (promptTokens > limits.maxPromptTokens) {
      throw invalidRequest(
        `'${inputParam}' is ${promptTokens} tokens, over this server's limit of ${limits.maxPromptTokens} prompt tokens`,
        inputParam,
        'context_length_exceeded',
      );
    }
    const room = model.maxContext - promptTokens;
    let maxTokens: number;
    if (requestedMax.value === null || requestedMax.value === undefined) {
      // OpenAI's defaults: 16 for completions, "as many as fit" for chat (capped by the server limit).
      maxTokens = Math.min(endpoint === 'completions' ? 16 : limits.maxTokens, limits.maxTokens, room);
      if (maxTokens < 1) {
        throw invalidRequest(
          `'${inputParam}' is ${promptTokens} tokens and leaves no room to generate in the model's context of ${model.maxContext}`,
          inputParam,
          'context_length_exceeded',
        );
      }
    } else {
      maxTokens = requestedMax.value;
      if (maxTokens > limits.maxTokens) {
        throw invalidRequest(
          `'${requestedMax.param}' is ${maxTokens}, over this server's limit of ${limits.maxTokens} (--max-tokens)`,
          requestedMax.param,
          'max_tokens_exceeded',
        );
      }
      if (maxTokens > room) {
        throw invalidRequest(
          `'${requestedMax.param}' is ${maxTokens} but the prompt takes ${promptTokens} of the model's ${model.maxContext} context tokens, leaving ${room}`,
          requestedMax.param,
          'context_length_exceeded',
        );
      }
    }
    const stop =
      body.stop === null || body.stop === undefined
        ? []
        : typeof body.stop === 'string'
          ? [body.stop]
          : body.stop;
    const generateOptions: Omit<GenerateOptions, 'signal'> = {
      maxTokens,
      policy,
      ...(body.temperature !== null && body.temperature !== undefined
        ? { temperature: body.temperature }
        : {}),
      ...(body.top_p !== null && body.top_p !== undefined ? { topP: body.top_p } : {}),
      ...(body.top_k !== null && body.top_k !== undefined ? { topK: body.top_k } : {}),
      ...(body.seed !== null && body.seed !== undefined ? { seed: body.seed } : {}),
      ...(stop.length > 0 ? { stop } : {}),
    };
    return {
      endpoint,
      input,
      options: generateOptions,
      stream: body.stream === true,
      includeUsage: body.stream_options?.include_usage === true,
      promptTokens,
    };
  }

  /** Queue, generate, answer (JSON or SSE); aborts when the client goes away. */
  async function serve(
    request: FastifyRequest,
    reply: FastifyReply,
    prepared: Prepared,
    kascade: KascadeField | undefined,
  ) {
    if (draining) {
      throw new HttpError(503, 'the server is shutting down', 'service_unavailable', null, 'shutting_down', {
        'retry-after': String(retryAfterS),
      });
    }
    const controller = new AbortController();
    controllers.add(controller);
    let answered = false;
    const onClose = () => {
      if (!answered && !controller.signal.aborted) {
        controller.abort(new Error('client disconnected'));
      }
    };
    reply.raw.on('close', onClose);
    let release: (() => void) | undefined;
    try {
      try {
        const pending = scheduler.acquire(controller.signal);
        updateGauges();
        release = await pending;
        updateGauges();
      } catch (error) {
        updateGauges();
        if (error instanceof QueueFullError) {
          metrics.rejected.inc({ reason: 'queue_full' });
          throw new HttpError(429, error.message, 'rate_limit_error', null, 'queue_full', {
            'retry-after': String(retryAfterS),
          });
        }
        if (error instanceof QueueAbortedError) {
          metrics.cancelled.inc({ phase: 'queued' });
          answered = true;
          if (controller.signal.reason instanceof ShutdownSignal) {
            throw new HttpError(503, 'the server shut down', 'service_unavailable', null, 'shutting_down');
          }
          return reply.hijack(); // the client is gone: nothing to answer
        }
        throw error;
      }
      const gen: Generation = engine.generate(prepared.input, {
        ...prepared.options,
        signal: controller.signal,
      });
      gen.usage.catch(() => {});
      const id = requestId(prepared.endpoint === 'chat' ? 'chatcmpl' : 'cmpl');
      const createdAt = Math.floor(Date.now() / 1000);
      const decodeOnly = kascade?.decodeOnly;
      if (prepared.stream) {
        await streamAnswer(request, reply, prepared, gen, id, createdAt, decodeOnly, controller);
        answered = true;
        return;
      }
      let text = '';
      try {
        for await (const chunk of gen) text += chunk.text;
      } catch (error) {
        if (!controller.signal.aborted) throw error;
      }
      const usage = await gen.usage;
      metrics.observe(usage);
      if (controller.signal.aborted) {
        metrics.cancelled.inc({ phase: usage.completionTokens > 0 ? 'decode' : 'prefill' });
        if (controller.signal.reason instanceof ShutdownSignal) {
          throw new HttpError(
            503,
            'the server shut down before the generation finished',
            'service_unavailable',
            null,
            'shutting_down',
          );
        }
        answered = true;
        return reply.hijack();
      }
      answered = true;
      const finishReason = usage.finishReason;
      const common = { id, created: createdAt, model: model.id, system_fingerprint: null };
      const usageJson = usageBody(usage, decodeOnly);
      if (prepared.endpoint === 'chat') {
        return {
          ...common,
          object: 'chat.completion',
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: text, refusal: null },
              logprobs: null,
              finish_reason: finishReason,
            },
          ],
          usage: usageJson,
        };
      }
      return {
        ...common,
        object: 'text_completion',
        choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }],
        usage: usageJson,
      };
    } finally {
      reply.raw.off('close', onClose);
      controllers.delete(controller);
      release?.();
      updateGauges();
    }
  }

  async function streamAnswer(
    request: FastifyRequest,
    reply: FastifyReply,
    prepared: Prepared,
    gen: Generation,
    id: string,
    createdAt: number,
    decodeOnly: boolean | undefined,
    controller: AbortController,
  ): Promise<void> {
    const endpointLabel = request.routeOptions.url ?? prepared.endpoint;
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    const chat = prepared.endpoint === 'chat';
    const object = chat ? 'chat.completion.chunk' : 'text_completion';
    const frame = (choices: unknown[], extra: Record<string, unknown> = {}) =>
      JSON.stringify({
        id,
        object,
        created: createdAt,
        model: model.id,
        system_fingerprint: null,
        choices,
        ...extra,
      });
    const usageNull = prepared.includeUsage ? { usage: null } : {};
    if (chat) {
      await sseWrite(
        res,
        frame(
          [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }],
          usageNull,
        ),
      );
    }
    let failure: unknown;
    try {
      for await (const chunk of gen) {
        if (chunk.text === '') continue;
        const choice = chat
          ? { index: 0, delta: { content: chunk.text }, logprobs: null, finish_reason: null }
          : { index: 0, text: chunk.text, logprobs: null, finish_reason: null };
        await sseWrite(res, frame([choice], usageNull));
      }
    } catch (error) {
      if (!controller.signal.aborted) failure = error;
    }
    let usage: GenerationUsage | undefined;
    try {
      usage = await gen.usage;
      metrics.observe(usage);
    } catch (error) {
      failure ??= error;
    }
    const aborted = controller.signal.aborted;
    if (aborted)
      metrics.cancelled.inc({
        phase: usage !== undefined && usage.completionTokens > 0 ? 'decode' : 'prefill',
      });
    let status = 200;
    if (failure !== undefined || usage === undefined) {
      status = 500;
      const message = failure instanceof Error ? failure.message : String(failure);
      request.log.error(failure);
      await sseWrite(
        res,
        JSON.stringify(
          new HttpError(500, `internal error: ${message}`, 'server_error', null, 'internal_error').toBody(),
        ),
      );
    } else if (aborted) {
      if (controller.signal.reason instanceof ShutdownSignal) {
        await sseWrite(
          res,
          JSON.stringify(
            new HttpError(
              503,
              'the server shut down before the generation finished',
              'service_unavailable',
              null,
              'shutting_down',
            ).toBody(),
          ),
        );
      }
    } else {
      const finish = usage.finishReason;
      const last = chat
        ? { index: 0, delta: {}, logprobs: null, finish_reason: finish }
        : { index: 0, text: '', logprobs: null, finish_reason: finish };
      await sseWrite(res, frame([last], usageNull));
      if (prepared.includeUsage) await sseWrite(res, frame([], { usage: usageBody(usage, decodeOnly) }));
    }
    if (!res.destroyed && !res.writableEnded) {
      await sseWrite(res, '[DONE]');
      res.end();
    }
    metrics.requests.inc({ endpoint: endpointLabel, status: aborted ? 'aborted' : String(status) });
    metrics.requestSeconds.observe({ endpoint: endpointLabel }, reply.elapsedTime / 1000);
  }

  app.post('/v1/completions', async (request, reply) => {
    const parsed = parseBody(completionRequestSchema, request.body);
    if (!parsed.ok) throw parsed.error;
    const body = parsed.value;
    const prompt = typeof body.prompt === 'string' ? body.prompt : body.prompt[0]!;
    const prepared = prepare('completions', body, prompt, 'prompt', {
      value: body.max_tokens,
      param: 'max_tokens',
    });
    return serve(request, reply, prepared, body.kascade);
  });

  app.post('/v1/chat/completions', async (request, reply) => {
    const parsed = parseBody(chatRequestSchema, request.body);
    if (!parsed.ok) throw parsed.error;
    const body = parsed.value;
    const messages: ChatMessage[] = body.messages.map((m) => ({
      role: m.role === 'developer' ? 'system' : m.role,
      content: typeof m.content === 'string' ? m.content : m.content.map((part) => part.text).join(''),
    }));
    const requestedMax =
      body.max_completion_tokens !== null && body.max_completion_tokens !== undefined
        ? { value: body.max_completion_tokens, param: 'max_completion_tokens' }
        : { value: body.max_tokens, param: 'max_tokens' };
    const prepared = prepare('chat', body, messages, 'messages', requestedMax);
    return serve(request, reply, prepared, body.kascade);
  });

  const modelCard = () => ({
    id: model.id,
    object: 'model',
    created,
    owned_by: 'kascade',
    kascade: {
      architecture: model.architecture,
      layers: model.layers,
      heads: model.heads,
      kv_heads: model.kvHeads,
      head_dim: model.headDim,
      vocab_size: model.vocabSize,
      max_context: model.maxContext,
      random_weights: model.randomWeights,
      backend: engine.backend.backend,
      backend_reason: engine.backend.reason,
      default_policy: defaultPolicy.kind,
      plan_loaded: serverPlan !== undefined,
      accepts_request_plans: options.validatePlan !== undefined,
      limits: {
        max_prompt_tokens: limits.maxPromptTokens,
        max_tokens: limits.maxTokens,
        body_limit_bytes: limits.bodyLimitBytes,
      },
    },
  });

  app.get('/v1/models', async () => ({ object: 'list', data: [modelCard()] }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request) => {
    if (request.params.id !== model.id) checkModel(request.params.id);
    return modelCard();
  });

  app.get('/health', async (_request, reply) => {
    if (draining) void reply.code(503);
    return {
      status: draining ? 'draining' : 'ok',
      model: model.id,
      backend: engine.backend.backend,
      inFlight: scheduler.running,
      queued: scheduler.queued,
      concurrency: scheduler.concurrency,
      maxQueue: scheduler.maxQueue,
    };
  });

  app.get('/metrics', async (_request, reply) => {
    updateGauges();
    void reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  await app.register(fastifyStatic, { root: PUBLIC_DIR, prefix: '/', index: 'index.html', wildcard: false });

  return {
    app,
    engine,
    scheduler,
    metrics,
    limits,
    get inFlight() {
      return scheduler.running;
    },
    async listen({ host = '127.0.0.1', port = 8080 }) {
      return app.listen({ host, port });
    },
    async shutdown({ graceMs = 10_000, forceMs = 5000 } = {}) {
      draining = true;
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), graceMs);
      });
      const outcome = await Promise.race([scheduler.whenIdle().then(() => 'idle' as const), timedOut]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        for (const controller of controllers) controller.abort(new ShutdownSignal());
        // An engine that ignores its abort signal must not hold the process: after `forceMs`
        // more, cut the remaining connections.
        let forced: NodeJS.Timeout | undefined;
        const cut = new Promise<'cut'>((resolve) => {
          forced = setTimeout(() => resolve('cut'), forceMs);
        });
        if ((await Promise.race([scheduler.whenIdle().then(() => 'idle' as const), cut])) === 'cut') {
          app.server.closeAllConnections();
        }
        clearTimeout(forced);
      }
      await app.close();
    },
  };
}

/** Abort reason of generations cancelled by {@link KascadeServer.shutdown}. */
class ShutdownSignal extends Error {
  override readonly name = 'ShutdownSignal';
  constructor() {
    super('server shutting down');
  }
}
