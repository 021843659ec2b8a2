"""Bit-compatibility of tern's reference quant formats with ggml, using PyPI gguf's numpy port
(gguf.quants) as the stand-in for ggml-quants.c.

- Types gguf can quantise: tern dequantises gguf's bytes to exactly gguf's floats, and tern's
  quantisation (no importance weights) produces exactly gguf's bytes.
- Types gguf can only dequantise (the K-quants): random block bytes with finite f16 scales dequantise
  to exactly gguf's floats; tern's own quantised K blocks dequantise identically in both.
Types gguf has no code for (Q8_1, Q8_K) are covered by the C++ unit tests only.
"""
import pathlib

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES, quants

from conftest import binary, run

QUANTIZABLE = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
DEQUANT_ONLY = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
# Byte offsets of the f16 scale fields in each block (ggml-common.h), so random blocks get finite,
# plausible scales instead of random NaN/inf bit patterns.
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}


def tern(mode, type_name, data: bytes, tmp_path: pathlib.Path) -> bytes:
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    src.write_bytes(data)
    r = run([binary("quant_tool"), mode, type_name.lower(), src, dst])
    assert r.returncode == 0, r.stderr
    return dst.read_bytes()


def tern_dequant(type_name, blocks: np.ndarray, tmp_path) -> np.ndarray:
    return np.frombuffer(tern("dequant", type_name, blocks.tobytes(), tmp_path), dtype=np.float32)


def gguf_dequant(type_name, blocks: np.ndarray) -> np.ndarray:
    return quants.dequantize(blocks.reshape(1, -1), T[type_name]).reshape(-1).astype(np.float32)


def assert_bits_equal(a: np.ndarray, b: np.ndarray):
    """Exact equality of float bit patterns (so -0.0 vs 0.0 and NaN payloads count)."""
    assert a.shape == b.shape
    bad = np.flatnonzero(a.view(np.uint32) != b.view(np.uint32))
    assert bad.size == 0, f"{bad.size} mismatches, first at {bad[0]}: tern {a[bad[0]]!r} gguf {b[bad[0]]!r}"


def sample_rows(n: int, seed: int):
    """Rows that exercise the rounding: Gaussian, heavy-tailed, one-signed, constant, zero, outliers,
    and values on exact rounding ties of a Q4_0/Q8_0 grid."""
    rng = np.random.default_rng(seed)
    rows = {
        "normal": rng.standard_normal(n),
        "scaled": rng.standard_normal(n) * 1e-3,
        "heavy": rng.standard_t(2, n),
        "positive": rng.random(n) + 0.5,
        "negative": -rng.random(n) * 4,
        "constant": np.full(n, 0.75),
        "zeros": np.zeros(n),
        "outlier": np.where(np.arange(n) % 97 == 5, 100.0, rng.standard_normal(n) * 0.1),
        "ties": (rng.integers(-16, 17, n) * 0.5).astype(np.float64),
    }
    return {k: v.astype(np.float32) for k, v in rows.items()}


@pytest.mark.parametrize("type_name", QUANTIZABLE)
@pytest.mark.parametrize("nblocks", [1, 3, 8])
def test_quantizable_types_match_gguf(type_name, nblocks, tmp_path):
    block = GGML_QUANT_SIZES[T[type_name]][0]
    n = 256 * nblocks if block == 1 else block * nblocks * 8 + block  # odd block counts too
    for kind, row in sample_rows(n, seed=nblocks).items():
        ref_bytes = np.asarray(quants.quantize(row.reshape(1, -1), T[type_name])).view(np.uint8).reshape(-1)
        ours = np.frombuffer(tern("quant", type_name, row.tobytes(), tmp_path), dtype=np.uint8)
        assert ours.size == ref_bytes.size, kind
        mism = np.flatnonzero(ours != ref_bytes)
        assert mism.size == 0, f"{type_name}/{kind}: {mism.size} byte(s) differ, first at {mism[0]}"
        assert_bits_equal(tern_dequant(type_name, ref_bytes, tmp_path), gguf_dequant(type_name, ref_bytes))


def random_blocks(type_name: str, nblocks: int, rng) -> np.ndarray:
    _, type_size = GGML_QUANT_SIZES[T[type_name]]
    blocks = rng.integers(0, 256, (nblocks, type_size), dtype=np.uint8)
    for off in F16_FIELDS[type_name]:
        scale = (rng.standard_normal(nblocks) * 0.05).astype(np.float16)
        blocks[:, off:off + 2] = scale.view(np.uint8).reshape(nblocks, 2)
    return blocks.reshape(-1)


@pytest.mark.parametrize("type_name", DEQUANT_ONLY + [t for t in QUANTIZABLE if t.startswith("Q")])
def test_random_blocks_dequantize_like_gguf(type_name, tmp_path):
    rng = np.random.default_rng(1234)
    blocks = random_blocks(type_name, 67, rng)
    assert_bits_equal(tern_dequant(type_name, blocks, tmp_path), gguf_dequant(type_name, blocks))


@pytest.mark.parametrize("type_name", ["F16", "BF16"])
def test_all_half_patterns_dequantize_like_gguf(type_name, tmp_path):
    bits = np.arange(65536, dtype=np.uint16).view(np.uint8)
    ours = tern_dequant(type_name, bits, tmp_path)
    ref = gguf_dequant(type_name, bits)
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(ours), nan)
    assert_bits_equal(ours[~nan], ref[~nan])


@pytest.mark.parametrize("type_name", DEQUANT_ONLY)
def test_tern_k_quants_dequantize_like_gguf(type_name, tmp_path):
    """tern's own K-quant encoder output read back by gguf: same floats, and close to the input."""
    row = np.random.default_rng(7).standard_normal(256 * 5).astype(np.float32)
    blocks = np.frombuffer(tern("quant", type_name, row.tobytes(), tmp_path), dtype=np.uint8)
    ref = gguf_dequant(type_name, blocks)
    assert_bits_equal(tern_dequant(type_name, blocks, tmp_path), ref)
    rel = np.sqrt(np.mean((ref - row) ** 2)) / np.sqrt(np.mean(row**2))
    assert rel < 0.4, rel
