"""tern quantize: the output loads (tern info, gguf-py, tern run), matrices are in the new type with
llama.cpp's block bytes, everything else is copied, and bad requests get a clean error."""
import json

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

import tiny_shapes
from conftest import binary, run
from test_cli import assert_clean_error

# Untied, so output.weight is converted too; every n_in a multiple of 32.
SHAPE = tiny_shapes.Shape("quantize_f32_untied", hidden=128, heads=4, kv_heads=2, head_dim=32, ffn=256, tied=False)
FTYPE = {"q8_0": 7, "q4_0": 2, "f16": 1}
PROMPT = "the quick brown fox"


def tern(*args, timeout=60):
    return run([binary("tern"), *args], timeout=timeout)


def greedy_ids(model, n=8):
    r = tern("run", "-m", model, "-p", PROMPT, "-n", n, "--temp", 0, "--ignore-eos", "-t", 1, "--output-format", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])["generated_ids"]


@pytest.fixture(scope="module")
def f32_model(tmp_path_factory):
    return tiny_shapes.make(SHAPE, tmp_path_factory.mktemp("quantize") / "tiny.F32.gguf")


@pytest.fixture(scope="module")
def quantized(f32_model):
    """type -> (path, stderr) for the types the tests look at, each made once."""
    out = {}
    for t in ("q8_0", "q4_0"):
        path = f32_model.with_name(f"tiny.{t.upper()}.gguf")
        r = tern("quantize", f32_model, path, "--type", t, "-t", 2)
        assert r.returncode == 0, r.stderr
        out[t] = (path, r.stderr)
    return out


@pytest.mark.parametrize("t", ["q8_0", "q4_0"])
def test_matrices_converted_rest_copied(t, f32_model, quantized):
    path, stderr = quantized[t]
    src, dst = gguf.GGUFReader(str(f32_model)), gguf.GGUFReader(str(path))
    qtype = Q[t.upper()]
    # Metadata: every key copied (values equal), general.file_type now llama.cpp's ftype for t.
    assert list(dst.fields)[: len(src.fields)] == list(src.fields)
    for key, field in src.fields.items():
        if key.startswith("GGUF.") or key == "general.file_type":
            continue
        assert dst.fields[key].parts[-1].tobytes() == field.parts[-1].tobytes(), key
    assert int(dst.fields["general.file_type"].parts[-1][0]) == FTYPE[t]
    assert int(dst.fields["general.quantization_version"].parts[-1][0]) == 2
    # Tensors: same names, order and shapes; matrices in t with exactly gguf-py's (= ggml's) blocks.
    assert [x.name for x in dst.tensors] == [x.name for x in src.tensors]
    for a, b in zip(src.tensors, dst.tensors):
        assert list(a.shape) == list(b.shape), a.name
        if len(a.shape) >= 2:
            assert b.tensor_type == qtype, b.name
            want = gguf.quants.quantize(np.asarray(a.data, dtype=np.float32), qtype)
            assert np.array_equal(np.asarray(b.data).reshape(-1), want.reshape(-1)), b.name
        else:
            assert b.tensor_type == a.tensor_type == Q.F32, b.name
            assert np.array_equal(a.data, b.data), b.name
    # Progress names each tensor; the summary names the type.
    assert "output.weight" in stderr and "blk.1.ffn_down.weight" in stderr
    assert f"({t}, rtn)" in stderr


@pytest.mark.parametrize("t", ["q8_0", "q4_0"])
def test_info_reads_the_new_type(t, quantized):
    r = tern("info", quantized[t][0])
    assert r.returncode == 0, r.stderr
    by_type = r.stdout.split("by type:")[1]
    assert t in by_type and "f32" in by_type


def test_q8_0_greedy_tokens_match_f32(f32_model, quantized):
    ref = greedy_ids(f32_model)
    assert len(ref) == 8
    assert greedy_ids(quantized["q8_0"][0]) == ref
    assert len(greedy_ids(quantized["q4_0"][0])) == 8  # coarser: it runs, tokens may differ


def test_quantized_input_and_thread_count_independence(quantized, tmp_path):
    """A Q8_0 input dequantises first; rows are independent, so thread count changes nothing."""
    one, four = tmp_path / "one.gguf", tmp_path / "four.gguf"
    for path, threads in ((one, 1), (four, 4)):
        r = tern("quantize", quantized["q8_0"][0], path, "--type", "f16", "-t", threads, "-q")
        assert r.returncode == 0, r.stderr
    assert one.read_bytes() == four.read_bytes()
    f = gguf.GGUFReader(str(one))
    assert int(f.fields["general.file_type"].parts[-1][0]) == FTYPE["f16"]
    assert {x.tensor_type for x in f.tensors if len(x.shape) >= 2} == {Q.F16}


def test_bad_requests(f32_model, tmp_path):
    out = tmp_path / "out.gguf"
    assert_clean_error(tern("quantize", f32_model, f32_model, "--type", "q8_0"), "overwrite", str(f32_model))
    link = tmp_path / "link.gguf"
    link.symlink_to(f32_model)
    assert_clean_error(tern("quantize", f32_model, link, "--type", "q8_0"), "overwrite")
    assert_clean_error(tern("quantize", f32_model, out, "--type", "iq4_nl"), "iq4_nl", "q4_k")
    assert_clean_error(tern("quantize", f32_model, out, "--type", "q8_1"), "q8_1")
    assert_clean_error(tern("quantize", f32_model, out, "--type", "q4_0", "--method", "gptq"), "gptq", "--calib")
    assert_clean_error(tern("quantize", f32_model, out, "--type", "q8_0", "--method", "smoothquant"), "smoothquant",
                       "--calib")
    assert_clean_error(tern("quantize", f32_model, out, "--type", "q4_0", "--method", "smoothquant", "--calib",
                            f32_model), "smoothquant", "q8_0")
    assert_clean_error(tern("quantize", f32_model, out, "--type", "q4_0", "--method", "wanda"), "wanda", "--calib")
    assert_clean_error(tern("quantize", f32_model, out, "--type", "q8_0", "--method", "magnitude", "--pattern", "4:2"),
                       "--pattern 4:2")
    assert_clean_error(tern("quantize", f32_model, out, "--type", "q8_0", "--pattern", "2:4"), "--pattern", "pruning")
    assert_clean_error(tern("quantize", f32_model, out, "--type", "q8_0", "--method", "magnitude", "--calib",
                            f32_model), "magnitude", "no calibration")
    assert_clean_error(tern("quantize", f32_model, out, "--type", "q4_0", "--group-size", "64"), "--group-size 64", "32")
    assert_clean_error(tern("quantize", f32_model, out, "--type", "f16", "--method", "gptq", "--calib", f32_model),
                       "f16")
    assert_clean_error(tern("quantize", tmp_path / "nope.gguf", out, "--type", "q4_0"), "nope.gguf")
    assert not out.exists() and not (tmp_path / "out.gguf.tmp").exists()


@pytest.mark.parametrize("pattern", [None, "2:4"])
def test_magnitude_pruning_zeroes_the_blocks_matrices(f32_model, tmp_path, pattern):
    """Half of every block matrix row zeroed (or 2 of every 4), the embeddings and the head kept
    dense, and the pruned file runs."""
    out = tmp_path / "pruned.gguf"
    extra = ["--pattern", pattern] if pattern else ["--sparsity", "0.5"]
    r = tern("quantize", f32_model, out, "--type", "f32", "--method", "magnitude", *extra, "-t", 2)
    assert r.returncode == 0, r.stderr
    assert "50.00% of the blocks' matrix weights zeroed" in r.stderr
    src, dst = gguf.GGUFReader(str(f32_model)), gguf.GGUFReader(str(out))
    assert dst.fields["tern.quantize.sparsity"].parts[-1].tobytes().decode() == (pattern or "0.5")
    before = {t.name: np.array(t.data) for t in src.tensors}
    for t in dst.tensors:
        w = np.array(t.data)
        if t.name.startswith("blk.") and len(t.shape) == 2:
            rows = w.reshape(-1, int(t.shape[0]))
            if pattern:
                assert np.all((rows.reshape(rows.shape[0], -1, 4) == 0).sum(-1) == 2), t.name
            else:
                assert np.all((rows == 0).sum(1) == rows.shape[1] // 2), t.name
            kept = rows != 0
            assert np.array_equal(rows[kept], before[t.name].reshape(rows.shape)[kept]), t.name
        else:
            assert np.array_equal(w, before[t.name]), t.name
    assert len(greedy_ids(out)) == 8


def test_unconvertible_tensor_is_named(tmp_path):
    """An input type tern cannot dequantise fails before writing, naming the file and the tensor."""
    src = tmp_path / "iq.gguf"
    w = gguf.GGUFWriter(str(src), "llama")
    block, size = gguf.GGML_QUANT_SIZES[Q.IQ4_NL]
    w.add_tensor("blk.0.attn_q.weight", np.zeros((4, 64 // block * size), dtype=np.uint8), raw_dtype=Q.IQ4_NL)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = tmp_path / "out.gguf"
    r = tern("quantize", src, out, "--type", "q8_0")
    assert r.returncode > 0
    assert "iq.gguf" in r.stderr and "blk.0.attn_q.weight" in r.stderr, r.stderr
    assert not out.exists() and not (tmp_path / "out.gguf.tmp").exists()


# Eight layers, every row length a multiple of 256 (K-quant super-blocks), untied head.
MIX_SHAPE = tiny_shapes.Shape("quantize_mix_untied", hidden=256, heads=4, kv_heads=2, head_dim=64, ffn=512, layers=8,
                              tied=False)


@pytest.mark.parametrize("mix,ftype,expect", [
    # llama.cpp's rule with 8 layers: attn_v and ffn_down get Q6_K in layers 0 and 7 (first and last
    # eighth) and 3 and 6 (every third between).
    ("q4_k_m", 15, lambda name, layer: Q.Q6_K if name in ("attn_v", "ffn_down") and layer in (0, 3, 6, 7) else Q.Q4_K),
    ("q5_k_m", 17, lambda name, layer: Q.Q6_K if name in ("attn_v", "ffn_down") and layer in (0, 3, 6, 7) else Q.Q5_K),
    ("q3_k_m", 12, lambda name, layer: (Q.Q5_K if layer < 2 else Q.Q4_K) if name == "attn_v"
        else Q.Q4_K if name in ("ffn_down", "attn_output") else Q.Q3_K),
])
def test_k_quant_mixes_follow_llamacpp(tmp_path, mix, ftype, expect):
    src = tiny_shapes.make(MIX_SHAPE, tmp_path / "mix.F32.gguf")
    out = tmp_path / f"mix.{mix.upper()}.gguf"
    r = tern("quantize", src, out, "--type", mix, "-t", 2)
    assert r.returncode == 0, r.stderr
    assert f"({mix}, rtn)" in r.stderr
    f = gguf.GGUFReader(str(out))
    assert int(f.fields["general.file_type"].parts[-1][0]) == ftype
    for t in f.tensors:
        if len(t.shape) < 2:
            assert t.tensor_type == Q.F32, t.name
        elif t.name == "output.weight":
            assert t.tensor_type == Q.Q6_K, t.name
        elif t.name == "token_embd.weight":
            assert t.tensor_type == expect("token_embd", -1), t.name
        else:
            _, layer, name, _ = t.name.split(".")
            assert t.tensor_type == expect(name, int(layer)), t.name
    assert len(greedy_ids(out)) == 8
    assert_clean_error(tern("quantize", src, tmp_path / "gptq.gguf", "--type", mix, "--method", "gptq", "--calib", src),
                       mix, "rtn")


def test_k_quant_mix_falls_back_as_llamacpp(f32_model, tmp_path):
    """Rows that are not whole super-blocks (hidden 128) take llama.cpp's fallback types in a mix:
    Q4_K -> Q5_0, Q6_K -> Q8_0; the 256-wide ffn_down rows keep the K-quants (2 layers: layer 1 is
    in the last eighth, so it gets the extra bits)."""
    out = tmp_path / "fallback.Q4_K_M.gguf"
    r = tern("quantize", f32_model, out, "--type", "q4_k_m", "-t", 2)
    assert r.returncode == 0, r.stderr
    for t in gguf.GGUFReader(str(out)).tensors:
        if len(t.shape) < 2:
            continue
        more = t.name == "output.weight" or (t.name.startswith("blk.1.") and ("attn_v" in t.name or "ffn_down" in t.name))
        if int(t.shape[0]) % 256 == 0:
            assert t.tensor_type == (Q.Q6_K if more else Q.Q4_K), t.name
        else:
            assert t.tensor_type == (Q.Q8_0 if more else Q.Q5_0), t.name
    assert len(greedy_ids(out)) == 8
