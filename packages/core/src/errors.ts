import { KascadeRangeError } from './budget.js';

/** An array's length or a tensor's shape does not match what an op was told. */
export class ShapeError extends KascadeRangeError {
  override readonly name: string = 'ShapeError';
}

/** An index set is malformed: an index out of range, a duplicate, a count above `kMax`, a head map entry too large. */
export class SelectionError extends KascadeRangeError {
  override readonly name: string = 'SelectionError';
}
