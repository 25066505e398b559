import { open, readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { bf16ToF32, f16ToF32 } from './dtype.js';
import { ModelLoadError } from './errors.js';

/** One named tensor as a checkpoint stores it, converted to f32 on read. */
export interface TensorEntry {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly file: string;
}

/** A set of named tensors (one safetensors file, a sharded set, or a GGUF file). */
export interface WeightSource {
  readonly description: string;
  entry(name: string): TensorEntry | undefined;
  names(): string[];
  /** Reads a tensor as f32 (converting f16/bf16/quantised data). */
  read(name: string): Promise<Float32Array>;
  /** Reads a BF16 tensor's raw bits, where the source stores it so. */
  readBf16?(name: string): Promise<Uint16Array>;
  /** Reads a tensor's raw little-endian bytes into `dst` (exactly its size). */
  readInto?(name: string, dst: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

const SIZES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };

interface Located extends TensorEntry {
  readonly begin: number;
  readonly end: number;
}

/** Opens one `.safetensors` file: u64 header length, JSON header, then raw little-endian data. */
export async function openSafetensors(file: string): Promise<WeightSource> {
  const fh = await open(file, 'r').catch((e: unknown) => {
    throw new ModelLoadError(file, `cannot open: ${(e as Error).message}`);
  });
  try {
    const { size } = await fh.stat();
    if (size < 8)
      throw new ModelLoadError(file, `truncated: ${size} bytes, shorter than the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    await fh.read(lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen <= 0 || 8 + headerLen > size) {
      throw new ModelLoadError(
        file,
        `corrupt header: declared header length ${headerLen} exceeds file size ${size}`,
      );
    }
    const headerBuf = Buffer.alloc(headerLen);
    await fh.read(headerBuf, 0, headerLen, 8);
    let header: unknown;
    try {
      header = JSON.parse(headerBuf.toString('utf8'));
    } catch (e) {
      throw new ModelLoadError(file, `corrupt header: not JSON (${(e as Error).message})`);
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) {
      throw new ModelLoadError(file, 'corrupt header: not a JSON object');
    }
    const dataStart = 8 + headerLen;
    const entries = new Map<string, Located>();
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') continue;
      const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const dtype = String(info.dtype);
      const shape = info.shape;
      const offs = info.data_offsets;
      if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
        throw new ModelLoadError(file, 'corrupt header: bad shape', name);
      }
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o) && o >= 0)) {
        throw new ModelLoadError(file, 'corrupt header: bad data_offsets', name);
      }
      const begin = dataStart + (offs[0] as number);
      const end = dataStart + (offs[1] as number);
      const count = (shape as number[]).reduce((a, b) => a * b, 1);
      const elem = SIZES[dtype];
      if (elem !== undefined && end - begin !== count * elem) {
        throw new ModelLoadError(
          file,
          `corrupt header: ${end - begin} bytes for ${count} ${dtype} elements of shape [${shape.join(', ')}]`,
          name,
        );
      }
      if (end > size) {
        throw new ModelLoadError(file, `truncated: tensor data ends at byte ${end}, file has ${size}`, name);
      }
      entries.set(name, { name, dtype, shape: shape as number[], file, begin, end });
    }
    const readInto = async (name: string, dst: Uint8Array) => {
      const e = entries.get(name);
      if (!e) throw new ModelLoadError(file, 'missing tensor', name);
      if (SIZES[e.dtype] === undefined) {
        throw new ModelLoadError(file, `unsupported dtype ${e.dtype} (supported: F32, F16, BF16)`, name);
      }
      const bytes = e.end - e.begin;
      if (bytes !== dst.byteLength)
        throw new ModelLoadError(file, `holds ${bytes} bytes, expected ${dst.byteLength}`, name);
      const { bytesRead } = await fh.read(dst, 0, bytes, e.begin);
      if (bytesRead !== bytes)
        throw new ModelLoadError(file, `truncated: read ${bytesRead} of ${bytes} bytes`, name);
    };
    const readRaw = async (name: string) => {
      const e = entries.get(name);
      if (!e) throw new ModelLoadError(file, 'missing tensor', name);
      if (SIZES[e.dtype] === undefined) {
        throw new ModelLoadError(file, `unsupported dtype ${e.dtype} (supported: F32, F16, BF16)`, name);
      }
      const bytes = e.end - e.begin;
      const buf = new ArrayBuffer(bytes);
      const { bytesRead } = await fh.read(new Uint8Array(buf), 0, bytes, e.begin);
      if (bytesRead !== bytes)
        throw new ModelLoadError(file, `truncated: read ${bytesRead} of ${bytes} bytes`, name);
      return { e, buf };
    };
    return {
      description: file,
      entry: (name) => entries.get(name),
      names: () => [...entries.keys()],
      async read(name) {
        const { e, buf } = await readRaw(name);
        if (e.dtype === 'F32') return new Float32Array(buf);
        const half = new Uint16Array(buf);
        return e.dtype === 'F16' ? f16ToF32(half) : bf16ToF32(half);
      },
      readInto,
      async readBf16(name) {
        const { e, buf } = await readRaw(name);
        if (e.dtype !== 'BF16')
          throw new ModelLoadError(file, `expected BF16, the file holds ${e.dtype}`, name);
        return new Uint16Array(buf);
      },
      close: () => fh.close(),
    };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Opens `model.safetensors` or the shards listed in `model.safetensors.index.json` of a directory. */
export async function openSafetensorsDir(dir: string): Promise<WeightSource> {
  const indexFile = join(dir, 'model.safetensors.index.json');
  let indexText: string | undefined;
  try {
    indexText = await readFile(indexFile, 'utf8');
  } catch {
    indexText = undefined;
  }
  if (indexText === undefined) return openSafetensors(join(dir, 'model.safetensors'));
  let weightMap: Record<string, string>;
  try {
    const parsed = JSON.parse(indexText) as { weight_map?: Record<string, string> };
    if (!parsed.weight_map || typeof parsed.weight_map !== 'object') throw new Error('no weight_map');
    weightMap = parsed.weight_map;
  } catch (e) {
    throw new ModelLoadError(indexFile, `corrupt index: ${(e as Error).message}`);
  }
  const shards = new Map<string, WeightSource>();
  try {
    for (const shard of new Set(Object.values(weightMap))) {
      if (basename(shard) !== shard)
        throw new ModelLoadError(indexFile, `shard name '${shard}' is not a plain file name`);
      shards.set(shard, await openSafetensors(join(dirname(indexFile), shard)));
    }
  } catch (e) {
    await Promise.all([...shards.values()].map((s) => s.close()));
    throw e;
  }
  for (const [name, shard] of Object.entries(weightMap)) {
    if (!shards.get(shard)!.entry(name)) {
      throw new ModelLoadError(join(dir, shard), `missing tensor listed in ${basename(indexFile)}`, name);
    }
  }
  const owner = (name: string) => {
    const shard = weightMap[name];
    return shard === undefined ? undefined : shards.get(shard);
  };
  return {
    description: indexFile,
    entry: (name) => owner(name)?.entry(name),
    names: () => Object.keys(weightMap),
    read(name) {
      const s = owner(name);
      if (!s) throw new ModelLoadError(indexFile, 'missing tensor', name);
      return s.read(name);
    },
    readInto(name, dst) {
      const s = owner(name);
      if (!s?.readInto) throw new ModelLoadError(indexFile, 'missing tensor', name);
      return s.readInto(name, dst);
    },
    readBf16(name) {
      const s = owner(name);
      if (!s?.readBf16) throw new ModelLoadError(indexFile, 'missing tensor', name);
      return s.readBf16(name);
    },
    async close() {
      await Promise.all([...shards.values()].map((s) => s.close()));
    },
  };
}

/** Writes f32 tensors as a `.safetensors` buffer (for tests and tools). */
export function encodeSafetensors(
  tensors: Record<string, { shape: readonly number[]; data: Float32Array }>,
): Uint8Array {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8 !== 0) json += ' ';
  const head = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let pos = 8 + head.length;
  for (const t of Object.values(tensors)) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    pos += t.data.byteLength;
  }
  return out;
}
