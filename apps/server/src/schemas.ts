/**
 * Request bodies of the OpenAI endpoints, validated with zod. A failed parse becomes a 400
 * whose `param` names the first offending field (e.g. `messages[0].content`).
 */
import { z } from 'zod';
import { type HttpError, invalidRequest } from './errors.js';

export const POLICY_NAMES = ['dense', 'kascade', 'oracle-topk', 'all-heads-pooled', 'streaming'] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];

/** The `kascade` extension field: which attention policy serves this request. */
export const kascadeFieldSchema = z.strictObject({
  policy: z.enum(POLICY_NAMES, { error: `must be one of ${POLICY_NAMES.join(', ')}` }),
  decodeOnly: z.boolean().optional(),
  /** A plan object as `@kascade/anchors` writes it; validated with `parsePlan`. */
  plan: z.record(z.string(), z.unknown(), { error: 'must be a plan object' }).optional(),
});
export type KascadeField = z.infer<typeof kascadeFieldSchema>;

const zeroOnly = (what: string) =>
  z
    .number()
    .refine((v) => v === 0, { error: `${what} is not supported by this server (only 0)` })
    .nullable()
    .optional();

const commonFields = {
  model: z.string().optional(),
  max_tokens: z.number().int().min(1).nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().gt(0).max(1).nullable().optional(),
  /** Extension (vLLM, llama.cpp): keep the `top_k` most likely tokens; 0 disables. */
  top_k: z.number().int().min(0).nullable().optional(),
  n: z
    .number()
    .int()
    .refine((v) => v === 1, { error: 'only n = 1 is supported' })
    .nullable()
    .optional(),
  stream: z.boolean().nullable().optional(),
  stream_options: z.strictObject({ include_usage: z.boolean().optional() }).nullable().optional(),
  stop: z
    .union([z.string().min(1), z.array(z.string().min(1)).max(4)], {
      error: 'must be a non-empty string or an array of at most 4 non-empty strings',
    })
    .nullable()
    .optional(),
  seed: z.number().int().nullable().optional(),
  user: z.string().optional(),
  presence_penalty: zeroOnly('presence_penalty'),
  frequency_penalty: zeroOnly('frequency_penalty'),
  kascade: kascadeFieldSchema.optional(),
};

export const completionRequestSchema = z.object({
  ...commonFields,
  prompt: z.union([z.string(), z.array(z.string()).length(1)], {
    error: 'must be a string (or an array holding exactly one string); token arrays are not supported',
  }),
  echo: z
    .boolean()
    .refine((v) => !v, { error: 'echo is not supported' })
    .nullable()
    .optional(),
  logprobs: z.null({ error: 'logprobs are not supported' }).optional(),
  suffix: z.null({ error: 'suffix is not supported' }).optional(),
});
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

const contentPart = z.strictObject({ type: z.literal('text'), text: z.string() });

export const chatMessageSchema = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool'], {
    error: 'must be one of system, developer, user, assistant, tool',
  }),
  content: z.union([z.string(), z.array(contentPart)], {
    error: 'must be a string or an array of {type: "text", text} parts',
  }),
  name: z.string().optional(),
});

export const chatRequestSchema = z.object({
  ...commonFields,
  messages: z.array(chatMessageSchema).min(1, { error: 'must hold at least one message' }),
  max_completion_tokens: z.number().int().min(1).nullable().optional(),
  logprobs: z
    .boolean()
    .refine((v) => !v, { error: 'logprobs are not supported' })
    .nullable()
    .optional(),
  tools: z.array(z.unknown()).max(0, { error: 'tools are not supported' }).nullable().optional(),
});
export type ChatRequest = z.infer<typeof chatRequestSchema>;

/** `messages[0].content` style, as OpenAI names nested fields. */
export function formatPath(path: readonly PropertyKey[]): string | null {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out === '' ? null : out;
}

/** Parses `body` or returns the 400 naming the first bad field. */
export function parseBody<T>(
  schema: z.ZodType<T>,
  body: unknown,
): { ok: true; value: T } | { ok: false; error: HttpError } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return {
      ok: false,
      error: invalidRequest('the request body must be a JSON object', null, 'invalid_body'),
    };
  }
  const parsed = schema.safeParse(body);
  if (parsed.success) return { ok: true, value: parsed.data };
  const issue = parsed.error.issues[0]!;
  const param = formatPath(issue.path);
  const message = param === null ? issue.message : `Invalid '${param}': ${issue.message}`;
  return { ok: false, error: invalidRequest(message, param, 'invalid_value') };
}
