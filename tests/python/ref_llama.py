#!/usr/bin/env python3
"""Independent numpy reference forward pass for Llama-family GGUF models (the oracle).

It shares no code with tern: weights come from PyPI's `gguf` reader and `gguf.quants.dequantize`
(F32, F16, BF16, Q4_0/1, Q5_0/1, Q8_0, the K-quants, ...), and every step below is written out
plainly so a reader can check it against the llama.cpp graph by eye.

Precision: weights are dequantised once to float64 and all arithmetic runs in float64, so the
oracle's own rounding error is negligible next to any float32 engine.

Architectures:
- "llama": RoPE in GGML's *normal* layout, adjacent pairs (x[2i], x[2i+1]). llama.cpp's HF
  converter permutes Q/K rows so that this layout reproduces HF's rotate_half; we must match the
  file, not HF.
- "qwen2": same graph plus optional Q/K/V biases, RoPE in the *NeoX* layout, pairs
  (x[i], x[i + n_rot/2]).

Library use:  ReferenceModel(path).logits([ids...]) -> float64 array [n_tokens, n_vocab]
CLI:          python ref_llama.py MODEL.gguf --ids 1,2,3 [--out logits.npy] [--top 5]
"""
from __future__ import annotations

import argparse
import functools
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

# Which RoPE pairing each architecture uses (llama.cpp's llama_model_rope_type).
ROPE_LAYOUT = {"llama": "normal", "qwen2": "neox"}


class ReferenceModel:
    def __init__(self, path: str):
        self.reader = GGUFReader(path)
        self.tensors = {t.name: t for t in self.reader.tensors}
        self.arch = self._field("general.architecture")
        if self.arch not in ROPE_LAYOUT:
            raise ValueError(f"ref_llama: unsupported architecture {self.arch!r}")
        self.rope_layout = ROPE_LAYOUT[self.arch]

        a = self.arch
        self.n_embd = int(self._field(f"{a}.embedding_length"))
        self.n_layer = int(self._field(f"{a}.block_count"))
        self.n_head = int(self._field(f"{a}.attention.head_count"))
        self.n_head_kv = int(self._field(f"{a}.attention.head_count_kv", self.n_head))
        self.head_dim = int(self._field(f"{a}.attention.key_length", self.n_embd // self.n_head))
        self.head_dim_v = int(self._field(f"{a}.attention.value_length", self.head_dim))
        self.n_rot = int(self._field(f"{a}.rope.dimension_count", self.head_dim))
        self.rope_base = float(self._field(f"{a}.rope.freq_base", 10000.0))
        self.eps = float(self._field(f"{a}.attention.layer_norm_rms_epsilon"))
        if self.n_head % self.n_head_kv != 0:
            raise ValueError("ref_llama: n_head must be a multiple of n_head_kv")
        # Tied embeddings: no output.weight, the head reuses token_embd.
        self.output_name = "output.weight" if "output.weight" in self.tensors else "token_embd.weight"

    def _field(self, key, default=None):
        f = self.reader.fields.get(key)
        if f is None:
            if default is None:
                raise KeyError(f"ref_llama: metadata key {key} missing")
            return default
        return f.contents()

    @functools.lru_cache(maxsize=None)
    def weight(self, name: str) -> np.ndarray:
        """Dequantised tensor in numpy order: a GGUF ne=[n_in, n_out] weight becomes (n_out, n_in)."""
        t = self.tensors[name]
        w = dequantize(t.data, t.tensor_type)
        shape = tuple(int(d) for d in reversed(t.shape))
        return np.asarray(w, dtype=np.float64).reshape(shape)

    def _bias(self, name: str):
        return self.weight(name) if name in self.tensors else None

    # --- the pieces of one forward pass ------------------------------------------------------

    def rms_norm(self, x, w):
        # x: [T, n_embd]; llama.cpp: x / sqrt(mean(x^2) + eps) * w
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, positions):
        """x: [T, n_heads, head_dim]; rotates the first n_rot dims of every head, leaves the rest."""
        half = self.n_rot // 2
        inv_freq = self.rope_base ** (-2.0 * np.arange(half) / self.n_rot)  # theta_i per position 1
        ang = positions[:, None].astype(np.float64) * inv_freq[None, :]   # [T, half]
        cos = np.cos(ang)[:, None, :]                                       # [T, 1, half]
        sin = np.sin(ang)[:, None, :]
        out = x.copy()
        if self.rope_layout == "normal":
            x0, x1 = x[..., 0:self.n_rot:2], x[..., 1:self.n_rot:2]          # pairs (2i, 2i+1)
            out[..., 0:self.n_rot:2] = x0 * cos - x1 * sin
            out[..., 1:self.n_rot:2] = x0 * sin + x1 * cos
        else:
            x0, x1 = x[..., :half], x[..., half:self.n_rot]                 # pairs (i, i+half)
            out[..., :half] = x0 * cos - x1 * sin
            out[..., half:self.n_rot] = x0 * sin + x1 * cos
        return out

    def attention(self, q, k, v):
        """Causal GQA. q: [T, n_head, hd]; k: [T, n_head_kv, hd]; v: [T, n_head_kv, hd_v]."""
        T = q.shape[0]
        group = self.n_head // self.n_head_kv
        mask = np.triu(np.full((T, T), -np.inf), k=1)                       # key j > query i hidden
        out = np.empty((T, self.n_head, self.head_dim_v))
        for h in range(self.n_head):
            kv = h // group                                                 # llama.cpp's GQA mapping
            scores = q[:, h, :] @ k[:, kv, :].T / np.sqrt(self.head_dim) + mask
            scores -= scores.max(axis=-1, keepdims=True)
            p = np.exp(scores)
            p /= p.sum(axis=-1, keepdims=True)
            out[:, h, :] = p @ v[:, kv, :]
        return out.reshape(T, self.n_head * self.head_dim_v)

    def linear(self, x, name, bias=None):
        y = x @ self.weight(name).T
        return y if bias is None else y + bias

    def layer(self, il, x, positions):
        p = f"blk.{il}."
        T = x.shape[0]
        h = self.rms_norm(x, self.weight(p + "attn_norm.weight"))
        q = self.linear(h, p + "attn_q.weight", self._bias(p + "attn_q.bias"))
        k = self.linear(h, p + "attn_k.weight", self._bias(p + "attn_k.bias"))
        v = self.linear(h, p + "attn_v.weight", self._bias(p + "attn_v.bias"))
        q = self.rope(q.reshape(T, self.n_head, self.head_dim), positions)
        k = self.rope(k.reshape(T, self.n_head_kv, self.head_dim), positions)
        v = v.reshape(T, self.n_head_kv, self.head_dim_v)
        x = x + self.linear(self.attention(q, k, v), p + "attn_output.weight")

        h = self.rms_norm(x, self.weight(p + "ffn_norm.weight"))
        gate = self.linear(h, p + "ffn_gate.weight")
        up = self.linear(h, p + "ffn_up.weight")
        silu = gate / (1.0 + np.exp(-gate))
        return x + self.linear(silu * up, p + "ffn_down.weight")

    def logits(self, ids) -> np.ndarray:
        """Logits for every position of one sequence starting at position 0: [n_tokens, n_vocab]."""
        ids = np.asarray(ids, dtype=np.int64)
        x = self.weight("token_embd.weight")[ids]                           # [T, n_embd]
        positions = np.arange(len(ids))
        for il in range(self.n_layer):
            x = self.layer(il, x, positions)
        x = self.rms_norm(x, self.weight("output_norm.weight"))
        return x @ self.weight(self.output_name).T


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--ids", required=True, help="comma-separated token ids")
    ap.add_argument("--out", help="write float64 logits [n_tokens, n_vocab] to this .npy file")
    ap.add_argument("--top", type=int, default=5, help="print the top-k ids of the last position")
    args = ap.parse_args(argv)
    model = ReferenceModel(args.model)
    logits = model.logits([int(s) for s in args.ids.split(",") if s.strip()])
    if args.out:
        np.save(args.out, logits)
    last = logits[-1]
    for i in np.argsort(-last)[: args.top]:
        print(f"{i}\t{last[i]:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
