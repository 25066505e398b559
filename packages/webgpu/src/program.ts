import { type KernelFamily, WGSL_SOURCES } from './kernels.generated.js';

/** Element type of K/V on the device: f32, or f16 stored two per `u32` (no `shader-f16` needed). */
export type KVDType = 'f32' | 'f16';

/** Compile-time constants of one shader variant; they form the pipeline cache key. */
export type Defines = Readonly<Record<string, number | boolean | KVDType | PieceType>>;

/** The piece a team lane loads: 16 bytes of f32 or f16 K/V, or 8 bytes of f16 (`f16x4`). */
export type PieceType = KVDType | 'f16x4';

const KV_PRELUDE: Record<KVDType, string> = {
  f32: 'alias KV4 = vec4<f32>;\nfn kv4(e: KV4) -> vec4<f32> { return e; }\n',
  f16:
    'alias KV4 = vec2<u32>;\n' +
    'fn kv4(e: KV4) -> vec4<f32> { return vec4<f32>(unpack2x16float(e.x), unpack2x16float(e.y)); }\n',
};

/** The 16-byte piece of a K/V row that the team kernels load: 4 f32, or 8 f16 packed in a `vec4<u32>`. */
const PIECE_PRELUDE: Record<PieceType, string> = {
  f16x4:
    'alias KP = vec2<u32>;\n' +
    'fn kp4(e: KP, i: u32) -> vec4<f32> { return vec4<f32>(unpack2x16float(e.x), unpack2x16float(e.y)); }\n',
  f32: 'alias KP = vec4<f32>;\nfn kp4(e: KP, i: u32) -> vec4<f32> { return e; }\n',
  f16:
    'alias KP = vec4<u32>;\n' +
    'fn kp4(e: KP, i: u32) -> vec4<f32> {\n' +
    '  let w = select(e.xy, e.zw, i == 1u);\n' +
    '  return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));\n}\n',
};

/**
 * Keeps the lines of `//#if NAME` ... `//#else` ... `//#endif` blocks (not nested) whose
 * condition holds: `NAME` is a define that is `true` or a non-zero number.
 */
export function preprocess(source: string, defines: Defines): string {
  const out: string[] = [];
  let keep: boolean | null = null;
  for (const line of source.split('\n')) {
    const t = line.trim();
    if (t.startsWith('//#if ')) {
      const v = defines[t.slice(6).trim()];
      keep = v === true || (typeof v === 'number' && v !== 0);
    } else if (t === '//#else') {
      keep = !keep;
    } else if (t === '//#endif') {
      keep = null;
    } else if (keep !== false) {
      out.push(line);
    }
  }
  return out.join('\n');
}

/** Source text where a snippet or its use is malformed (an unknown name, an unclosed block). */
export class WGSLSnippetError extends Error {
  override name = 'WGSLSnippetError';
}

/**
 * Collects the `//#snippet NAME` ... `//#end` blocks of `source` (WGSL written once and pasted inline
 * where `//#include NAME ARGS..` stands, so hot code stays inline: WGSL functions taking arrays
 * cost 3x on the H200's Vulkan driver) and returns the text without them.
 */
function collectSnippets(source: string, into: Map<string, string[]>): string[] {
  const rest: string[] = [];
  let name: string | null = null;
  let body: string[] = [];
  for (const line of source.split('\n')) {
    const t = line.trim();
    if (t.startsWith('//#snippet ')) {
      if (name !== null) throw new WGSLSnippetError(`snippet ${name} is not closed before ${t}`);
      name = t.slice(11).trim();
      body = [];
    } else if (t === '//#end' && name !== null) {
      into.set(name, body);
      name = null;
    } else if (name !== null) {
      body.push(line);
    } else {
      rest.push(line);
    }
  }
  if (name !== null) throw new WGSLSnippetError(`snippet ${name} has no //#end`);
  return rest;
}

/**
 * Replaces each `//#include NAME A B ..` line by the lines of snippet NAME (from `snippets.wgsl` or
 * the source itself) with `$1`, `$2`, .. replaced by the arguments; snippets may include others.
 */
export function expandSnippets(source: string, shared: string = WGSL_SOURCES.snippets): string {
  const snippets = new Map<string, string[]>();
  collectSnippets(shared, snippets);
  const lines = collectSnippets(source, snippets);
  const expand = (input: readonly string[], depth: number): string[] => {
    const out: string[] = [];
    for (const line of input) {
      const t = line.trim();
      if (!t.startsWith('//#include ')) {
        out.push(line);
        continue;
      }
      const [name = '', ...args] = t.slice(11).trim().split(/\s+/);
      const body = snippets.get(name);
      if (body === undefined) throw new WGSLSnippetError(`unknown WGSL snippet ${name}`);
      if (depth > 8) throw new WGSLSnippetError(`WGSL snippet ${name} includes itself`);
      const filled = body.map((l) =>
        l.replace(/\$(\d)/g, (m, d: string) => {
          const a = args[Number(d) - 1];
          if (a === undefined) throw new WGSLSnippetError(`WGSL snippet ${name} needs argument ${m}`);
          return a;
        }),
      );
      out.push(...expand(filled, depth + 1));
    }
    return out;
  };
  return expand(lines, 0).join('\n');
}

/**
 * The WGSL of an op family with its constants prepended (`KV` selects the K/V element type,
 * `KP` the 16-byte piece type of the team kernels; `SUBGROUPS: true` enables the `subgroups` extension).
 */
export function buildShader(family: KernelFamily, defines: Defines): string {
  let head = '';
  if (defines.SUBGROUPS === true) {
    // Subgroup operations sit in loops whose trip count is uniform per subgroup, not per workgroup.
    head += 'enable subgroups;\ndiagnostic(off, subgroup_uniformity);\n';
  }
  for (const [name, value] of Object.entries(defines)) {
    if (name === 'KV') continue;
    if (typeof value === 'boolean') head += `const ${name}: bool = ${value};\n`;
    else if (typeof value === 'number') head += `const ${name}: u32 = ${value}u;\n`;
  }
  const kv = defines.KV;
  if (kv === 'f32' || kv === 'f16') head += KV_PRELUDE[kv];
  const kp = defines.KP;
  if (kp === 'f32' || kp === 'f16' || kp === 'f16x4') head += PIECE_PRELUDE[kp];
  return `${head}\n${preprocess(expandSnippets(WGSL_SOURCES[family]), defines)}`;
}

/** A stable cache key for a family, entry point and defines. */
export function cacheKey(family: KernelFamily, entry: string, defines: Defines): string {
  const parts = Object.keys(defines)
    .sort()
    .map((k) => `${k}=${String(defines[k])}`);
  return `${family}:${entry}:${parts.join(',')}`;
}
