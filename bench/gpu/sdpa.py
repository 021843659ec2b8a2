#!/usr/bin/env python3
"""PyTorch's reference figures on this GPU, for bench/gpu-check: causal scaled_dot_product_attention
(f16, one sequence, 16 heads; the shapes bench/gpu/cuda_kernels.cpp times tern's FlashAttention
kernel on), a device-to-device copy (bytes read + written) and a large bf16 matrix product, each the
median of CUDA-event-timed repetitions after warm-up.

    python3 bench/gpu/sdpa.py [--json FILE]
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F


def timed(fn, reps=20, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json")
    args = ap.parse_args()
    dev = torch.device("cuda")
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}

    n = 1 << 30  # 2 GiB of f16
    a = torch.randn(n, device=dev, dtype=torch.float16)
    b = torch.empty_like(a)
    ms = timed(lambda: b.copy_(a), reps=10)
    out["copy_gbs"] = 2 * a.numel() * 2 / (ms * 1e-3) / 1e9
    del a, b
    x = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    y = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    ms = timed(lambda: x @ y, reps=10)
    out["bf16_matmul_tflops"] = 2 * 8192**3 / (ms * 1e-3) / 1e12
    del x, y
    print(f"torch copy {out['copy_gbs']:.1f} GB/s, bf16 matmul {out['bf16_matmul_tflops']:.0f} TFLOP/s")

    heads = 16
    out["sdpa"] = []
    for d in (64, 128):
        for s in (1024, 2048, 4096, 8192):
            q, k, v = (torch.randn(1, heads, s, d, device=dev, dtype=torch.float16) for _ in range(3))
            ms = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
            tflops = 4 * heads * d * (s * (s + 1) / 2) / (ms * 1e-3) / 1e12
            out["sdpa"].append({"S": s, "D": d, "heads": heads, "ms": ms, "tflops": tflops})
            print(f"sdpa   S {s:5d} D {d:3d}  {ms:8.3f} ms  {tflops:6.1f} TFLOP/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
