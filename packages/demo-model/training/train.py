#!/usr/bin/env python3
"""Trains the Kascade demo model: a small Llama-architecture model with GQA, its own byte-level
BPE tokenizer, on stdlib docstrings/comments and RULER-style long-context tasks (tasks.py).

Resumable in short calls:
  python3 train.py --out /tmp/ckpt --minutes 7.5                    # fresh start
  python3 train.py --resume /tmp/ckpt --out /tmp/ckpt2 --minutes 9   # continue

--minutes is the wall-clock budget of the whole process (from its start): training stops early
enough to leave time for the quick eval and for saving. --out receives a Hugging Face Llama
checkpoint (config.json, bf16 safetensors, sharded under 16 MiB a file, tokenizer.json,
tokenizer_config.json), the optimizer moments in bf16 (optim-*.safetensors, sharded likewise),
state.json (steps, trained minutes, calls, seeds) and metrics.jsonl (one JSON record a line).
A resume without optimizer files restarts AdamW with a short warm-up.

--smoke runs a tiny model on the CPU with a byte-level stand-in tokenizer (no `tokenizers`
package needed): it exercises data, loss, curriculum, eval, save and resume, not quality.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import queue
import random
import shutil
import struct
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks  # noqa: E402

T0 = time.time()
SHARD_BYTES = 15 * 1024 * 1024  # every returned file must stay under 16 MiB

# ======================================================================================
# logging
# ======================================================================================

_METRICS = None


def log(event: str, **fields) -> None:
    rec = {"event": event, "t": round(time.time() - T0, 2), **fields}
    line = json.dumps(rec)
    print(line, flush=True)
    if _METRICS is not None:
        _METRICS.write(line + "\n")
        _METRICS.flush()


# ======================================================================================
# tokenizer
# ======================================================================================


class _Enc:
    def __init__(self, ids):
        self.ids = ids


class ByteTokenizer:
    """Stand-in for --smoke only: special tokens, then the 256 bytes."""

    def __init__(self) -> None:
        self.n_special = len(tasks.SPECIAL_TOKENS)

    def encode(self, text: str, add_special_tokens: bool = False) -> _Enc:
        ids = []
        i = 0
        while i < len(text):
            for j, sp in enumerate(tasks.SPECIAL_TOKENS):
                if text.startswith(sp, i):
                    ids.append(j)
                    i += len(sp)
                    break
            else:
                ids.extend(b + self.n_special for b in text[i].encode("utf-8"))
                i += 1
        return _Enc(([1] if add_special_tokens else []) + ids)

    def encode_batch(self, texts, add_special_tokens: bool = False):
        return [self.encode(t, add_special_tokens) for t in texts]

    def token_to_id(self, tok: str) -> int:
        return tasks.SPECIAL_TOKENS.index(tok)

    def get_vocab_size(self) -> int:
        return self.n_special + 256


def train_tokenizer(paragraphs: list[str], vocab_size: int, seed: int, path: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    # digits one by one (answers are numbers), then GPT-2's byte-level split: pieces that end
    # in "\n" tokenize alike alone and inside a longer text (train.py checks this at start)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(tasks.SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def texts():
        yield from paragraphs
        rng = random.Random(seed)
        hay = tasks.Haystack.build(paragraphs[:200], tasks.Counter())
        for i in range(3000):
            inst = tasks.make_instance(tasks.FAMILIES[i % len(tasks.FAMILIES)], rng, 600, hay, tasks.Counter())
            yield "".join(p for p in inst.pieces if isinstance(p, str)) + inst.answer
            if i % 10 == 0:
                yield tasks.chat_prompt("Hello.") + "Hi."

    tok.train_from_iterator(texts(), trainer=trainer)
    for i, sp in enumerate(tasks.SPECIAL_TOKENS):
        assert tok.token_to_id(sp) == i, f"special token {sp} got id {tok.token_to_id(sp)}, expected {i}"
    bos = tok.token_to_id("<|bos|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B", special_tokens=[("<|bos|>", bos)]
    )
    tok.save(path)
    return tok


def write_tokenizer_config(path: str, max_len: int) -> None:
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|bos|>",
        "eos_token": "<|eos|>",
        "pad_token": "<|pad|>",
        "add_bos_token": False,  # the post-processor of tokenizer.json adds <|bos|>
        "model_max_length": max_len,
        "clean_up_tokenization_spaces": False,
        "chat_template": tasks.CHAT_TEMPLATE,
    }
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)


# ======================================================================================
# data
# ======================================================================================


class Data:
    """Builds token rows of length L+1: a task instance (answer tokens carry the task loss)
    followed by natural text (carrying a small LM loss), or natural text alone."""

    def __init__(self, tok, train_paras, held_paras, chat_frac: float, text_frac: float,
                 pack_frac: float = 0.0, pack_min: int = 256, salad_frac: float = 0.0):
        self.tok = tok
        self.salad_frac = salad_frac
        self.pack_frac = pack_frac
        self.pack_min = pack_min
        self.bos = tok.token_to_id("<|bos|>")
        self.eos = tok.token_to_id("<|eos|>")
        self.pad = tok.token_to_id("<|pad|>")
        self.user = tok.token_to_id("<|user|>")
        self.assistant = tok.token_to_id("<|assistant|>")
        self.chat_frac = chat_frac
        self.text_frac = text_frac
        self.counter = tasks.Counter(self.enc)
        t = time.time()
        train_ids = [np.asarray(e.ids, dtype=np.int32) for e in tok.encode_batch(train_paras, add_special_tokens=False)]
        held_ids = [np.asarray(e.ids, dtype=np.int32) for e in tok.encode_batch(held_paras, add_special_tokens=False)]
        self.hay = tasks.Haystack(train_paras, [len(x) for x in train_ids])
        self.hay_ids = train_ids
        self.held = tasks.Haystack(held_paras, [len(x) for x in held_ids])
        self.held_ids = held_ids
        self.text = np.concatenate(train_ids)
        self.nl = self.enc("\n")
        self.whole_string = False
        log("data", trainTextTokens=int(self.text.size), heldTextTokens=int(sum(len(x) for x in held_ids)),
            trainParagraphs=len(train_paras), heldParagraphs=len(held_paras),
            charsPerToken=round(sum(map(len, train_paras)) / max(1, self.text.size), 3),
            tokenizeSeconds=round(time.time() - t, 2))

    def enc(self, s: str) -> list[int]:
        return self.tok.encode(s, add_special_tokens=False).ids

    def salad(self, rng: random.Random, n: int) -> list[int]:
        """n tokens of "span salad": random 3-12-token spans of the training text, ending in a newline.
        Locally text-like, globally novel: a haystack the model cannot have memorised (the corpus is
        small, and call 2 showed the model telling needles from memorised filler, which fails on the
        held-out filler of the test split)."""
        out: list[int] = []
        size = self.text.size
        while len(out) < n - len(self.nl):
            span = rng.randint(3, 12)
            off = rng.randrange(size - span)
            out += self.text[off:off + span].tolist()
        return out[: max(0, n - len(self.nl))] + self.nl

    def prompt_ids(self, inst: tasks.Instance, hay: tasks.Haystack, hay_ids, chat: bool,
                   rng: random.Random | None = None) -> list[int]:
        if self.whole_string:
            p = inst.prompt(hay)
            return self.enc(tasks.chat_prompt(p) if chat else p)
        ids: list[int] = []
        if chat:
            ids += [self.user] + self.nl
        for p in inst.pieces:
            if isinstance(p, int):
                ids += self.salad(rng, len(hay_ids[p])) if rng is not None else hay_ids[p].tolist()
            else:
                ids += self.enc(p)
        if chat:
            ids += self.nl + [self.assistant] + self.nl
        return ids

    def instance_ids(self, inst, hay, hay_ids, chat: bool,
                     rng: random.Random | None = None) -> tuple[list[int], list[int]]:
        """(prompt ids with <bos>, answer ids with <eos>); with `rng`, a span-salad haystack."""
        ans = inst.answer.strip() if chat else inst.answer
        return [self.bos] + self.prompt_ids(inst, hay, hay_ids, chat, rng), self.enc(ans) + [self.eos]

    def salad_rng(self, rng: random.Random) -> random.Random | None:
        return rng if rng.random() < self.salad_frac else None

    def check_pieces(self, n: int = 60) -> int:
        """Counts instances whose piecewise ids differ from tokenizing the whole prompt."""
        rng = random.Random(12345)
        bad = 0
        for i in range(n):
            fam = tasks.FAMILIES[i % len(tasks.FAMILIES)]
            inst = tasks.make_instance(fam, rng, 700, self.held, self.counter)
            chat = i % 2 == 1
            p = inst.prompt(self.held)
            whole = self.enc(tasks.chat_prompt(p) if chat else p)
            if whole != self.prompt_ids(inst, self.held, self.held_ids, chat):
                bad += 1
        return bad

    def text_run(self, rng: random.Random, n: int) -> np.ndarray:
        off = rng.randrange(max(1, self.text.size - n))
        out = self.text[off:off + n]
        if out.size < n:
            out = np.concatenate([out, self.text[: n - out.size]])
        return out

    def packed_row(self, rng: random.Random, L: int) -> tuple[np.ndarray, np.ndarray]:
        """Several task instances, each opened by <bos>, of lengths drawn log-uniformly from
        [min_len, L], until the row is full; the rest is natural text. Attention is not reset at
        <bos>: keys and values are random per instance, so the model must (and does) find the
        current instance's needles. More answers per token than one instance per row."""
        ids = np.full(L + 1, self.pad, dtype=np.int32)
        kind = np.zeros(L + 1, dtype=np.int8)
        pos = 0
        lo = min(self.pack_min, L)
        misses = 0
        while misses < 3 and L + 1 - pos > lo:
            room = L + 1 - pos
            target = int(math.exp(rng.uniform(math.log(lo), math.log(max(lo + 1, room))))) - 48
            fam = rng.choice(tasks.FAMILIES)
            chat = rng.random() < self.chat_frac
            inst = tasks.make_instance(fam, rng, max(32, target), self.hay, self.counter)
            p, a = self.instance_ids(inst, self.hay, self.hay_ids, chat, self.salad_rng(rng))
            n = len(p) + len(a)
            if n > room:
                misses += 1
                continue
            ids[pos:pos + n] = p + a
            kind[pos + len(p):pos + n] = 1
            pos += n
        if pos < L + 1 - 8:
            ids[pos] = self.bos
            ids[pos + 1:] = self.text_run(rng, L - pos)
            kind[pos + 1:] = 2
        return ids, kind

    def row(self, rng: random.Random, L: int) -> tuple[np.ndarray, np.ndarray]:
        r = rng.random()
        if self.pack_frac > 0 and self.text_frac <= r < self.text_frac + self.pack_frac:
            return self.packed_row(rng, L)
        ids = np.full(L + 1, self.pad, dtype=np.int32)
        kind = np.zeros(L + 1, dtype=np.int8)  # 0 no loss, 1 answer, 2 text (kind of the token itself)
        pos = 0
        if r >= self.text_frac:
            for _ in range(4):
                fam = rng.choice(tasks.FAMILIES)
                target = int(L * rng.uniform(0.5, 1.0)) - 48
                chat = rng.random() < self.chat_frac
                inst = tasks.make_instance(fam, rng, max(32, target), self.hay, self.counter)
                p, a = self.instance_ids(inst, self.hay, self.hay_ids, chat, self.salad_rng(rng))
                if len(p) + len(a) <= L + 1:
                    n = len(p) + len(a)
                    ids[:n] = p + a
                    kind[len(p):n] = 1
                    pos = n
                    break
        if pos < L + 1 - 8:
            n = L + 1 - pos
            ids[pos] = self.bos
            ids[pos + 1:] = self.text_run(rng, n - 1)
            kind[pos + 1:] = 2
        return ids, kind

    def batch(self, rng: random.Random, L: int, B: int) -> tuple[np.ndarray, np.ndarray]:
        rows = [self.row(rng, L) for _ in range(B)]
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])


_DATA: Data | None = None


def _worker(wid: int, seed: int, cur_len, rows_per: dict, q, stop) -> None:
    torch.set_num_threads(1)
    rng = random.Random(seed * 1009 + wid)
    assert _DATA is not None
    while not stop.is_set():
        L = cur_len.value
        ids, kind = _DATA.batch(rng, L, rows_per[L])
        while not stop.is_set():
            try:
                q.put((L, ids, kind), timeout=0.5)
                break
            except queue.Full:
                if cur_len.value != L:
                    break


class Loader:
    def __init__(self, data: Data, seed: int, workers: int, rows_per: dict, first_len: int):
        global _DATA
        _DATA = data
        ctx = mp.get_context("fork")
        self.cur_len = ctx.Value("i", first_len)
        self.q = ctx.Queue(maxsize=max(4, 2 * workers))
        self.stop = ctx.Event()
        self.procs = [
            ctx.Process(target=_worker, args=(w, seed, self.cur_len, rows_per, self.q, self.stop), daemon=True)
            for w in range(workers)
        ]
        for p in self.procs:
            p.start()

    def get(self, L: int):
        if self.cur_len.value != L:
            self.cur_len.value = L
        while True:
            try:
                l, ids, kind = self.q.get(timeout=60)
            except queue.Empty:
                dead = [p.pid for p in self.procs if not p.is_alive()]
                raise RuntimeError(f"no batch for 60 s (dead data workers: {dead})") from None
            if l == L:
                return ids, kind

    def close(self) -> None:
        # Workers hold nothing worth keeping; a worker whose batches still sit in the queue's
        # pipe would block at exit flushing them (call 1 lost ~20 s joining), so end them now.
        self.stop.set()
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join(timeout=5)
        self.q.cancel_join_thread()


# ======================================================================================
# model (Hugging Face Llama semantics: rotate-half RoPE, RMSNorm in fp32, SwiGLU, GQA)
# ======================================================================================


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_tables(L: int, head_dim: int, theta: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
    t = torch.arange(L, device=device, dtype=torch.int64).float()
    freqs = torch.outer(t, inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def _sdpa(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    L = q.shape[-2]  # torch < 2.0 (the --smoke test machine)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    mask = torch.ones(L, L, dtype=torch.bool, device=q.device).triu(1)
    return torch.softmax(s.float().masked_fill(mask, float("-inf")), dim=-1).to(v.dtype) @ v


class Attention(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        d, H, KV, D = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        self.H, self.KV, self.D = H, KV, D
        self.q_proj = nn.Linear(d, H * D, bias=False)
        self.k_proj = nn.Linear(d, KV * D, bias=False)
        self.v_proj = nn.Linear(d, KV * D, bias=False)
        self.o_proj = nn.Linear(H * D, d, bias=False)

    def forward(self, x, cos, sin):
        B, L, _ = x.shape
        q = self.q_proj(x).view(B, L, self.H, self.D).transpose(1, 2)
        k = self.k_proj(x).view(B, L, self.KV, self.D).transpose(1, 2)
        v = self.v_proj(x).view(B, L, self.KV, self.D).transpose(1, 2)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.H // self.KV  # query head h reads KV head h // rep, as HF's repeat_kv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        o = _sdpa(q, k, v)
        return self.o_proj(o.transpose(1, 2).reshape(B, L, self.H * self.D))


class MLP(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        d, f = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = MLP(c)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Inner(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class Llama(nn.Module):
    """Parameter names are Hugging Face LlamaForCausalLM's (`model.` prefix); embeddings tied."""

    def __init__(self, c: dict):
        super().__init__()
        assert c["tie_word_embeddings"], "this script trains tied embeddings"
        self.c = c
        self.model = Inner(c)
        self._rope: dict = {}
        std = c["initializer_range"]
        for name, p in self.named_parameters():
            if p.dim() == 2:
                s = std / math.sqrt(2 * c["num_hidden_layers"]) if name.endswith(("o_proj.weight", "down_proj.weight")) else std
                nn.init.normal_(p, 0.0, s)

    def forward(self, ids):
        L = ids.shape[1]
        key = (L, ids.device)
        if key not in self._rope:
            self._rope[key] = rope_tables(L, self.c["head_dim"], self.c["rope_theta"], ids.device)
        cos, sin = self._rope[key]
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        x = self.model.norm(x)
        return F.linear(x, self.model.embed_tokens.weight)


def model_config(args, vocab: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": args.hidden,
        "intermediate_size": args.ffn,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads,
        "head_dim": args.head_dim,
        "vocab_size": vocab,
        "max_position_embeddings": args.max_len,
        "rms_norm_eps": 1e-5,
        "rope_theta": float(args.rope_theta),
        "rope_parameters": {"rope_type": "default", "rope_theta": float(args.rope_theta)},
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": True,
        "initializer_range": 0.02,
        "bos_token_id": tasks.SPECIAL_TOKENS.index("<|bos|>"),
        "eos_token_id": tasks.SPECIAL_TOKENS.index("<|eos|>"),
        "pad_token_id": tasks.SPECIAL_TOKENS.index("<|pad|>"),
        "use_cache": True,
        "dtype": "bfloat16",
    }


# ======================================================================================
# safetensors (written by hand: the format is a JSON header and raw little-endian bytes)
# ======================================================================================

_ST = {torch.bfloat16: "BF16", torch.float32: "F32"}


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def save_safetensors(path: str, tensors: dict, metadata: dict | None = None) -> int:
    header: dict = {}
    blobs = []
    off = 0
    for name, t in tensors.items():
        b = _tensor_bytes(t)
        header[name] = {"dtype": _ST[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt", **(metadata or {})}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return 8 + len(h) + off


def load_safetensors(path: str) -> dict:
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        s, e = info["data_offsets"]
        buf = data[base + s: base + e]
        if info["dtype"] == "BF16":
            t = torch.from_numpy(np.frombuffer(buf, dtype=np.int16).copy()).view(torch.bfloat16)
        elif info["dtype"] == "F32":
            t = torch.from_numpy(np.frombuffer(buf, dtype=np.float32).copy())
        else:
            raise ValueError(f"{path}: unsupported dtype {info['dtype']} of {name}")
        out[name] = t.reshape(info["shape"])
    return out


def save_sharded(out: str, prefix: str, tensors: dict, index_name: str | None) -> list[str]:
    """Shards under SHARD_BYTES. HF names: PREFIX.safetensors, or PREFIX-0000i-of-0000n.safetensors
    plus an index (weight_map) when there are several."""
    groups: list[dict] = [{}]
    size = 0
    for name, t in tensors.items():
        nb = t.numel() * t.element_size()
        if groups[-1] and size + nb > SHARD_BYTES:
            groups.append({})
            size = 0
        groups[-1][name] = t
        size += nb
    files = []
    weight_map = {}
    total = 0
    for i, g in enumerate(groups):
        fn = f"{prefix}.safetensors" if len(groups) == 1 else f"{prefix}-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        save_safetensors(os.path.join(out, fn), g)
        files.append(fn)
        for name, t in g.items():
            weight_map[name] = fn
            total += t.numel() * t.element_size()
    if index_name and len(groups) > 1:
        with open(os.path.join(out, index_name), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return files


def load_sharded(d: str, prefix: str) -> dict:
    names = sorted(n for n in os.listdir(d) if n.startswith(prefix) and n.endswith(".safetensors"))
    out: dict = {}
    for n in names:
        out.update(load_safetensors(os.path.join(d, n)))
    return out


# ======================================================================================
# evaluation: teacher-forced exact match = greedy decoding reproduces every answer token and <eos>
# ======================================================================================


@torch.no_grad()
def quick_eval(model, data: Data, lengths, per_family: int, device, seed: int = 777) -> dict:
    model.eval()
    res: dict = {}
    for L in lengths:
        for fam in tasks.FAMILIES:
            rng = random.Random(f"eval/{seed}/{L}/{fam}")
            rows, spans = [], []
            for _ in range(per_family):
                inst = tasks.make_instance(fam, rng, L - 48, data.held, data.counter)
                p, a = data.instance_ids(inst, data.held, data.held_ids, chat=False)
                rows.append(p + a)
                spans.append((len(p), len(p) + len(a)))
            W = max(len(r) for r in rows)
            ids = torch.full((len(rows), W), data.pad, dtype=torch.long)
            for i, r in enumerate(rows):
                ids[i, : len(r)] = torch.tensor(r)
            ids = ids.to(device)
            hit, nll, ntok = 0, 0.0, 0
            for i0 in range(0, len(rows), 10):
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    logits = model(ids[i0:i0 + 10, :-1]).float()
                pred = logits.argmax(-1)
                for j in range(logits.shape[0]):
                    s, e = spans[i0 + j]
                    tgt = ids[i0 + j, s:e]
                    hit += int(torch.equal(pred[j, s - 1:e - 1], tgt))
                    nll += F.cross_entropy(logits[j, s - 1:e - 1], tgt, reduction="sum").item()
                    ntok += e - s
            res[f"{fam}@{L}"] = {"exactMatch": hit / len(rows), "n": len(rows),
                                 "answerLoss": round(nll / ntok, 4), "meanTokens": round(sum(map(len, rows)) / len(rows))}
        fams = [res[f"{f}@{L}"]["exactMatch"] for f in tasks.FAMILIES]
        res[f"mean@{L}"] = sum(fams) / len(fams)
    # next-token loss on natural text: held-out files vs the training corpus (the gap is memorization)
    L = min(lengths)
    for name, hay, hay_ids in (("heldout", data.held, data.held_ids), ("train", data.hay, data.hay_ids)):
        rng = random.Random(f"eval-text/{seed}/{name}")
        rows = []
        for _ in range(8):
            ids = [data.bos] + [t for i in hay.run(rng, L - 1) for t in hay_ids[i].tolist()]
            rows.append(ids[:L])
        W = min(len(r) for r in rows)
        x = torch.tensor([r[:W] for r in rows], dtype=torch.long, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(x[:, :-1]).float()
        res[f"{name}TextLoss@{L}"] = round(F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                         x[:, 1:].reshape(-1)).item(), 4)
    model.train()
    return res


# ======================================================================================
# main
# ======================================================================================


def parse_curriculum(s: str) -> list[tuple[int, float]]:
    """'256:1.8,1024:1.6,4096' -> [(256, 1.8), (1024, 3.4), (4096, inf)] (cumulative minutes)."""
    out = []
    acc = 0.0
    for part in s.split(","):
        if ":" in part:
            L, m = part.split(":")
            acc += float(m)
            out.append((int(L), acc))
        else:
            out.append((int(part), math.inf))
    if not out or out[-1][1] != math.inf:
        raise ValueError(f"curriculum '{s}' must end with a length without minutes (e.g. ...,4096)")
    return out


def main() -> int:
    global _METRICS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--resume", help="checkpoint folder written by an earlier call")
    ap.add_argument("--state", help="state.json of the resumed run (default: RESUME/state.json)")
    ap.add_argument("--minutes", type=float, default=7.5, help="wall budget of the whole process")
    ap.add_argument("--reserve", type=float, default=60.0, help="seconds kept for eval and saving")
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--ffn", type=int, default=512)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--rope-theta", type=float, default=100000.0)
    ap.add_argument("--max-len", type=int, default=4096)
    ap.add_argument("--curriculum", default="256:1.8,1024:1.6,4096")
    ap.add_argument("--tokens-per-step", type=int, default=32768)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=200, help="warm-up steps (fresh start or resume without moments)")
    ap.add_argument("--resume-warmup", type=int, default=20, help="warm-up steps when optimizer moments are resumed")
    ap.add_argument("--decay-frac", type=float, default=0.0,
                    help="fraction of this call's training time at the end with linearly decaying LR")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--text-weight", type=float, default=0.2, help="weight of the text LM loss")
    ap.add_argument("--text-frac", type=float, default=0.1, help="fraction of rows that are text only")
    ap.add_argument("--pack-frac", type=float, default=0.0,
                    help="fraction of rows packed with several instances of log-uniform lengths (call 2 on)")
    ap.add_argument("--salad-frac", type=float, default=0.0,
                    help="fraction of training instances whose haystack is span salad (novel filler; call 3 on)")
    ap.add_argument("--pack-min", type=int, default=256, help="shortest packed instance, in tokens")
    ap.add_argument("--chat-frac", type=float, default=0.2, help="fraction of task instances in chat format")
    ap.add_argument("--workers", type=int, default=0, help="data processes (0: cores - 2, at most 12)")
    ap.add_argument("--eval-per-family", type=int, default=20)
    ap.add_argument("--eval-lengths", default="1024,4096")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run with a byte tokenizer (tests the script)")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    if args.resume and os.path.abspath(args.resume) == os.path.abspath(args.out):
        raise SystemExit("--out must differ from --resume (the checkpoint being read)")
    _METRICS = open(os.path.join(args.out, "metrics.jsonl"), "a")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    state = {"step": 0, "trainedMinutes": 0.0, "calls": 0, "history": []}
    prev_cfg = None
    if args.resume:
        with open(args.state or os.path.join(args.resume, "state.json")) as f:
            state = json.load(f)
        with open(os.path.join(args.resume, "config.json")) as f:
            prev_cfg = json.load(f)
        # the architecture comes from the checkpoint
        args.hidden, args.ffn = prev_cfg["hidden_size"], prev_cfg["intermediate_size"]
        args.layers, args.heads = prev_cfg["num_hidden_layers"], prev_cfg["num_attention_heads"]
        args.kv_heads, args.head_dim = prev_cfg["num_key_value_heads"], prev_cfg["head_dim"]
        args.rope_theta, args.max_len = prev_cfg["rope_theta"], prev_cfg["max_position_embeddings"]
    call = state["calls"] + 1
    seed = args.seed + 7919 * call  # fresh data every call
    random.seed(seed)
    torch.manual_seed(seed)
    curriculum = parse_curriculum(args.curriculum)
    log("start", call=call, seed=seed, args=vars(args), device=str(device), torch=torch.__version__,
        resumedState=state if args.resume else None)

    # ---- corpus and tokenizer
    t = time.time()
    train_paras, held_paras = tasks.load_corpus(processes=min(16, os.cpu_count() or 1))
    log("corpus", stdlib=tasks.stdlib_dir(), trainParagraphs=len(train_paras), heldParagraphs=len(held_paras),
        trainChars=sum(map(len, train_paras)), seconds=round(time.time() - t, 2))
    tok_path = os.path.join(args.out, "tokenizer.json")
    if args.smoke:
        tok = ByteTokenizer()
    elif args.resume:
        from tokenizers import Tokenizer

        shutil.copy(os.path.join(args.resume, "tokenizer.json"), tok_path)
        tok = Tokenizer.from_file(tok_path)
    else:
        t = time.time()
        tok = train_tokenizer(train_paras, args.vocab, seed, tok_path)
        log("tokenizer", vocab=tok.get_vocab_size(), seconds=round(time.time() - t, 2))
    if not args.smoke:
        write_tokenizer_config(os.path.join(args.out, "tokenizer_config.json"), args.max_len)
    vocab = tok.get_vocab_size()
    cfg = model_config(args, vocab)
    if prev_cfg is not None and prev_cfg["vocab_size"] != vocab:
        raise SystemExit(f"tokenizer has {vocab} tokens but the checkpoint's config says {prev_cfg['vocab_size']}")

    data = Data(tok, train_paras, held_paras, args.chat_frac, args.text_frac, args.pack_frac, args.pack_min,
                args.salad_frac)
    bad = data.check_pieces()
    data.whole_string = bad > 0
    log("piecewise-check", mismatches=bad, of=60, wholeStringTokenization=data.whole_string)

    lengths = sorted({L for L, _ in curriculum})
    rows_per = {L: max(1, args.tokens_per_step // L) for L in lengths}
    workers = args.workers or max(1, min(12, (os.cpu_count() or 2) - 2))
    stage_of = lambda minutes: next(L for L, until in curriculum if minutes < until)  # noqa: E731
    loader = Loader(data, seed, workers, rows_per, stage_of(state["trainedMinutes"]))
    log("loader", workers=workers, rowsPerStep=rows_per, curriculum=args.curriculum,
        gpu=torch.cuda.get_device_name(0) if device.type == "cuda" else None)

    # ---- model and optimizer
    model = Llama(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    if args.resume:
        sd = load_sharded(args.resume, "model")
        sd = {k: v.float() for k, v in sd.items()}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise SystemExit(f"checkpoint mismatch: missing {missing}, unexpected {unexpected}")
    model.to(device)
    names = [n for n, _ in model.named_parameters()]
    params = dict(model.named_parameters())
    decay = [n for n in names if params[n].dim() == 2]
    no_decay = [n for n in names if params[n].dim() != 2]
    groups = [{"params": [params[n] for n in decay], "weight_decay": args.weight_decay},
              {"params": [params[n] for n in no_decay], "weight_decay": 0.0}]
    kw = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, **kw)
    warmup = args.warmup
    moments = False
    if args.resume and any(n.startswith("optim") for n in os.listdir(args.resume)):
        mo = load_sharded(args.resume, "optim")
        with open(os.path.join(args.resume, "optim.json")) as f:
            ometa = json.load(f)
        st = {}
        for i, n in enumerate(decay + no_decay):
            st[i] = {"step": torch.tensor(float(ometa["step"])),
                     "exp_avg": mo[f"exp_avg.{n}"].float(), "exp_avg_sq": mo[f"exp_avg_sq.{n}"].float()}
        sd = opt.state_dict()
        sd["state"] = st
        opt.load_state_dict(sd)
        warmup = args.resume_warmup
        moments = True
    log("model", params=n_params, bf16Bytes=2 * n_params, config=cfg, resumedMoments=moments, warmup=warmup)
    fwd = model
    if args.compile:
        # compile once per training length, before the clock of the curriculum matters; any failure
        # (an old torch, a missing compiler) falls back to eager and says so
        t = time.time()
        try:
            for L in lengths:
                model.forward(torch.zeros(1, L, dtype=torch.long, device=device))  # fills the RoPE cache
            compiled = torch.compile(model, dynamic=False)
            for L in lengths:
                xs = torch.randint(0, vocab, (rows_per[L], L), device=device)
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    out = compiled(xs)
                out.float().mean().backward()
            opt.zero_grad(set_to_none=True)
            fwd = compiled
            log("compile", ok=True, lengths=lengths, seconds=round(time.time() - t, 1))
        except Exception as e:  # noqa: BLE001 - eager still trains
            opt.zero_grad(set_to_none=True)
            log("compile", ok=False, error=f"{type(e).__name__}: {str(e)[:300]}", seconds=round(time.time() - t, 1))

    # ---- train
    deadline = T0 + args.minutes * 60 - args.reserve
    train_start = time.time()
    budget = max(1.0, deadline - train_start)
    step0 = state["step"]
    step = 0
    tokens = 0
    ema: dict = {}
    wait = 0.0
    last_log = time.time()
    cur_L = None
    while time.time() < deadline:
        elapsed = time.time() - train_start
        minutes = state["trainedMinutes"] + elapsed / 60
        L = stage_of(minutes)
        if L != cur_L:
            log("stage", L=L, rows=rows_per[L], trainedMinutes=round(minutes, 3), step=step0 + step)
            cur_L = L
        frac = elapsed / budget
        lr = args.lr * min(1.0, (step + 1) / max(1, warmup))
        if args.decay_frac > 0 and frac > 1 - args.decay_frac:
            d = (frac - (1 - args.decay_frac)) / args.decay_frac
            lr *= 1 - (1 - args.min_lr_frac) * min(1.0, d)
        for g in opt.param_groups:
            g["lr"] = lr
        tw = time.time()
        ids_np, kind_np = loader.get(L)
        wait += time.time() - tw
        ids = torch.from_numpy(ids_np).to(device, dtype=torch.long, non_blocking=True)
        kind = torch.from_numpy(kind_np).to(device, non_blocking=True)
        x, y, k = ids[:, :-1], ids[:, 1:], kind[:, 1:]
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = fwd(x)
        ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
        ce = ce.view_as(y)
        m_ans = (k == 1).float()
        m_txt = (k == 2).float()
        n_ans = m_ans.sum().clamp(min=1)
        n_txt = m_txt.sum().clamp(min=1)
        loss_ans = (ce * m_ans).sum() / n_ans
        loss_txt = (ce * m_txt).sum() / n_txt
        loss = loss_ans + args.text_weight * loss_txt
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += x.numel()
        if step % args.log_every == 0 or step == 1:
            vals = {"answerLoss": loss_ans.item(), "textLoss": loss_txt.item(), "gradNorm": gnorm.item()}
            for key, v in vals.items():
                ema[key] = v if key not in ema else 0.9 * ema[key] + 0.1 * v
            now = time.time()
            log("train", step=step0 + step, L=L, lr=round(lr, 7), **{k2: round(v, 4) for k2, v in vals.items()},
                emaAnswerLoss=round(ema["answerLoss"], 4), emaTextLoss=round(ema["textLoss"], 4),
                tokensPerS=round(tokens / (now - train_start)), dataWaitFrac=round(wait / (now - train_start), 3),
                answerTokens=int(n_ans.item()), trainedMinutes=round(minutes, 3))
            last_log = now
    del last_log
    loader.close()
    train_s = time.time() - train_start
    state["step"] = step0 + step
    state["trainedMinutes"] = state["trainedMinutes"] + train_s / 60
    log("train-end", steps=step, totalSteps=state["step"], trainSeconds=round(train_s, 1), tokens=tokens,
        tokensPerS=round(tokens / max(1e-9, train_s)), dataWaitFrac=round(wait / max(1e-9, train_s), 3),
        finalEma={k2: round(v, 4) for k2, v in ema.items()})

    # ---- save (before the eval, so a failing eval still leaves a checkpoint)
    t = time.time()
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"],
                   "pad_token_id": cfg["pad_token_id"], "do_sample": False}, f, indent=2)
    weights = {n: p.detach().to(torch.bfloat16).cpu() for n, p in model.state_dict().items()}
    model_files = save_sharded(args.out, "model", weights, "model.safetensors.index.json")
    mom = {}
    ostate = opt.state_dict()["state"]
    opt_step = 0
    for i, n in enumerate(decay + no_decay):
        s = ostate.get(i)
        if s:
            mom[f"exp_avg.{n}"] = s["exp_avg"].to(torch.bfloat16).cpu()
            mom[f"exp_avg_sq.{n}"] = s["exp_avg_sq"].to(torch.bfloat16).cpu()
            opt_step = int(float(s["step"]))
    optim_files = save_sharded(args.out, "optim", mom, None) if mom else []
    with open(os.path.join(args.out, "optim.json"), "w") as f:
        json.dump({"step": opt_step, "dtype": "bfloat16", "betas": [0.9, 0.95], "files": optim_files,
                   "note": "AdamW moments in bf16; names exp_avg.PARAM / exp_avg_sq.PARAM"}, f, indent=2)
    log("saved", modelFiles=model_files, optimFiles=optim_files, seconds=round(time.time() - t, 2),
        sizes={fn: os.path.getsize(os.path.join(args.out, fn)) for fn in model_files + optim_files})

    # ---- the saved bf16 weights, as loaded back, are what we evaluate
    back = load_sharded(args.out, "model")
    assert set(back) == set(weights), "saved weights do not round-trip"
    model.load_state_dict({k2: v.float() for k2, v in back.items()})
    t = time.time()
    ev = quick_eval(model, data, [int(x) for x in args.eval_lengths.split(",")], args.eval_per_family, device)
    log("eval", seconds=round(time.time() - t, 1), **ev)
    state["calls"] = call
    state["history"].append({"call": call, "seed": seed, "steps": step, "trainSeconds": round(train_s, 1),
                             "curriculum": args.curriculum, "tokensPerStep": args.tokens_per_step, "lr": args.lr,
                             "finalEma": ema, "eval": {k2: v for k2, v in ev.items() if k2.startswith("mean")}})
    with open(os.path.join(args.out, "state.json"), "w") as f:
        json.dump(state, f, indent=2)

    # ---- checks of the export: transformers loads it and agrees; the tokenizer's ids on samples
    if not args.smoke:
        check = {}
        rng = random.Random(5)
        for fam in tasks.FAMILIES:
            inst = tasks.make_instance(fam, rng, 200, data.held, data.counter)
            p = inst.prompt(data.held)
            check[fam] = {"text": p, "ids": tok.encode(p, add_special_tokens=True).ids,
                          "answer": inst.answer, "answerIds": data.enc(inst.answer)}
        chat = tasks.chat_prompt("Hello there.")
        check["chat"] = {"text": chat, "ids": tok.encode(chat, add_special_tokens=True).ids}
        with open(os.path.join(args.out, "tokenizer-check.json"), "w") as f:
            json.dump(check, f)
        try:
            hf_parity(args.out, model, device)
        except Exception as e:  # noqa: BLE001 - report, the checkpoint is saved already
            log("hf-parity", error=f"{type(e).__name__}: {e}")
    log("done", wallSeconds=round(time.time() - T0, 1))
    return 0


def hf_parity(out: str, model, device) -> None:
    """transformers loads the export as LlamaForCausalLM and gives the same logits; its tokenizer
    loads and renders the chat template as tasks.chat_prompt does."""
    import transformers
    from transformers import AutoTokenizer, LlamaForCausalLM

    t = time.time()
    hf = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).to(device).eval()
    ids = torch.randint(6, model.c["vocab_size"], (2, 300), generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        a = model(ids).double()
        b = hf(ids).logits.double()
    rel = ((a - b).norm() / b.norm()).item()
    log("hf-parity", transformers=transformers.__version__, relLogitDiff=rel, seconds=round(time.time() - t, 1))
    del hf
    try:
        ht = AutoTokenizer.from_pretrained(out)
        rendered = ht.apply_chat_template([{"role": "user", "content": "Hi."}], tokenize=False,
                                          add_generation_prompt=True)
        log("hf-tokenizer", chatRendered=rendered, chatMatches=rendered == tasks.chat_prompt("Hi."),
            ids=ht("Answer: 1234567")["input_ids"])
    except Exception as e:  # noqa: BLE001
        log("hf-tokenizer", error=f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    sys.exit(main())
