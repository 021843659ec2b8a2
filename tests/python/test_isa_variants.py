"""Every CPU kernel variant (TERN_CPU_ISA) and thread count computes the same function to the bit.

The SIMD variants share one kernel source, sum in ggml's lane order, and the generic variant follows
the same order in plain C++; attention scores are exact and nothing depends on how work is split
over threads. So logits must be byte-identical, not merely close: a difference here is a bug in a
variant (or a split that leaked into the arithmetic), caught before it shows up as a flaky parity test.
"""
import os

import pytest

import tiny_shapes
from conftest import binary, run

ISAS = ["generic", "avx2", "avx512"]
IDS = "1,504,3,4456,28,7,99,1000,22,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28"


def logits(model, tmp_path, isa, threads, ids=IDS):
    out = tmp_path / f"{isa}-{threads}.f32"
    r = run([binary("tool_logits"), model, ids, out, "--threads", threads],
            env={**os.environ, "TERN_CPU_ISA": isa}, timeout=300)
    if r.returncode != 0 and "cannot run" in r.stderr:
        pytest.skip(f"this CPU has no {isa}")
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", [1, 3])
def test_logits_identical_to_generic(default_model, tmp_path, isa, threads):
    assert logits(default_model, tmp_path, isa, threads) == logits(default_model, tmp_path, "generic", 2)


# The K-quants' grouped kernels (every K type repacked at load) on a model whose rows are whole
# super-blocks: q3_k_m holds Q3_K, Q4_K, Q5_K and Q6_K matrices; q2_k the rest.
K_SHAPE = tiny_shapes.Shape("isa_k_quants", hidden=256, heads=4, kv_heads=2, head_dim=64, ffn=512, layers=8, tied=False)
K_IDS = "1,50,3,445,28,7,99,100,22,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20"


@pytest.fixture(scope="module", params=["q3_k_m", "q2_k"])
def k_quant_model(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("isa_k")
    src = tiny_shapes.make(K_SHAPE, d / "k.F32.gguf")
    out = d / f"k.{request.param}.gguf"
    r = run([binary("tern"), "quantize", src, out, "--type", request.param, "-q"], timeout=120)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("isa", ISAS)
def test_k_quant_logits_identical_to_generic(k_quant_model, tmp_path, isa):
    assert logits(k_quant_model, tmp_path, isa, 3, K_IDS) == logits(k_quant_model, tmp_path, "generic", 2, K_IDS)
