#!/usr/bin/env python3
"""RULER-style long-context task generators and the natural-text corpus for the demo model.

Runs without PyTorch. Every instance is a prompt (a list of *pieces*: haystack paragraphs
and task strings) and an exact answer. Pieces end with a single "\\n" after a non-space
character (except the last one), so a byte-level BPE tokenizer whose pre-tokenizer splits
at newlines gives the same ids for the concatenated prompt as for the pieces one by one;
train.py relies on that to assemble token rows quickly and checks it at start.

Families (names used in logs and JSONL):
  niah_single      one needle "special magic number for KEY is: NNNNNNN" in natural text
  niah_multikey    several needles with distinct keys, one is asked for
  niah_multivalue  one key with 2-4 values (plus distractor keys), all values asked for, in order
  niah_multiquery  several needles, 2-4 keys asked for, values in the order asked
  vt               variable tracking: a chain of 3-5 variables over 2-4 hops from a value,
                   plus distractor chains; all variables of the chain asked for, in chain order
  kv               key-value retrieval of random strings from a JSON-like object

Usage:
  python3 tasks.py --show 6 --tokens 300            print a few instances (no tokenizer needed)
  python3 tasks.py --dump OUTDIR [--tokenizer tokenizer.json]
      writes dev.jsonl and test.jsonl (distinct seeds) of held-out instances (haystack from
      held-out stdlib files) and text-heldout.jsonl (natural text for next-token KL checks).
      Without --tokenizer, lengths are estimated at CHARS_PER_TOKEN characters a token.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import sys
import sysconfig
import zlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

FAMILIES = (
    "niah_single",
    "niah_multikey",
    "niah_multivalue",
    "niah_multiquery",
    "vt",
    "kv",
)
CHARS_PER_TOKEN = 3.6
DEV_SEED = 1_000_003
TEST_SEED = 2_000_003
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

# --------------------------------------------------------------------------------------
# Natural text: docstrings and comments of the Python standard library (PSF license).
# --------------------------------------------------------------------------------------

SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "__pycache__",
             "turtledemo", "ensurepip", "config-3.12-x86_64-linux-gnu"}
MAX_PARA_CHARS = 600


def stdlib_dir() -> str:
    return sysconfig.get_paths()["stdlib"]


def _clean_block(text: str) -> list[str]:
    """Cleans a docstring/comment block into paragraphs that end in one '\\n' after non-space."""
    text = text.replace("\r", "").replace("\t", "    ").replace("\x0c", "")
    if "<|" in text or "|>" in text:
        return []
    lines = [ln.rstrip() for ln in text.split("\n")]
    # dedent (docstrings keep their indentation after the first line)
    indents = [len(ln) - len(ln.lstrip()) for ln in lines[1:] if ln.strip()]
    cut = min(indents) if indents else 0
    lines = [lines[0].strip()] + [ln[cut:] for ln in lines[1:]]
    paras: list[str] = []
    cur: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal cur, size
        # no leading or trailing whitespace: a piece that starts with spaces after a "\n" would
        # tokenize differently alone than inside the prompt (GPT-2's split keeps "\n   " together)
        body = "\n".join(cur).strip()
        if len(body) >= 40 and sum(c.isalpha() for c in body) > 0.5 * len(body):
            paras.append(body + "\n")
        cur, size = [], 0

    for ln in lines:
        if not ln.strip():
            if cur and size > MAX_PARA_CHARS // 2:
                flush()
            elif cur:
                cur.append("")
            continue
        cur.append(ln)
        size += len(ln) + 1
        if size > MAX_PARA_CHARS:
            flush()
    flush()
    return paras


_COMMENT = re.compile(r"^\s*#+ ?(.*)$")


def paragraphs_of_source(src: str) -> list[str]:
    out: list[str] = []
    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError):
        return out
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                out.extend(_clean_block(doc))
    # comment blocks: runs of consecutive full-line comments
    block: list[str] = []
    for line in src.split("\n"):
        m = _COMMENT.match(line)
        if m and not line.lstrip().startswith("#!") and "coding" not in line[:30]:
            block.append(m.group(1))
            continue
        if len(block) >= 2:
            out.extend(_clean_block("\n".join(block)))
        block = []
    return out


def stdlib_files(root: str | None = None) -> list[str]:
    root = root or stdlib_dir()
    files = []
    for d, dirs, names in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and not x.startswith("."))
        for n in sorted(names):
            if n.endswith(".py") and not n.startswith("test_"):
                files.append(os.path.join(d, n))
    return files


def is_heldout(rel_path: str) -> bool:
    """About one file in ten is held out of training (its text only serves evaluation)."""
    return zlib.crc32(rel_path.encode()) % 10 == 0


def _read_file(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return paragraphs_of_source(f.read())
    except (OSError, UnicodeDecodeError):
        return []


def load_corpus(root: str | None = None, processes: int = 1, max_files: int | None = None) -> tuple[list[str], list[str]]:
    """(train paragraphs, held-out paragraphs) from the stdlib, deduplicated, in file order."""
    root = root or stdlib_dir()
    files = stdlib_files(root)[:max_files]
    if processes > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(processes) as pool:
            per_file = pool.map(_read_file, files, chunksize=16)
    else:
        per_file = [_read_file(p) for p in files]
    seen: set[str] = set()
    train: list[str] = []
    held: list[str] = []
    for path, paras in zip(files, per_file):
        target = held if is_heldout(os.path.relpath(path, root)) else train
        for p in paras:
            if p not in seen:
                seen.add(p)
                target.append(p)
    return train, held


# --------------------------------------------------------------------------------------
# Haystack and token counting
# --------------------------------------------------------------------------------------


class Counter:
    """Counts tokens of a string: exactly with a tokenizer, else estimated from characters."""

    def __init__(self, encode: Callable[[str], Sequence[int]] | None = None):
        self._encode = encode

    def count(self, text: str) -> int:
        if self._encode is None:
            return max(1, round(len(text) / CHARS_PER_TOKEN))
        return len(self._encode(text))


@dataclass
class Haystack:
    paragraphs: list[str]
    lengths: list[int]  # tokens of each paragraph

    @staticmethod
    def build(paragraphs: list[str], counter: Counter, lengths: list[int] | None = None) -> "Haystack":
        if not paragraphs:
            raise ValueError("empty haystack: no paragraphs")
        if lengths is None:
            lengths = [counter.count(p) for p in paragraphs]
        return Haystack(paragraphs, lengths)

    def run(self, rng: random.Random, tokens: int) -> list[int]:
        """Indices of a contiguous run of paragraphs totalling at most `tokens` tokens."""
        n = len(self.paragraphs)
        i = rng.randrange(n)
        out: list[int] = []
        total = 0
        for _ in range(n):
            ln = self.lengths[i]
            if total + ln > tokens:
                if tokens - total < 8:
                    break
                i = (i + 1) % n
                continue  # skip a paragraph that does not fit; a shorter one may
            out.append(i)
            total += ln
            i = (i + 1) % n
            if tokens - total < 8:
                break
        return out


# --------------------------------------------------------------------------------------
# Instances
# --------------------------------------------------------------------------------------

Piece = "int | str"  # int: haystack paragraph index; str: task text


@dataclass
class Instance:
    family: str
    pieces: list  # list[int | str]
    answer: str  # with its leading space (raw prompt format)
    meta: dict = field(default_factory=dict)

    def prompt(self, hay: Haystack) -> str:
        return "".join(hay.paragraphs[p] if isinstance(p, int) else p for p in self.pieces)


_SYL_A = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "ch", "sh", "tr", "br"]
_SYL_B = ["a", "e", "i", "o", "u", "ai", "ou", "ea"]
_SYL_C = ["", "", "n", "r", "l", "s", "m", "k"]


def pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYL_A) + rng.choice(_SYL_B) + rng.choice(_SYL_C) for _ in range(rng.randint(2, 3)))


def distinct(rng: random.Random, make: Callable[[random.Random], str], n: int) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        w = make(rng)
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def magic_number(rng: random.Random) -> str:
    return str(rng.randint(1_000_000, 9_999_999))


def var_name(rng: random.Random) -> str:
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(5))


def rand_string(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))


def _join_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


NIAH_HEADER = (
    "Some special magic numbers are hidden in the following text. Memorize them. "
    "I will ask about them afterwards.\n"
)
VT_HEADER = "Memorize the variable assignments hidden in the following text. I will ask about them afterwards.\n"
KV_HEADER = "A JSON object of key-value pairs follows. I will ask about one key afterwards.\n{\n"


def _needle(key: str, value: str) -> str:
    return f"One of the special magic numbers for {key} is: {value}.\n"


def _scatter(rng: random.Random, hay_run: list[int], needles: list[str]) -> list:
    """Inserts needles, in their order, between paragraphs at random depths."""
    slots = sorted(rng.randint(0, len(hay_run)) for _ in needles)
    out: list = []
    k = 0
    for i in range(len(hay_run) + 1):
        while k < len(needles) and slots[k] == i:
            out.append(needles[k])
            k += 1
        if i < len(hay_run):
            out.append(hay_run[i])
    return out


def _niah(family: str, rng: random.Random, tokens: int, hay: Haystack, counter: Counter) -> Instance:
    cap = max(2, min(16, tokens // 96))
    if family == "niah_single":
        n_keys, n_vals, n_query = 1, 1, 1
    elif family == "niah_multikey":
        n_keys, n_vals, n_query = rng.randint(2, cap), 1, 1
    elif family == "niah_multivalue":
        n_keys, n_vals, n_query = rng.randint(1, max(1, cap // 2)), rng.randint(2, 4), 1
    else:  # niah_multiquery
        n_keys = rng.randint(2, cap)
        n_vals, n_query = 1, rng.randint(2, min(4, n_keys))
    keys = distinct(rng, pseudo_word, n_keys)
    values = {k: distinct(rng, magic_number, n_vals if i == 0 else 1) for i, k in enumerate(keys)}
    asked = keys[:n_query] if family != "niah_multiquery" else rng.sample(keys, n_query)
    needles = [(k, v) for k in keys for v in values[k]]
    rng.shuffle(needles)
    if family == "niah_multivalue":
        question = f"\nWhat are all the special magic numbers for {asked[0]} mentioned in the text above?\nAnswer:"
    elif family == "niah_multiquery":
        question = f"\nWhat are the special magic numbers for {_join_list(asked)} mentioned in the text above?\nAnswer:"
    else:
        question = f"\nWhat is the special magic number for {asked[0]} mentioned in the text above?\nAnswer:"
    needle_text = [_needle(k, v) for k, v in needles]
    fixed = counter.count(NIAH_HEADER) + counter.count(question) + sum(counter.count(t) for t in needle_text)
    run = hay.run(rng, max(0, tokens - fixed - 24))
    body = _scatter(rng, run, needle_text)
    # the order of appearance defines the multi-value answer
    order = [t for t in body if isinstance(t, str)]
    if family == "niah_multivalue":
        vals = [v for t in order for (k, v) in needles if t == _needle(k, v) and k == asked[0]]
        answer = ", ".join(vals)
    else:
        answer = ", ".join(values[k][0] for k in asked)
    return Instance(family, [NIAH_HEADER, *body, question], " " + answer,
                    {"keys": n_keys, "needles": len(needles), "queries": n_query})


def _vt(rng: random.Random, tokens: int, hay: Haystack, counter: Counter) -> Instance:
    hops = rng.randint(2, 4)
    n_chains = 1 + rng.randint(1, 2)
    names = distinct(rng, var_name, (hops + 1) * n_chains)
    vals = distinct(rng, lambda r: str(r.randint(10000, 99999)), n_chains)
    chains = [names[c * (hops + 1):(c + 1) * (hops + 1)] for c in range(n_chains)]
    stmts: list[list[str]] = []
    for c, chain in enumerate(chains):
        s = [f"VAR {chain[0]} = {vals[c]}.\n"]
        s += [f"VAR {chain[i]} = {chain[i - 1]}.\n" for i in range(1, len(chain))]
        stmts.append(s)
    question = (
        f"\nFind all variables that are assigned the value {vals[0]}, directly or through other variables.\nAnswer:"
    )
    fixed = counter.count(VT_HEADER) + counter.count(question) + sum(counter.count(t) for s in stmts for t in s)
    run = hay.run(rng, max(0, tokens - fixed - 24))
    # interleave chains, each in its own order, at random depths
    tagged = [(c, i) for c in range(n_chains) for i in range(hops + 1)]
    rng.shuffle(tagged)
    nxt = [0] * n_chains
    ordered: list[str] = []
    for c, _ in tagged:
        ordered.append(stmts[c][nxt[c]])
        nxt[c] += 1
    body = _scatter(rng, run, ordered)
    return Instance("vt", [VT_HEADER, *body, question], " " + " ".join(chains[0]),
                    {"hops": hops, "chains": n_chains})


def _kv(rng: random.Random, tokens: int, hay: Haystack, counter: Counter) -> Instance:
    del hay
    line_tokens = counter.count('"abcd1234": "efgh5678",\n')
    key_q = "\nWhat is the value of the key \"{}\" in the JSON object above?\nAnswer:"
    fixed = counter.count(KV_HEADER) + counter.count(key_q.format("abcd1234")) + counter.count("}\n")
    n = max(2, (tokens - fixed - 8) // max(1, line_tokens))
    keys = distinct(rng, rand_string, n)
    vals = distinct(rng, rand_string, n)
    lines = [f'"{k}": "{v}",\n' for k, v in zip(keys, vals)]
    # trim when the estimate was optimistic
    total = fixed + sum(counter.count(x) for x in lines)
    while total > tokens and len(lines) > 2:
        total -= counter.count(lines.pop())
    i = rng.randrange(len(lines))
    return Instance("kv", [KV_HEADER, *lines, "}\n", key_q.format(keys[i])], " " + vals[i], {"pairs": len(lines)})


def make_instance(family: str, rng: random.Random, tokens: int, hay: Haystack, counter: Counter) -> Instance:
    """An instance whose prompt takes about `tokens` tokens (at most, when counts are exact)."""
    if family.startswith("niah_"):
        return _niah(family, rng, tokens, hay, counter)
    if family == "vt":
        return _vt(rng, tokens, hay, counter)
    if family == "kv":
        return _kv(rng, tokens, hay, counter)
    raise ValueError(f"unknown task family '{family}' (known: {', '.join(FAMILIES)})")


def chat_prompt(prompt: str) -> str:
    """The prompt as the tokenizer's chat template renders one user message (generation prompt on)."""
    return f"<|user|>\n{prompt}\n<|assistant|>\n"



# --------------------------------------------------------------------------------------
# Independent solvers (read the answer back from the prompt text alone) and the self-test
# --------------------------------------------------------------------------------------

_NEEDLE_RE = re.compile(r"^One of the special magic numbers for (\w+) is: (\d+)\.$", re.M)
_VAR_RE = re.compile(r"^VAR ([A-Z]{5}) = ([A-Z]{5}|\d+)\.$", re.M)
_KV_RE = re.compile(r'^"(\w{8})": "(\w{8})",$', re.M)


def solve(family: str, prompt: str) -> str:
    """The exact answer, worked out from the prompt as a reader would (not from the generator)."""
    question = prompt.rstrip().split("\n")[-2]
    if family.startswith("niah_"):
        vals: dict[str, list[str]] = {}
        for k, v in _NEEDLE_RE.findall(prompt):
            vals.setdefault(k, []).append(v)
        if family == "niah_multivalue":
            key = re.search(r"numbers for (\w+) mentioned", question).group(1)
            return ", ".join(vals[key])
        if family == "niah_multiquery":
            keys = re.split(r", | and ", re.search(r"numbers for (.+) mentioned", question).group(1))
            return ", ".join(vals[k][0] for k in keys)
        key = re.search(r"number for (\w+) mentioned", question).group(1)
        if len(vals[key]) != 1:
            raise AssertionError(f"key {key} has {len(vals[key])} values")
        return vals[key][0]
    if family == "vt":
        value = re.search(r"assigned the value (\d+),", question).group(1)
        found: list[str] = []
        for name, rhs in _VAR_RE.findall(prompt):  # in order of appearance; chains are in order
            if rhs == value or rhs in found:
                found.append(name)
        return " ".join(found)
    if family == "kv":
        pairs = dict(_KV_RE.findall(prompt))
        return pairs[re.search(r'the key "(\w{8})"', question).group(1)]
    raise ValueError(f"unknown task family '{family}'")


def self_test(paragraphs: list[str], per_family: int, seed: int) -> dict:
    """Generates instances at several lengths; checks each answer against `solve` and the piece
    invariants. Raises AssertionError on the first failure."""
    counter = Counter()
    hay = Haystack.build(paragraphs, counter)
    rng = random.Random(seed)
    counts: dict = {}
    for family in FAMILIES:
        for j in range(per_family):
            tokens = (200, 700, 2000, 4000)[j % 4]
            inst = make_instance(family, rng, tokens, hay, counter)
            prompt = inst.prompt(hay)
            try:
                got = solve(family, prompt)
            except (KeyError, AttributeError, IndexError) as e:
                raise AssertionError(f"{family} #{j}: the solver cannot read the prompt ({e!r})") from e
            if got != inst.answer.strip():
                raise AssertionError(f"{family} #{j}: solver says {got!r}, generator {inst.answer.strip()!r}")
            if not inst.answer.startswith(" ") or inst.answer != inst.answer.rstrip():
                raise AssertionError(f"{family} #{j}: answer {inst.answer!r} must be ' ' + text")
            texts = [hay.paragraphs[p] if isinstance(p, int) else p for p in inst.pieces]
            for t in texts[:-1]:
                if not (t.endswith("\n") and len(t) >= 2 and not t[-2].isspace()):
                    raise AssertionError(f"{family} #{j}: piece {t[-30:]!r} must end in one newline after text")
            for t in texts[1:]:
                if t[0] in " \t" or (t[0] == "\n" and len(t) > 1 and t[1].isspace()):
                    raise AssertionError(f"{family} #{j}: piece {t[:30]!r} starts with whitespace")
            budget = tokens + 24  # needles alone may exceed tiny budgets; not at these sizes
            if counter.count(prompt) > budget:
                raise AssertionError(f"{family} #{j}: {counter.count(prompt)} tokens for a budget of {tokens}")
            counts[family] = counts.get(family, 0) + 1
    return counts

# --------------------------------------------------------------------------------------
# Dump of held-out instances
# --------------------------------------------------------------------------------------

DUMP_PLAN = {
    # split: [(prompt tokens, instances per family)]
    "dev": [(1024, 10), (4096, 20)],
    "test": [(1024, 10), (2048, 10), (4096, 50)],
}


def dump(outdir: str, counter: Counter, held: list[str], exact: bool) -> dict:
    os.makedirs(outdir, exist_ok=True)
    hay = Haystack.build(held, counter)
    summary: dict = {"tokenCounts": "exact" if exact else f"estimated at {CHARS_PER_TOKEN} chars/token"}
    for split, plan in DUMP_PLAN.items():
        seed = DEV_SEED if split == "dev" else TEST_SEED
        n = 0
        with open(os.path.join(outdir, f"{split}.jsonl"), "w", encoding="utf-8") as f:
            for length, per_family in plan:
                for family in FAMILIES:
                    rng = random.Random(f"{seed}/{length}/{family}")
                    for j in range(per_family):
                        # leave room for <bos>, the answer and <eos> inside `length`
                        inst = make_instance(family, rng, length - 48, hay, counter)
                        prompt = inst.prompt(hay)
                        rec = {
                            "id": f"{split}-{length}-{family}-{j}",
                            "split": split,
                            "family": family,
                            "length": length,
                            "promptTokens": counter.count(prompt) + 1 if exact else None,
                            "prompt": prompt,
                            "answer": inst.answer.strip(),
                            "meta": inst.meta,
                        }
                        f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                        n += 1
        summary[split] = {"seed": seed, "instances": n, "plan": plan}
    # natural text for next-token KL checks: runs of held-out paragraphs of ~1k tokens
    rng = random.Random(TEST_SEED + 17)
    with open(os.path.join(outdir, "text-heldout.jsonl"), "w", encoding="utf-8") as f:
        for j in range(40):
            run = hay.run(rng, 1000)
            f.write(json.dumps({"id": f"text-{j}", "text": "".join(hay.paragraphs[i] for i in run)},
                               ensure_ascii=False) + "\n")
    summary["text-heldout"] = 40
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--show", type=int, default=0, help="print this many instances (one family each in turn)")
    ap.add_argument("--tokens", type=int, default=400, help="prompt length of --show instances")
    ap.add_argument("--dump", metavar="OUTDIR", help="write dev/test JSONL of held-out instances here")
    ap.add_argument("--tokenizer", help="tokenizer.json for exact token counts (needs the tokenizers package)")
    ap.add_argument("--stdlib", help="stdlib folder to take text from (default: this interpreter's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--self-test", type=int, metavar="N", default=0,
                    help="check N instances per family against independent solvers; exit 1 on failure")
    ap.add_argument("--max-files", type=int, help="read only the first N stdlib files (quick tests)")
    args = ap.parse_args(argv)
    counter = Counter()
    if args.tokenizer:
        from tokenizers import Tokenizer  # noqa: PLC0415

        tok = Tokenizer.from_file(args.tokenizer)
        counter = Counter(lambda s: tok.encode(s, add_special_tokens=False).ids)
    train, held = load_corpus(args.stdlib, processes=min(8, os.cpu_count() or 1), max_files=args.max_files)
    print(f"corpus: {len(train)} train paragraphs, {len(held)} held-out, from {args.stdlib or stdlib_dir()}",
          file=sys.stderr)
    if args.self_test:
        try:
            counts = self_test(train + held, args.self_test, args.seed)
        except AssertionError as e:
            print(f"self-test FAILED: {e}", file=sys.stderr)
            return 1
        print(json.dumps({"selfTest": "ok", "instances": counts}))
    if args.show:
        hay = Haystack.build(held or train, counter)
        rng = random.Random(args.seed)
        for j in range(args.show):
            fam = FAMILIES[j % len(FAMILIES)]
            inst = make_instance(fam, rng, args.tokens, hay, counter)
            p = inst.prompt(hay)
            print(f"===== {fam} {inst.meta} ~{counter.count(p)} tokens")
            print(p + inst.answer)
    if args.dump:
        summary = dump(args.dump, counter, held, exact=args.tokenizer is not None)
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
