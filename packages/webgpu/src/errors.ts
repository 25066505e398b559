import { KascadeRangeError } from '@kascade/core';

/** No WebGPU implementation or no adapter: no `navigator.gpu`, the `webgpu` package missing, or no driver. */
export class WebGPUNotAvailableError extends Error {
  override readonly name = 'WebGPUNotAvailableError';
}

/** The adapter lacks a feature an op needs. */
export class WebGPUFeatureError extends Error {
  override readonly name = 'WebGPUFeatureError';
  constructor(
    readonly feature: string,
    message: string,
  ) {
    super(message);
  }
}

/** A shape needs more than the device's limits allow (a storage binding, a buffer, a workgroup). */
export class WebGPULimitError extends KascadeRangeError {
  override readonly name = 'WebGPULimitError';
  constructor(
    readonly limit: string,
    readonly needed: number,
    readonly available: number,
    message: string,
  ) {
    super(`${message} (needs ${limit} >= ${needed}, the device has ${available})`);
  }
}

/** Arguments outside an op's domain (shapes, dtypes, budgets). */
export class WebGPUShapeError extends KascadeRangeError {
  override readonly name = 'WebGPUShapeError';
}

/** A GPU validation or out-of-memory error caught around an op, labelled with it. */
export class WebGPUOpError extends Error {
  override readonly name = 'WebGPUOpError';
}
