"""`tern bench`: the numbers a benchmark script reads are there and consistent (never timings)."""
import json

from conftest import binary, run


def test_bench_json_has_medians_memory_and_roofline(default_model, tmp_path):
    machine = tmp_path / "machine.json"
    machine.write_text(json.dumps({"read_gbs": {"1": 10.0}, "fma_gflops": {"1": 50.0}, "int8_gops": {"1": 200.0}}))
    r = run([binary("tern"), "bench", "-m", str(default_model), "-p", "16", "-n", "4", "-r", "3", "-t", "1",
             "-o", "json", "--machine", str(machine)], timeout=300)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("prefill_tok_s", "decode_tok_s"):
        s = j[key]
        assert len(s["runs"]) == 3
        assert s["min"] <= s["median"] <= s["max"] and s["min"] > 0
    assert j["n_prompt"] == 16 and j["n_gen"] == 4 and j["threads"] == 1
    # Peak RSS covers at least the pages of weights a decode step touches.
    assert j["peak_rss_bytes"] > j["decode_bytes_per_token"] * 0.5
    assert abs(j["decode_gbs"] - j["decode_bytes_per_token"] * j["decode_tok_s"]["median"] / 1e9) < 1e-6 * j["decode_gbs"]
    assert abs(j["decode_bandwidth_fraction"] - j["decode_gbs"] / 10.0) < 1e-9
    assert j["machine"]["int8_gops"] == 200.0


def test_bench_rejects_nothing_to_do(default_model):
    r = run([binary("tern"), "bench", "-m", str(default_model), "-p", "0", "-n", "0"], timeout=60)
    assert r.returncode != 0 and "nothing to measure" in r.stderr


def test_bench_depth_counts_the_context_in_the_decode_bytes(default_model):
    """-d N (llama-bench's depth): the timed passes start after N context tokens, whose K/V every
    decode step also reads; the label says so."""
    def bench(*extra):
        r = run([binary("tern"), "bench", "-m", str(default_model), "-p", "8", "-n", "4", "-r", "1", "-t", "1",
                 *extra], timeout=300)
        assert r.returncode == 0, r.stderr
        return r.stdout
    plain = json.loads(bench("-o", "json").strip().splitlines()[-1])
    deep = json.loads(bench("-o", "json", "-d", "40").strip().splitlines()[-1])
    assert plain["n_depth"] == 0 and deep["n_depth"] == 40
    kv_per_token = (deep["decode_bytes_per_token"] - plain["decode_bytes_per_token"]) / 40
    assert kv_per_token > 0
    assert "tg4 @ d40" in bench("-d", "40") and "pp8 @ d40" in bench("-d", "40")

