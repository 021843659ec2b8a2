"""Independent reference: a numpy forward pass (ref_llama.py, float64, weights dequantised by PyPI
`gguf`) against tern's logits, on the default model and on random tiny models of several shapes.

Tolerance, per position, on the relative RMS error of the logits (and top-1 agreement wherever the
oracle's best two logits are clearly apart):
  - exact activations (tern's --exact mode: F32 activations into every matmul): < 5e-3 for every
    weight type; what remains is tern's F16 KV cache, which the oracle does not have.
  - default mode, which rounds activations to the weight type's 8-bit dot-product type (Q8_0/Q8_1)
    or to F16 before each matmul as llama.cpp does: < 3e-2 on the tiny models; on the 30-layer
    default model the rounding compounds to as much as 8.5e-2 (measured), so the bound there is 0.15.
"""
import numpy as np
import pytest

import tiny_shapes
from conftest import binary, run
from ref_llama import ReferenceModel

EXACT = 5e-3
ROUNDED = {"f32": 1e-3, "f16": 5e-3, "q8_0": 3e-2, "q4_0": 3e-2, "q4_1": 3e-2}
ROUNDED_DEFAULT_MODEL = 0.15
CLEAR_MARGIN = 0.1  # top-1 must agree where the oracle's best two logits are further apart than this
# ... and in the rounded (peer) mode, whose logits move by a few tenths with any last-bit change
# (llama.cpp against itself: up to 1.1, see test_llamacpp_parity.py), further apart than its near-tie
# bound. Measured: a 0.1006 margin at "chatml" position 9 flips with the attention kernel's exp.
CLEAR_MARGIN_ROUNDED = 1.0


def tern_logits(model, ids, backend="cpu", exact=False):
    out = model.parent / f"logits-{backend}-{int(exact)}.bin"
    r = run([binary("tool_logits"), model, ",".join(map(str, ids)), out, "--backend", backend, "--threads", "2",
             "--exact", "1" if exact else "0"], timeout=600)
    assert r.returncode == 0, r.stderr
    return np.fromfile(out, dtype=np.float32).reshape(len(ids), -1)


def compare(got, ref, tol, margin=CLEAR_MARGIN):
    for pos, (g, r) in enumerate(zip(got, ref)):
        rel = np.sqrt(np.mean((g - r) ** 2)) / np.sqrt(np.mean(r ** 2))
        assert rel < tol, f"position {pos}: relative RMS error {rel:.2e} >= {tol:.0e}"
        top2 = np.sort(r)[-2:]
        if top2[1] - top2[0] > margin:
            assert g.argmax() == r.argmax(), f"position {pos}: top-1 {g.argmax()} vs oracle {r.argmax()}"


@pytest.mark.parametrize("shape", [s for s in tiny_shapes.SHAPES if s.arch == "llama"], ids=lambda s: s.name)
def test_tiny_model_matches_numpy(shape, tmp_path):
    model = tiny_shapes.make(shape, tmp_path / f"{shape.name}.gguf")
    ids = [1, 5, 300 % shape.vocab, 17, 42, 99, 7, 250 % shape.vocab, 3, 64, 11]
    ref = ReferenceModel(str(model)).logits(ids)
    for backend in ("cpu", "ref"):  # the scalar reference backend is held to the same oracle
        compare(tern_logits(model, ids, backend, exact=True), ref, EXACT)
        compare(tern_logits(model, ids, backend), ref, ROUNDED[shape.dtype])


PROMPTS = [
    [504, 3575, 282, 4649, 314],  # "The capital of France is"
    [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198],  # ChatML question
    [1318, 15050, 253, 655, 28, 46412, 5108, 30, 21107, 104, 9869, 37, 198, 198, 21107, 4187, 28],  # mixed text
]


@pytest.fixture(scope="module")
def default_reference(default_model):
    return ReferenceModel(str(default_model))


@pytest.mark.parametrize("ids", PROMPTS, ids=["capital", "chatml", "mixed"])
def test_default_model_matches_numpy(ids, default_model, default_reference, tmp_path):
    link = tmp_path / default_model.name
    link.symlink_to(default_model)
    ref = default_reference.logits(ids)
    compare(tern_logits(link, ids, exact=True), ref, EXACT)
    compare(tern_logits(link, ids), ref, ROUNDED_DEFAULT_MODEL, CLEAR_MARGIN_ROUNDED)
