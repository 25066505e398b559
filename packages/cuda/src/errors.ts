import { KascadeRangeError } from '@kascade/core';

/** CUDA cannot be used here: no addon build, no driver or no device. The message says which. */
export class CudaUnavailableError extends Error {
  override readonly name = 'CudaUnavailableError';
}

/** An argument a CUDA op cannot take (shape, dtype, budget, index, head map). */
export class CudaArgumentError extends KascadeRangeError {
  override readonly name = 'CudaArgumentError';
}

/** An op this backend does not implement yet. */
export class CudaUnsupportedError extends Error {
  override readonly name = 'CudaUnsupportedError';
}
