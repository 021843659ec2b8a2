"""Every CPU kernel variant (TERN_CPU_ISA) and thread count computes the same function to the bit.

The SIMD variants share one kernel source, sum in ggml's lane order, and the generic variant follows
the same order in plain C++; attention scores are exact and nothing depends on how work is split
over threads. So logits must be byte-identical, not merely close: a difference here is a bug in a
variant (or a split that leaked into the arithmetic), caught before it shows up as a flaky parity test.
"""
import os

import pytest

from conftest import binary, run

ISAS = ["generic", "avx2", "avx512"]
IDS = "1,504,3,4456,28,7,99,1000,22,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28"


def logits(model, tmp_path, isa, threads):
    out = tmp_path / f"{isa}-{threads}.f32"
    r = run([binary("tool_logits"), model, IDS, out, "--threads", threads],
            env={**os.environ, "TERN_CPU_ISA": isa}, timeout=300)
    if r.returncode != 0 and "cannot run" in r.stderr:
        pytest.skip(f"this CPU has no {isa}")
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", [1, 3])
def test_logits_identical_to_generic(default_model, tmp_path, isa, threads):
    assert logits(default_model, tmp_path, isa, threads) == logits(default_model, tmp_path, "generic", 2)
