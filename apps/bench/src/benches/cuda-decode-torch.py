"""PyTorch SDPA decode baselines for `kascade-bench cuda-decode`.

Usage: python3 cuda-decode-torch.py '{"H":32,"G":8,"D":128,"shapes":[[1,8192],...],"warmup":5,"repeats":50}'
Prints one JSON object on stdout: per shape the median microseconds of
scaled_dot_product_attention(q [B,H,1,D], k/v [B,G,n,D], enable_gqa=True) in bf16 under the
cuDNN and flash backends, timed with CUDA events per call after warm-up.
"""
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def timed(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    # Keep the GPU busy ~300 ms first so clocks have ramped up (short decode calls otherwise
    # run partly at idle clocks); the Node side does the same before its timings.
    s = torch.cuda.Event(enable_timing=True)
    e = torch.cuda.Event(enable_timing=True)
    s.record()
    fn()
    e.record()
    torch.cuda.synchronize()
    for _ in range(int(min(20000, max(1, 300.0 / max(s.elapsed_time(e), 1e-3))))):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for i in range(repeats):
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    ts = sorted(s.elapsed_time(e) * 1000.0 for s, e in zip(starts, ends))
    return ts[len(ts) // 2]


def main():
    cfg = json.loads(sys.argv[1])
    H, G, D = cfg["H"], cfg["G"], cfg["D"]
    warmup, repeats = cfg.get("warmup", 5), cfg.get("repeats", 50)
    out = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "rows": [],
    }
    gen = torch.Generator(device="cuda").manual_seed(0)
    for B, n in cfg["shapes"]:
        q = torch.randn(B, H, 1, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        k = torch.randn(B, G, n, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        v = torch.randn(B, G, n, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        row = {"batch": B, "context": n}
        for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
            try:
                with sdpa_kernel(backend):
                    row[name + "Us"] = timed(
                        lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), warmup, repeats
                    )
            except Exception as ex:  # a backend that refuses the shape is reported, not fatal
                row[name + "Error"] = str(ex)[:120]
        out["rows"].append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        del q, k, v
        torch.cuda.empty_cache()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
