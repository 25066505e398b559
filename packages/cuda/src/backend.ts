import {
  type AttentionBackend,
  type BudgetOptions,
  type DecodeInputs,
  type DecodeSelection,
  fromBf16,
  fromF16,
  type HeadMap,
  type SelectedOutput,
  toBf16,
  toF16,
} from '@kascade/core';
import { CudaArgumentError, CudaUnsupportedError } from './errors.js';
import {
  type AttentionDType,
  anchorDecode,
  type DeviceDecodeBatch,
  denseAnchorDecode,
  denseDecode,
  reuseDecode,
  uploadSelection,
} from './ops.js';
import { DeviceTensor } from './tensor.js';

function encode(dtype: AttentionDType, x: ArrayLike<number>): Uint16Array {
  return dtype === 'bf16' ? toBf16(x) : toF16(x);
}
function decode(dtype: AttentionDType, bits: Uint16Array): Float64Array {
  return Float64Array.from(dtype === 'bf16' ? fromBf16(bits) : fromF16(bits));
}

/** Uploads one sequence's decode inputs (host float arrays) as a batch of 1 in `dtype`. */
export function uploadDecodeInputs(inputs: DecodeInputs, dtype: AttentionDType = 'bf16'): DeviceDecodeBatch {
  const { heads, kvHeads, headDim, n } = inputs;
  const capacity = inputs.capacity ?? n;
  if (inputs.q.length !== heads * headDim) {
    throw new CudaArgumentError(
      `q has ${inputs.q.length} values, expected heads * headDim = ${heads * headDim}`,
    );
  }
  if (inputs.k.length < kvHeads * capacity * headDim || inputs.v.length < kvHeads * capacity * headDim) {
    throw new CudaArgumentError(
      `k and v must hold kvHeads * capacity * headDim = ${kvHeads * capacity * headDim} values`,
    );
  }
  const size = kvHeads * capacity * headDim;
  return {
    q: DeviceTensor.fromHost(dtype, [1, heads, headDim], encode(dtype, inputs.q)),
    k: DeviceTensor.fromHost(
      dtype,
      [1, kvHeads, capacity, headDim],
      encode(dtype, inputs.k.subarray(0, size)),
    ),
    v: DeviceTensor.fromHost(
      dtype,
      [1, kvHeads, capacity, headDim],
      encode(dtype, inputs.v.subarray(0, size)),
    ),
    n,
    ...(inputs.scale !== undefined ? { scale: inputs.scale } : {}),
  };
}

function release(batch: DeviceDecodeBatch): void {
  batch.q.free();
  batch.k.free();
  batch.v.free();
}

/**
 * The host-array {@link AttentionBackend} over the CUDA decode kernels, for one sequence at a
 * time: inputs are rounded to `dtype` (bf16 by default), outputs come back as float64. The
 * engine's device path keeps tensors on the GPU instead (see the ops in this package).
 * Prefill ops are not implemented on CUDA yet and throw {@link CudaUnsupportedError}.
 */
export function createCudaDecodeBackend(options: { dtype?: AttentionDType } = {}): AttentionBackend {
  const dtype = options.dtype ?? 'bf16';
  const unsupported = (op: string) => (): never => {
    throw new CudaUnsupportedError(`${op} is not implemented on CUDA yet (decode ops only)`);
  };
  const selected = (
    inputs: DecodeInputs,
    budget: BudgetOptions,
    op: typeof anchorDecode,
  ): SelectedOutput<DecodeSelection> => {
    const batch = uploadDecodeInputs(inputs, dtype);
    try {
      const r = op(batch, budget);
      const out = decode(dtype, r.out.download());
      const indices = r.selection.indices.download();
      r.out.free();
      r.selection.indices.free();
      return { out, selection: { kvHeads: r.selection.kvHeads, k: r.selection.k, indices } };
    } finally {
      release(batch);
    }
  };
  return {
    name: `cuda-${dtype}`,
    denseDecode(inputs) {
      const batch = uploadDecodeInputs(inputs, dtype);
      try {
        const out = denseDecode(batch);
        const host = decode(dtype, out.download());
        out.free();
        return host;
      } finally {
        release(batch);
      }
    },
    denseAnchorDecode: (inputs, budget) => selected(inputs, budget, denseAnchorDecode),
    anchorDecode: (inputs, budget) => selected(inputs, budget, anchorDecode),
    reuseDecode(inputs: DecodeInputs, selection: DecodeSelection, headMap: HeadMap) {
      const batch = uploadDecodeInputs(inputs, dtype);
      const sel = uploadSelection(selection.indices, {
        batch: 1,
        kvHeads: selection.kvHeads,
        k: selection.k,
        n: inputs.n,
      });
      try {
        const out = reuseDecode(batch, sel, headMap);
        const host = decode(dtype, out.download());
        out.free();
        return host;
      } finally {
        sel.indices.free();
        release(batch);
      }
    },
    densePrefill: unsupported('densePrefill'),
    denseAnchorPrefill: unsupported('denseAnchorPrefill'),
    anchorPrefill: unsupported('anchorPrefill'),
    reusePrefill: unsupported('reusePrefill'),
  };
}
