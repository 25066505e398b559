/**
 * OpenAI-style error bodies: `{ error: { message, type, param, code } }`.
 * Every non-2xx answer of the server has this shape, so clients can show `message`.
 */

export type OpenAIErrorType =
  | 'invalid_request_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'service_unavailable';

export interface OpenAIErrorBody {
  readonly error: {
    readonly message: string;
    readonly type: OpenAIErrorType;
    readonly param: string | null;
    readonly code: string | null;
  };
}

/** A request the server refuses, with the HTTP status and the OpenAI error body it answers. */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly statusCode: number,
    message: string,
    readonly type: OpenAIErrorType,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 naming the field (`param`) that is wrong. */
export function invalidRequest(message: string, param: string | null, code: string | null = null): HttpError {
  return new HttpError(400, message, 'invalid_request_error', param, code);
}
