#!/usr/bin/env python3
"""Tiny seeded random checkpoints and their Hugging Face transformers reference logits.

Run where transformers 5.x and torch are installed (no network needed):

    python3 packages/engine/scripts/make_reference.py --out /tmp/ref

For each fixture it writes `<out>/<name>/` (config.json, safetensors, tokenizer.json,
tokenizer_config.json) and `<out>/<name>/reference.json`: the prompts' token ids, the
logits of their last `ROWS` positions (computed in float32 on the CPU, eager attention),
the tokenizer's ids for the text prompts and a rendered chat template. The engine's
parity test (`src/model/parity.test.ts`) loads each directory and compares.
"""

import argparse
import json
import math
import os
import shutil
import sys
import traceback

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROWS = 9  # logits kept per prompt: the last ROWS positions
VOCAB = 300
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Kascade reuses the exact top-k keys of a few anchor layers in the layers between them, "
    "so long contexts cost less to attend.",
]
CORPUS = (
    "the quick brown fox jumps over the lazy dog. attention is sparse: a few keys hold most "
    "of the probability mass. anchor layers compute exact top-k indices and reuse layers "
    "borrow them. long context inference spends its time reading the key value cache. "
) * 20
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is an anchor layer?"},
]


def make_tokenizer(out_dir):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|bos|>", "<|eos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS], trainer=trainer)
    bos = tok.token_to_id("<|bos|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B", special_tokens=[("<|bos|>", bos)]
    )
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<|bos|>",
                "eos_token": "<|eos|>",
                "model_max_length": 4096,
                "chat_template": CHAT_TEMPLATE,
            },
            f,
            indent=2,
        )
    return bos, tok.token_to_id("<|eos|>")


def randomize(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "norm" in name:
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.2 * noise)
            elif "embed_tokens" in name:
                p.copy_(noise)
            else:
                p.copy_(noise * (1.2 / math.sqrt(p.shape[-1])))


FIXTURES = [
    # name, class prefix, config overrides, options
    (
        "llama-llama3rope",
        "Llama",
        dict(
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=False,
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=10000.0,
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=32,
            ),
        ),
        {},
    ),
    ("llama-tied", "Llama", dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                 tie_word_embeddings=True, rope_parameters=dict(rope_type="default", rope_theta=500000.0)), {}),
    ("mistral", "Mistral", dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                                tie_word_embeddings=False, sliding_window=None,
                                rope_parameters=dict(rope_type="default", rope_theta=1000000.0)), {"legacy_config": True}),
    ("qwen2-bias-tied", "Qwen2", dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      tie_word_embeddings=True, use_sliding_window=False,
                                      rope_parameters=dict(rope_type="default", rope_theta=1000000.0)), {}),
    ("qwen3-qknorm-sharded", "Qwen3", dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                           head_dim=32, tie_word_embeddings=False, use_sliding_window=False,
                                           rope_parameters=dict(rope_type="default", rope_theta=1000000.0)),
     {"max_shard_size": "150KB"}),
    ("llama-bf16-bias", "Llama", dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      tie_word_embeddings=False, attention_bias=True,
                                      rope_parameters=dict(rope_type="default", rope_theta=10000.0)), {"dtype": "bfloat16"}),
]


def tokenizer_functions(tok_dir):
    """transformers' tokenizer and chat template; falls back to `tokenizers` + jinja2 as transformers sets it up."""
    try:
        hf_tok = transformers.AutoTokenizer.from_pretrained(tok_dir)
        return (
            lambda text: list(hf_tok(text)["input_ids"]),
            lambda msgs: hf_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True),
            "transformers.AutoTokenizer " + type(hf_tok).__name__,
        )
    except Exception:
        traceback.print_exc()
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        template = env.from_string(CHAT_TEMPLATE)
        return (
            lambda text: tok.encode(text).ids,
            lambda msgs: template.render(
                messages=msgs, add_generation_prompt=True, bos_token="<|bos|>", eos_token="<|eos|>"
            ),
            "tokenizers + jinja2",
        )


def build(out_root, index, name, prefix, overrides, opts, bos, eos, tok_dir):
    out_dir = os.path.join(out_root, name)
    os.makedirs(out_dir, exist_ok=True)
    config_cls = getattr(transformers, prefix + "Config")
    model_cls = getattr(transformers, prefix + "ForCausalLM")
    base = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=None,
    )
    base.update(overrides)
    config = config_cls(**base)
    print(name, "rope_parameters:", getattr(config, "rope_parameters", None), flush=True)
    torch.manual_seed(1000 + index)
    model = model_cls(config).to(torch.float32).eval()
    try:
        model.set_attn_implementation("eager")
    except Exception as e:  # older API: the config attribute
        print(name, "set_attn_implementation failed:", e, flush=True)
        model.config._attn_implementation = "eager"
    randomize(model, 1000 + index)
    if opts.get("dtype") == "bfloat16":
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).to(torch.float32))
    if config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "tying failed"
    encode, render, tok_source = tokenizer_functions(tok_dir)
    prompts = []
    for text in TEXTS:
        prompts.append({"text": text, "ids": encode(text)})
    gen = torch.Generator().manual_seed(77 + index)
    prompts.append({"text": None, "ids": torch.randint(0, VOCAB, (37,), generator=gen).tolist()})
    with torch.no_grad():
        for p in prompts:
            logits = model(input_ids=torch.tensor([p["ids"]])).logits[0].to(torch.float32)
            rows = logits[-ROWS:] if logits.shape[0] >= ROWS else logits
            p["firstRow"] = logits.shape[0] - rows.shape[0]
            p["logits"] = [[float("%.8g" % x) for x in row.tolist()] for row in rows]
    chat = render(MESSAGES)
    save_kwargs = {}
    if "max_shard_size" in opts:
        save_kwargs["max_shard_size"] = opts["max_shard_size"]
    to_save = model.to(torch.bfloat16) if opts.get("dtype") == "bfloat16" else model
    to_save.save_pretrained(out_dir, **save_kwargs)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok_dir, f), os.path.join(out_dir, f))
    if opts.get("legacy_config"):
        # Rewrite to the pre-transformers-5 spelling most published checkpoints use.
        path = os.path.join(out_dir, "config.json")
        with open(path) as f:
            cfg = json.load(f)
        rp = cfg.pop("rope_parameters", None) or {}
        cfg["rope_theta"] = rp.get("rope_theta", 10000.0)
        if rp.get("rope_type", "default") != "default":
            cfg["rope_scaling"] = {k: v for k, v in rp.items() if k != "rope_theta"}
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
    reload_diff = None
    try:
        reloaded = model_cls.from_pretrained(out_dir, dtype=torch.float32).eval()
        with torch.no_grad():
            again = reloaded(input_ids=torch.tensor([prompts[-1]["ids"]])).logits[0]
            first = model.to(torch.float32)(input_ids=torch.tensor([prompts[-1]["ids"]])).logits[0]
        reload_diff = float((again - first).abs().max())
        print(name, "reload max diff", reload_diff, flush=True)
    except Exception:
        traceback.print_exc()
    ref = {
        "name": name,
        "reloadMaxDiff": reload_diff,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "savedDtype": opts.get("dtype", "float32"),
        "tokenizerSource": tok_source,
        "chatMessages": MESSAGES,
        "chatRendered": chat,
        "prompts": prompts,
    }
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(ref, f)
    print(name, "files:", {f: os.path.getsize(os.path.join(out_dir, f)) for f in sorted(os.listdir(out_dir))}, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    print("transformers", transformers.__version__, "torch", torch.__version__, flush=True)
    os.makedirs(args.out, exist_ok=True)
    tok_dir = os.path.join(args.out, "_tokenizer")
    os.makedirs(tok_dir, exist_ok=True)
    bos, eos = make_tokenizer(tok_dir)
    failures = 0
    for i, (name, prefix, overrides, opts) in enumerate(FIXTURES):
        try:
            build(args.out, i, name, prefix, overrides, opts, bos, eos, tok_dir)
        except Exception:
            failures += 1
            print("FAILED", name, file=sys.stderr)
            traceback.print_exc()
    shutil.rmtree(tok_dir)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
