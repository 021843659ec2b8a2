"""Peer reference: llama.cpp's greedy tokens on the default model (fixtures made by
scripts/make-llamacpp-fixtures) must be tern's too, prompt ids and all 64 generated ids."""
import json
import pathlib

import pytest

from conftest import SOURCE_DIR, binary, run

FIXTURE = SOURCE_DIR / "tests" / "fixtures" / "llamacpp" / "smollm2-135m-q4_1-greedy.json"


def cases():
    if not FIXTURE.exists():
        return []
    return json.loads(FIXTURE.read_text())["cases"]


@pytest.mark.parametrize("case", cases(), ids=lambda c: c["prompt"][-40:].strip().replace("\n", " "))
def test_greedy_tokens_match_llamacpp(case, default_model):
    r = run([binary("tern"), "run", "-m", default_model, "-p", case["prompt"], "-n", len(case["generated_ids"]),
             "--temp", "0", "--ignore-eos", "--output-format", "json", "-t", "2"], timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["prompt_ids"] == case["prompt_ids"]
    got, want = out["generated_ids"], case["generated_ids"]
    first_diff = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
    assert got == want, f"first difference at generated token {first_diff}: tern {got[first_diff:first_diff + 5]} llama.cpp {want[first_diff:first_diff + 5]}"


def test_fixture_present():
    assert len(cases()) >= 5, f"{FIXTURE} missing or short: run scripts/make-llamacpp-fixtures"
