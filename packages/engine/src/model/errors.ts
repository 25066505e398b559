/** Why a checkpoint could not be loaded: names the file, the tensor (when one is at fault) and the problem. */
export class ModelLoadError extends Error {
  override readonly name = 'ModelLoadError';
  readonly file: string;
  readonly tensor: string | undefined;
  readonly problem: string;

  constructor(file: string, problem: string, tensor?: string) {
    super(`${file}${tensor ? `: tensor '${tensor}'` : ''}: ${problem}`);
    this.file = file;
    this.tensor = tensor;
    this.problem = problem;
  }
}

/** Thrown when a sequence's KV cache is full or a call's arguments do not fit the model. */
export class ModelUsageError extends RangeError {
  override readonly name = 'ModelUsageError';
}

/** The DOM-style abort error `prefill` throws when its signal fires between query tiles. */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  const err = new Error('prefill aborted', { cause: reason });
  err.name = 'AbortError';
  return err;
}
