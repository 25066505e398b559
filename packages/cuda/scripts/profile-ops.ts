/**
 * Runs each decode op once per shape (after one warm-up call) so `ncu` can break the ops into
 * kernels: ncu --clock-control none --metrics gpu__time_duration.sum node dist-device/profile-ops.mjs
 */
import { topkBudget } from '@kascade/core';
import {
  anchorDecode,
  DeviceTensor,
  denseAnchorDecode,
  denseDecode,
  fillNormal,
  reuseDecode,
  synchronize,
} from '../src/index.js';

const shapes: [number, number][] = [
  [1, 8192],
  [1, 131072],
  [32, 131072],
];
for (const [batch, n] of shapes) {
  const q = DeviceTensor.empty('bf16', [batch, 32, 128]);
  const k = DeviceTensor.empty('bf16', [batch, 8, n, 128]);
  const v = DeviceTensor.empty('bf16', [batch, 8, n, 128]);
  fillNormal(q, 1);
  fillNormal(k, 2);
  fillNormal(v, 3);
  const kk = topkBudget(n);
  const out = DeviceTensor.empty('bf16', [batch, 32, 128]);
  const selection = { kvHeads: 8, k: kk, indices: DeviceTensor.empty('i32', [batch, 8, kk]) };
  const b = { q, k, v, n };
  const map = [1, 0, 3, 2, 5, 4, 7, 6];
  for (let r = 0; r < 2; r++) {
    console.log(`--- batch ${batch} n ${n} round ${r}`);
    denseDecode(b, out);
    synchronize();
    denseAnchorDecode(b, kk, { out, selection });
    synchronize();
    anchorDecode(b, kk, { out, selection });
    synchronize();
    reuseDecode(b, selection, map, out);
    synchronize();
  }
  for (const t of [q, k, v, out, selection.indices]) t.free();
}
