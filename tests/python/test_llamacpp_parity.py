"""Peer reference: llama.cpp on the default model (fixture made by scripts/make-llamacpp-fixtures).

What is held to what, and why the bounds are what they are (figures from the fixture's 12 prompts):

- Prompt ids: identical.
- Greedy tokens: at least MIN_IDENTICAL prompts give llama.cpp's 64 tokens exactly (measured: 4 of
  12 (prompts 1, 3, 8, 10), identically with every TERN_CPU_ISA variant, which agree to the bit
  (test_isa_variants.py); the count moves with last-bit changes: 5 with the reference attention, 6
  with the flash kernel on libm's expf, 5 with its own vectorised exp, 5 with Q4_1 in the file's
  row-major blocks and 4 with Q4_1 repacked in groups of eight rows, whose kernel rounds each
  block's exact integer dot once where ggml rounds it in eight float lanes). Every other prompt gives them up to a step where llama.cpp's top two candidates are nearly
  tied: tern's token must be in the peer's top 5 there, within TIE_LOGITS of the peer's best.
  Exact agreement everywhere is not a property of a correct engine on this model: its activations
  are rounded to 8 bits before each matmul, so a last-bit difference (summation order) flips some
  rounding and moves logits by a few tenths. llama.cpp fed the same prompts one token at a time
  instead of in one batch diverges from itself on 6 of the 12 (recorded as `peer_divergence`).
- Logits: at every step, with both fed the peer's tokens, tern's logits for the peer's top-5 ids are
  within MAX_LOGIT_DIFF of the peer's, with a median (over steps) under MEDIAN_LOGIT_DIFF. llama.cpp
  against itself (batch 1 vs 512): at most 1.10, medians 0.20-0.36; tern against llama.cpp: at most
  1.56, medians 0.21-0.42. Top logits are 14-35, so these are a few percent.
"""
import functools
import json

import numpy as np
import pytest

from conftest import SOURCE_DIR, binary, run

FIXTURE = SOURCE_DIR / "tests" / "fixtures" / "llamacpp" / "smollm2-135m-q4_1-greedy.json"
MIN_IDENTICAL = 4
TIE_LOGITS = 1.0
MAX_LOGIT_DIFF = 2.0
MEDIAN_LOGIT_DIFF = 0.5


def cases():
    if not FIXTURE.exists():
        return []
    return json.loads(FIXTURE.read_text())["cases"]


CASES = cases()
IDS = [c["prompt"][-40:].strip().replace("\n", " ") for c in CASES]


@functools.lru_cache(maxsize=None)
def tern_greedy(index: int, model: str):
    case = CASES[index]
    r = run([binary("tern"), "run", "-m", model, "-p", case["prompt"], "-n", len(case["generated_ids"]),
             "--temp", "0", "--ignore-eos", "--output-format", "json", "-t", "2"], timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def first_difference(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


def test_fixture_present():
    assert len(CASES) >= MIN_IDENTICAL, f"{FIXTURE} missing or short: run scripts/make-llamacpp-fixtures"


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_prompt_ids_match(index, default_model):
    assert tern_greedy(index, str(default_model))["prompt_ids"] == CASES[index]["prompt_ids"]


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_greedy_tokens_match_until_a_near_tie(index, default_model):
    case = CASES[index]
    got, want = tern_greedy(index, str(default_model))["generated_ids"], case["generated_ids"]
    assert len(got) == len(want)
    d = first_difference(got, want)
    if d is None:
        return
    top_ids, top_logits = case["top_ids"][d], case["top_logits"][d]
    assert got[d] in top_ids, f"step {d}: tern chose {got[d]}, not among llama.cpp's top 5 {top_ids}"
    margin = top_logits[0] - top_logits[top_ids.index(got[d])]
    assert margin < TIE_LOGITS, (f"step {d}: tern chose {got[d]}, {margin:.3f} below llama.cpp's choice "
                                 f"{top_ids[0]}: not a near-tie (< {TIE_LOGITS})")


def test_enough_prompts_identical(default_model):
    identical = [i for i in range(len(CASES))
                 if tern_greedy(i, str(default_model))["generated_ids"] == CASES[i]["generated_ids"]]
    assert len(identical) >= MIN_IDENTICAL, f"only prompts {identical} give llama.cpp's 64 tokens exactly"


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_top_logits_close(index, default_model, tmp_path):
    case = CASES[index]
    ids = case["prompt_ids"] + case["generated_ids"]
    out = tmp_path / "logits.f32"
    r = run([binary("tool_logits"), default_model, ",".join(map(str, ids)), out, "--threads", "2"], timeout=600)
    assert r.returncode == 0, r.stderr
    logits = np.fromfile(out, dtype=np.float32).reshape(len(ids), -1)
    start = len(case["prompt_ids"]) - 1  # row predicting the first generated token
    diffs = np.array([np.abs(logits[start + s][case["top_ids"][s]] - np.array(case["top_logits"][s])).max()
                      for s in range(len(case["generated_ids"]))])
    assert diffs.max() < MAX_LOGIT_DIFF, f"step {int(diffs.argmax())}: top-5 logits differ by {diffs.max():.3f}"
    assert np.median(diffs) < MEDIAN_LOGIT_DIFF, f"median top-5 logit difference {np.median(diffs):.3f}"
