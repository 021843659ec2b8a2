"""Speculative decoding keeps the model's distribution (DESIGN.md: exact rejection sampling).

Tiny synthetic models (scripts/make-tiny-model): a target, a different random model with the same
vocabulary as a poor draft (most drafts rejected: the residual distribution does the work), and the
target quantised to 4 bits as a good draft. For each proposer, thousands of seeded requests sample
with temperature 1 with and without speculation, and a two-sample chi-square test on the tokens at
the first speculated positions must not reject equality at significance 1e-3 (the seeds are fixed,
so the outcome is too). A positive control shows the test notices a small change of temperature.
"""
import collections
import json
import math
import random

import pytest

from conftest import binary, run
from tern_server import TernServer
import tiny_shapes

N = 4000
# Every ordinary token once, in a fixed shuffled order: whatever token is sampled, unigram lookup
# (ngram:1-2) finds it in the prompt and drafts what followed it.
PROMPT = ",".join(map(str, [1] + random.Random(5).sample(range(3, 512), 509)))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("spec")
    # Logits four times sharper than the generator's default: a few tokens carry most of the mass,
    # as in a trained model, which gives the test its power.
    base = dict(hidden=64, heads=2, kv_heads=2, head_dim=32, ffn=128, layers=3, ctx=1024, output_scale=4.0)
    target = tiny_shapes.make(tiny_shapes.Shape("target", seed=1, **base), d / "target.gguf")
    other = tiny_shapes.make(tiny_shapes.Shape("other", seed=2, **base), d / "other.gguf")
    quant = tiny_shapes.make(tiny_shapes.Shape("target_q4", seed=1, dtype="q4_0", **base), d / "target_q4.gguf")
    return {"target": target, "other": other, "quant": quant}


def sample(model, n, max_tokens, *extra, prompt=PROMPT, seed0=1):
    r = run([binary("tool_spec_sampling"), model, prompt, n, max_tokens, "--seed0", seed0, *extra])
    assert r.returncode == 0, r.stderr
    rows = [list(map(int, line.split(","))) for line in r.stdout.splitlines()]
    assert len(rows) == n
    stats = dict(zip(*[iter(r.stderr.split())] * 2))
    return rows, {k: int(v) for k, v in stats.items()}


def chi2_two_sample(a, b):
    """Pearson's two-sample statistic for equal-size samples; categories with fewer than 10 draws in
    both samples together are pooled. Returns (statistic, critical value at 1e-3)."""
    ca, cb = collections.Counter(a), collections.Counter(b)
    stat, df, pa, pb = 0.0, -1, 0, 0
    for key in set(ca) | set(cb):
        x, y = ca[key], cb[key]
        if x + y < 10:
            pa, pb = pa + x, pb + y
            continue
        stat += (x - y) ** 2 / (x + y)
        df += 1
    if pa + pb > 0:
        stat += (pa - pb) ** 2 / (pa + pb)
        df += 1
    z, k = 3.0902, max(df, 1)
    critical = k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3  # Wilson-Hilferty
    return stat, critical


SAMPLING = {
    "t1": ["--temp", "1"],
    "t0.8_topk40_topp0.9": ["--temp", "0.8", "--top-k", "40", "--top-p", "0.9"],
}


@pytest.mark.parametrize("sampling", SAMPLING)
@pytest.mark.parametrize("proposer", ["draft:other", "draft:quant", "ngram:1-2", "layerskip:1"])
def test_sampled_tokens_follow_the_model(models, proposer, sampling):
    spec = proposer.replace("other", str(models["other"])).replace("quant", str(models["quant"]))
    plain, _ = sample(models["target"], N, 4, *SAMPLING[sampling], seed0=1)
    spec_rows, stats = sample(models["target"], N, 4, *SAMPLING[sampling], "--spec", spec, "--k", "3", seed0=10**6)
    assert stats["drafted"] > N / 4, stats
    assert 0 < stats["accepted"] < stats["drafted"], stats
    # Generated token 0 comes from the prompt's pass; tokens 1..3 from verifying passes.
    for pos in (1, 2, 3):
        stat, critical = chi2_two_sample([r[pos] for r in plain], [r[pos] for r in spec_rows])
        assert stat < critical, f"{proposer} {sampling}: position {pos}: chi2 {stat:.1f} >= {critical:.1f}"
    # The pair (token 1, token 2) jointly, over its most frequent values.
    stat, critical = chi2_two_sample([tuple(r[1:3]) for r in plain], [tuple(r[1:3]) for r in spec_rows])
    assert stat < critical, f"{proposer} {sampling}: pairs: chi2 {stat:.1f} >= {critical:.1f}"


def test_the_statistic_notices_a_small_change(models):
    """Positive controls: what a verifier that let the draft's distribution leak through would
    produce. The target against its own 4-bit quantisation (the good draft), and against itself at
    temperature 0.8, must both be told apart at this sample size."""
    a, _ = sample(models["target"], N, 2, "--temp", "1", seed0=1)
    for other, args in [("quant", ["--temp", "1"]), ("target", ["--temp", "0.8"])]:
        b, _ = sample(models[other], N, 2, *args, seed0=10**6)
        stat, critical = chi2_two_sample([r[1] for r in a], [r[1] for r in b])
        print(other, args, stat, critical)
        assert stat > critical, (other, args)


@pytest.mark.parametrize("proposer", ["draft:other", "ngram:1-2", "layerskip:2"])
def test_greedy_tokens_identical(models, proposer):
    spec = proposer.replace("other", str(models["other"]))
    for prompt in [PROMPT, "1,2,3", "7", "100,200,300,100,200,300,100"]:
        plain, _ = sample(models["target"], 1, 40, "--temp", "0", prompt=prompt)
        fast, stats = sample(models["target"], 1, 40, "--temp", "0", "--spec", spec, "--k", "4", prompt=prompt)
        assert fast == plain, f"{proposer}, prompt {prompt}"


COPY_PROMPT = ("Rewrite the following paragraph in British English, keeping everything else the same:\n\n"
               "The color of the sky changes throughout the day. In the morning, the sky is often a pale gray, and "
               "as the sun rises it turns a bright blue. Many travelers organize their trips around the weather.")


def run_json(default_model, *extra):
    r = run([binary("tern"), "run", "-m", default_model, "--chat", "-p", COPY_PROMPT, "-n", "48", "--temp", "0", "-t", "2",
             "--output-format", "json", *extra])
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


@pytest.mark.parametrize("spec", ["ngram", "layerskip:10"])
def test_cli_same_greedy_tokens_and_reports_acceptance(default_model, spec):
    plain = run_json(default_model)
    fast = run_json(default_model, "--spec", spec, "--spec-k", "6")
    assert fast["generated_ids"] == plain["generated_ids"]
    s = fast["speculative"]
    assert s["method"] == spec and s["draft_tokens"] >= s["accepted_tokens"] >= 0
    if spec == "ngram":  # the answer copies the prompt; early layers of a model not trained to exit early rarely agree
        assert s["accepted_tokens"] > 0
    # token_cost is measured (timed passes at load): under a loaded host a 7-token pass can time no
    # slower than a 1-token one and the cost comes out 0, so only its presence and sign are checked.
    assert s["verify_passes"] > 0 and s["token_cost"] >= 0


def test_cli_names_a_bad_spec(default_model):
    for bad, needle in [("medusa", "unknown --spec"), ("layerskip:99", "layers"), ("draft:/nonexistent.gguf", "nonexistent")]:
        r = run([binary("tern"), "run", "-m", default_model, "-p", "x", "-n", "2", "--spec", bad])
        assert r.returncode != 0
        assert needle in r.stderr, r.stderr


def test_server_speculates_with_the_same_output(default_model):
    plain = run_json(default_model)
    s = TernServer(default_model, "--spec", "ngram", "-c", "1024")
    try:
        status, r = s.post("/v1/chat/completions", {"messages": [{"role": "user", "content": COPY_PROMPT}],
                                                     "max_tokens": 48, "temperature": 0})
        assert status == 200, r
        assert r["choices"][0]["message"]["content"] == plain["text"]
        m = s.metrics()
        assert m["tern_spec_draft_tokens_total"] > 0
        assert 0 < m["tern_spec_acceptance_rate"] <= 1
        assert m["tern_spec_tokens_per_pass"] >= 1
    finally:
        assert s.terminate() == 0
