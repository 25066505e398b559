# Runs PyTorch's cuDNN SDPA decode (Llama-3.1-8B shape, bf16, enable_gqa) twice per shape, so that
# ncu can report the kernels cuDNN launches (grid, block, registers, bytes, DRAM throughput).
import os, torch
from torch.nn.attention import SDPBackend, sdpa_kernel
shapes = [tuple(map(int, s.split('x'))) for s in os.environ.get('PROFILE_SHAPES', '1x131072,32x131072').split(',')]
for b, n in shapes:
    q = torch.randn(b, 32, 1, 128, device='cuda', dtype=torch.bfloat16)
    k = torch.randn(b, 8, n, 128, device='cuda', dtype=torch.bfloat16)
    v = torch.randn(b, 8, n, 128, device='cuda', dtype=torch.bfloat16)
    for backend in (SDPBackend.CUDNN_ATTENTION,):
        with sdpa_kernel(backend):
            for _ in range(2):
                torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                torch.cuda.synchronize()
    del q, k, v
