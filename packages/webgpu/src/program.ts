import { type KernelFamily, WGSL_SOURCES } from './kernels.generated.js';

/** Element type of K/V on the device: f32, or f16 stored two per `u32` (no `shader-f16` needed). */
export type KVDType = 'f32' | 'f16';

/** Compile-time constants of one shader variant; they form the pipeline cache key. */
export type Defines = Readonly<Record<string, number | boolean | KVDType>>;

const KV_PRELUDE: Record<KVDType, string> = {
  f32: 'alias KV4 = vec4<f32>;\nfn kv4(e: KV4) -> vec4<f32> { return e; }\n',
  f16:
    'alias KV4 = vec2<u32>;\n' +
    'fn kv4(e: KV4) -> vec4<f32> { return vec4<f32>(unpack2x16float(e.x), unpack2x16float(e.y)); }\n',
};

/** The WGSL of an op family with its constants prepended. `kv` selects the K/V element type. */
export function buildShader(family: KernelFamily, defines: Defines): string {
  let head = '';
  for (const [name, value] of Object.entries(defines)) {
    if (name === 'KV') continue;
    if (typeof value === 'boolean') head += `const ${name}: bool = ${value};\n`;
    else if (typeof value === 'number') head += `const ${name}: u32 = ${value}u;\n`;
  }
  const kv = defines.KV;
  if (kv === 'f32' || kv === 'f16') head += KV_PRELUDE[kv];
  return `${head}\n${WGSL_SOURCES[family]}`;
}

/** A stable cache key for a family, entry point and defines. */
export function cacheKey(family: KernelFamily, entry: string, defines: Defines): string {
  const parts = Object.keys(defines)
    .sort()
    .map((k) => `${k}=${String(defines[k])}`);
  return `${family}:${entry}:${parts.join(',')}`;
}
