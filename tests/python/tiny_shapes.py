"""Named tiny model shapes for tern-vs-oracle tests, and `make(shape, path)` to generate one.

Together the shapes cover: MHA, GQA and MQA; head dims 32, 64 and 128; a hidden size that is not a
power of two (96, 192, 320) and one where n_head * head_dim != hidden (key_length written);
tied and untied output heads; F32, F16, Q8_0, Q4_0 and Q4_1 weights; an odd vocab size; a
non-default RoPE base; and one NeoX-RoPE model (arch qwen2, Q/K/V biases) for when tern grows it.
Each generates in well under 2 s. All quantised shapes keep every n_in a multiple of 32 (the
block size of the types used here).
"""
from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "make-tiny-model"


@dataclasses.dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    layers: int = 2
    vocab: int = 512
    ctx: int = 256
    tied: bool = True
    dtype: str = "f32"
    rope_theta: float = 10000.0
    arch: str = "llama"
    seed: int = 0
    output_scale: float = 1.0

    def args(self) -> list[str]:
        return [
            "--arch", self.arch, "--vocab", str(self.vocab), "--hidden", str(self.hidden),
            "--layers", str(self.layers), "--heads", str(self.heads), "--kv-heads", str(self.kv_heads),
            "--head-dim", str(self.head_dim), "--ffn", str(self.ffn), "--ctx", str(self.ctx),
            "--tied" if self.tied else "--untied", "--dtype", self.dtype,
            "--rope-theta", repr(self.rope_theta), "--seed", str(self.seed),
            "--output-scale", repr(self.output_scale),
        ]


SHAPES = [
    Shape("mha_hd64_f32_tied", hidden=128, heads=2, kv_heads=2, head_dim=64, ffn=256),
    Shape("gqa_hd64_f16_untied", hidden=256, heads=4, kv_heads=2, head_dim=64, ffn=512, tied=False, dtype="f16"),
    Shape("mqa_hd128_q8_0_tied", hidden=256, heads=2, kv_heads=1, head_dim=128, ffn=384, dtype="q8_0"),
    # n_head * head_dim = 512 != hidden 256: exercises llama.attention.key_length / value_length.
    Shape("gqa_hd128_wideq_q4_0_untied", hidden=256, heads=4, kv_heads=2, head_dim=128, ffn=512,
          tied=False, dtype="q4_0"),
    Shape("mha_hidden96_hd32_f32_untied", hidden=96, heads=3, kv_heads=3, head_dim=32, ffn=160,
          tied=False, vocab=300),
    Shape("mqa_hidden320_5x64_q4_1", hidden=320, heads=5, kv_heads=1, head_dim=64, ffn=864, dtype="q4_1"),
    # SmolLM2-like proportions (3 heads sharing 1 kv head, base 1e5), three layers.
    Shape("gqa_hidden192_3x64_theta1e5_q8_0_untied", hidden=192, heads=3, kv_heads=1, head_dim=64, ffn=512,
          layers=3, tied=False, dtype="q8_0", rope_theta=100000.0),
    Shape("gqa_hidden96_q4_0_tied", hidden=96, heads=6, kv_heads=2, head_dim=16, ffn=192, dtype="q4_0", seed=7),
    # NeoX RoPE + Q/K/V biases; tern's tests should skip it until qwen2 is supported.
    Shape("qwen2_neox_gqa_hd64_f32", hidden=128, heads=2, kv_heads=1, head_dim=64, ffn=256, arch="qwen2"),
]

BY_NAME = {s.name: s for s in SHAPES}


def make(shape: Shape, path) -> pathlib.Path:
    """Write `shape` as a GGUF at `path` with scripts/make-tiny-model (same interpreter as the caller)."""
    path = pathlib.Path(path)
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(path), *shape.args()], check=True)
    return path


if __name__ == "__main__":
    # Generate every shape into a folder: python tiny_shapes.py OUT_DIR
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    for s in SHAPES:
        print(make(s, out / f"{s.name}.gguf"))
