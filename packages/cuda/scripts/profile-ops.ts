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

const shapes: [number, number][] = (process.env.PROFILE_SHAPES ?? '1x8192,1x131072,32x131072')
  .split(',')
  .map((s) => s.split('x').map(Number) as [number, number]);
// Kernel variant per op (env PROFILE_VARIANTS=dense,layer0,anchor,reuse; default all 0).
const [vDense, vLayer0, vAnchor, vReuse] = (process.env.PROFILE_VARIANTS ?? '0,0,0,0').split(',').map(Number);
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
  const with_ = (variant: number | undefined) => ({ ...b, variant: variant ?? 0 });
  const map = [1, 0, 3, 2, 5, 4, 7, 6];
  for (let r = 0; r < 2; r++) {
    console.log(`--- batch ${batch} n ${n} round ${r}`);
    denseDecode(with_(vDense), out);
    synchronize();
    denseAnchorDecode(with_(vLayer0), kk, { out, selection });
    synchronize();
    anchorDecode(with_(vAnchor), kk, { out, selection });
    synchronize();
    reuseDecode(with_(vReuse), selection, map, out);
    synchronize();
  }
  for (const t of [q, k, v, out, selection.indices]) t.free();
}
