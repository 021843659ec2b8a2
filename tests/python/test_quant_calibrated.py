"""GPTQ, AWQ, SmoothQuant, magnitude, Wanda and SparseGPT against numpy references of the same
algorithms on small random matrices.

GPTQ's reference is the paper's Algorithm 1 as written (lazy batches of 128 columns, H^-1 through
its upper Cholesky factor), not tern's row-at-a-time sweep: the two must agree in update order and
result. Both round onto Q4_0's grids chosen by ggml's plain Q4_0 rounding when the sweep reaches each
32-column block (or, with act-order, from the original weights). AWQ's reference searches the same
alpha grid with the same output-error measure.
"""
import numpy as np
import pytest

from conftest import binary, run

QK = 32


def q4_0_grid(block):
    """ggml's quantize_row_q4_0_ref scale for one block, as f16: value = d * (level - 8)."""
    block = block.astype(np.float32)
    i = int(np.argmax(np.abs(block)))  # the first of equal magnitudes, as ggml's strict '<'
    d = np.float32(block[i] / np.float32(-8))
    return np.float32(np.float16(d))


def q4_0_rtn(row):
    """Plain Q4_0 round-to-nearest of a row, dequantised (ggml's truncating +8.5 rounding)."""
    out = np.empty_like(row, dtype=np.float32)
    for b in range(0, row.size, QK):
        x = row[b:b + QK].astype(np.float32)
        i = int(np.argmax(np.abs(x)))
        d = np.float32(x[i] / np.float32(-8))
        inv = np.float32(1) / d if d != 0 else np.float32(0)
        q = np.minimum(15, (x * inv + np.float32(8.5)).astype(np.int32))
        out[b:b + QK] = (q - 8).astype(np.float32) * np.float32(np.float16(d))
    return out


def nearest_on_grid(x, d):
    if d == 0:
        return np.float32(0) * x
    level = np.clip(np.rint((np.float32(x) + np.float32(8) * d) / d), 0, 15)
    return d * level.astype(np.float32) - np.float32(8) * d


def without_dead_inputs(w, h):
    """w in float64 with the columns of never-active inputs zeroed, and h with those given a unit
    diagonal, as GPTQ's and SparseGPT's code prepare them."""
    w = w.astype(np.float64).copy()
    h = h.copy()
    dead = np.diag(h) <= 0
    h[dead, dead] = 1
    w[:, dead] = 0
    return w, h


def damped_inverse_factor(h, damp):
    """U, upper, with (h + damp * mean(diag h) * I)^-1 = U^T U."""
    h = h + damp * np.mean(np.diag(h)) * np.eye(h.shape[0])
    return np.linalg.cholesky(np.linalg.inv(h)).T


def gptq_reference(w, h, act_order, damp=0.01, blocksize=128):
    rows, n = w.shape
    w, h = without_dead_inputs(w, h)
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(n)
    grids = np.zeros((rows, n // QK), dtype=np.float32)
    if act_order:
        for r in range(rows):
            for g in range(n // QK):
                grids[r, g] = q4_0_grid(w[r, g * QK:(g + 1) * QK].astype(np.float32))
    w = w[:, perm]
    u = damped_inverse_factor(h[perm][:, perm], damp)
    q = np.zeros_like(w)
    for i1 in range(0, n, blocksize):
        i2 = min(i1 + blocksize, n)
        err = np.zeros((rows, i2 - i1))
        for i in range(i1, i2):
            c = perm[i]
            if not act_order and c % QK == 0:
                for r in range(rows):
                    grids[r, c // QK] = q4_0_grid(w[r, i:i + QK].astype(np.float32))
            col = w[:, i]
            qc = np.array([nearest_on_grid(np.float32(col[r]), grids[r, c // QK]) for r in range(rows)], dtype=np.float64)
            q[:, i] = qc
            e = (col - qc) / u[i, i]
            w[:, i + 1:i2] -= np.outer(e, u[i, i + 1:i2])
            err[:, i - i1] = e
        w[:, i2:] -= err @ u[i1:i2, i2:]
    out = np.empty_like(q)
    out[:, perm] = q
    return out.astype(np.float32)


def output_error(w, q, h):
    d = (q - w).astype(np.float64)
    return float(np.einsum("ri,ij,rj->", d, h, d)) / w.shape[0]


def make_problem(rows, n, tokens, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, n)).astype(np.float32) * 0.05
    # Correlated inputs with a few loud channels, as LLM activations have.
    mix = rng.standard_normal((n, n)).astype(np.float32) / np.sqrt(n)
    x = (rng.standard_normal((tokens, n)).astype(np.float32) @ mix) * (1 + 8 * (rng.random(n) < 0.05)).astype(np.float32)
    x[:, 3] = 0  # a dead input channel
    return w, x.astype(np.float32)


def run_tool(tmp_path, mode, args, w, x, out_count):
    wf, xf, of = tmp_path / "w.f32", tmp_path / "x.f32", tmp_path / "out.f32"
    w.tofile(wf)
    x.tofile(xf)
    r = run([binary("tool_quant_calibrated"), mode, *map(str, args), wf, xf, of])
    assert r.returncode == 0, r.stderr
    out = np.fromfile(of, dtype=np.float32)
    assert out.size == out_count
    return out


@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("rows,n", [(24, 96), (7, 160)])
def test_gptq_matches_reference(tmp_path, act_order, rows, n):
    tokens = 400
    w, x = make_problem(rows, n, tokens, seed=rows * n + act_order)
    got = run_tool(tmp_path, "gptq", ["q4_0", rows, n, tokens, int(act_order)], w, x, rows * n).reshape(rows, n)
    h = x.astype(np.float64).T @ x.astype(np.float64) / tokens
    want = gptq_reference(w, h, act_order)
    same = np.mean(got == want)
    # Float summation order differs (tern sweeps one row at a time), so a level at an exact tie may
    # flip; everything else must be the same value.
    assert same > 0.99, f"only {same:.4f} of the weights agree with the reference"
    e_got, e_want, e_rtn = (output_error(w, q, h) for q in (got, want, np.stack([q4_0_rtn(r) for r in w])))
    assert abs(e_got - e_want) <= 0.02 * e_want
    assert e_got < 0.7 * e_rtn, (e_got, e_rtn)  # the point of GPTQ
    assert np.all(got[:, 3] == 0)  # the dead channel's weights are zero


def awq_reference(w, x):
    tokens, n = x.shape
    mean_abs = np.abs(x.astype(np.float64)).sum(0) / tokens
    h = (x.astype(np.float64).T @ x.astype(np.float64) / tokens).astype(np.float32)
    best = None
    for g in range(20):
        alpha = g / 20
        s = np.maximum(1e-4, mean_abs ** alpha).astype(np.float32)
        s = s / np.float32(np.sqrt(np.float64(s.max()) * np.float64(s.min())))
        d = np.stack([q4_0_rtn(r * s) / s - r for r in w]).astype(np.float64)
        err = float(np.einsum("ri,ij,rj->", d, h.astype(np.float64), d)) / w.shape[0]
        if best is None or err < best[0]:
            best = (err, alpha, s)
    return best


def test_awq_scale_search_matches_reference(tmp_path):
    rows, n, tokens = 40, 128, 300
    w, x = make_problem(rows, n, tokens, seed=5)
    got = run_tool(tmp_path, "awq", ["q4_0", rows, n, tokens], w, x, 1 + n)
    err, alpha, scales = awq_reference(w, x)
    assert got[0] == pytest.approx(alpha)
    np.testing.assert_allclose(got[1:], scales, rtol=1e-5)
    assert alpha > 0, "with loud channels, some scaling must beat plain rounding"


def sparsegpt_reference(w, h, sparsity=0.5, keep=0, group=0, damp=0.01, blocksize=128):
    """The paper's code (lazy batches of 128 columns, the mask of a block over all its rows from
    w^2 / U_jj^2, n:m masks per group from the weights as updated so far). Ties in the mask go to
    the lower flat index, as tern's do; `keep` of every `group` stay."""
    rows, n = w.shape
    w, h = without_dead_inputs(w, h)
    u = damped_inverse_factor(h, damp)
    for i1 in range(0, n, blocksize):
        i2 = min(i1 + blocksize, n)
        w1 = w[:, i1:i2].copy()
        q1 = np.zeros_like(w1)
        err1 = np.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        mask = np.zeros(w1.shape, dtype=bool)
        if not group:
            tmp = (w1 ** 2 / np.diag(u1).reshape(1, -1) ** 2).astype(np.float32).ravel()
            k = int(np.floor(tmp.size * sparsity))
            mask.ravel()[np.argsort(tmp, kind="stable")[:k]] = True
        for i in range(i2 - i1):
            if group and i % group == 0:
                tmp = (w1[:, i:i + group] ** 2 / np.diag(u1)[i:i + group].reshape(1, -1) ** 2).astype(np.float32)
                idx = np.argsort(tmp, axis=1, kind="stable")[:, :group - keep]
                for r in range(rows):
                    mask[r, i + idx[r]] = True
            col = w1[:, i]
            q = np.where(mask[:, i], 0.0, col)
            q1[:, i] = q
            e = (col - q) / u1[i, i]
            w1[:, i:] -= np.outer(e, u1[i, i:])
            err1[:, i] = e
        w[:, i1:i2] = q1
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
    return w.astype(np.float32)


@pytest.mark.parametrize("pattern", ["0.5", "2:4"])
@pytest.mark.parametrize("rows,n", [(24, 256), (9, 160)])
def test_sparsegpt_matches_reference(tmp_path, pattern, rows, n):
    tokens = 400
    w, x = make_problem(rows, n, tokens, seed=rows + n + len(pattern))
    got = run_tool(tmp_path, "sparsegpt", ["f32", rows, n, tokens, pattern], w, x, rows * n).reshape(rows, n)
    h = x.astype(np.float64).T @ x.astype(np.float64) / tokens
    keep, group = (2, 4) if pattern == "2:4" else (0, 0)
    want = sparsegpt_reference(w, h, 0.5, keep, group)
    # The same weights removed (float order differs: lazy batches against row sweeps, so only a
    # score at an exact tie could differ), the same values kept.
    assert np.mean((got == 0) == (want == 0)) > 0.995
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    if group:
        assert np.all((got.reshape(rows, -1, 4) == 0).sum(-1) >= 2)
    # The point of SparseGPT: less output error than removing the same share by magnitude.
    mag = w.copy()
    for r in range(rows):
        if group:
            for g in range(0, n, 4):
                mag[r, g + np.argsort(np.abs(mag[r, g:g + 4]), kind="stable")[:2]] = 0
        else:
            mag[r, np.argsort(np.abs(mag[r]), kind="stable")[:n // 2]] = 0
    assert output_error(w, got, h) < 0.7 * output_error(w, mag, h)


@pytest.mark.parametrize("alpha", [0.5, 0.8])
def test_smoothquant_scales_match_reference(tmp_path, alpha):
    rows, n, tokens = 40, 96, 300
    w, x = make_problem(rows, n, tokens, seed=11)
    got = run_tool(tmp_path, "smoothquant", ["q8_0", rows, n, tokens, alpha], w, x, n)
    a = np.abs(x.astype(np.float64)).max(0)
    m = np.abs(w.astype(np.float64)).max(0)
    want = np.ones(n)
    live = (a > 0) & (m > 0)
    want[live] = np.maximum(1e-5, a[live] ** alpha / m[live] ** (1 - alpha))
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-6)
    assert got[3] == 1  # the dead channel keeps its scale
    # The point: the smoothed input's loud channels come down relative to the rest.
    xs = np.abs(x / got).max(0)
    assert xs[live].max() / np.median(xs[live]) < a[live].max() / np.median(a[live])


def prune_by_score_reference(w, score, sparsity=0.5, keep=0, group=0):
    """Per row, the lowest scores zeroed (ties: lower column first): a share of the row, or
    group - keep of every group."""
    w = w.copy()
    rows, n = w.shape
    for r in range(rows):
        if group:
            for g in range(0, n, group):
                w[r, g + np.argsort(score[r, g:g + group], kind="stable")[:group - keep]] = 0
        else:
            w[r, np.argsort(score[r], kind="stable")[:int(np.floor(n * sparsity))]] = 0
    return w


@pytest.mark.parametrize("method", ["magnitude", "wanda"])
@pytest.mark.parametrize("pattern", ["0.5", "0.3", "2:4"])
def test_magnitude_and_wanda_match_reference(tmp_path, method, pattern):
    rows, n, tokens = 12, 128, 200
    w, x = make_problem(rows, n, tokens, seed=17)
    got = run_tool(tmp_path, method, ["f32", rows, n, tokens, pattern], w, x, rows * n).reshape(rows, n)
    score = np.abs(w)
    if method == "wanda":  # |w| times the input's L2 norm over the calibration tokens
        score = (score * np.sqrt((x.astype(np.float64) ** 2).sum(0)).astype(np.float32)).astype(np.float32)
    keep, group = (2, 4) if pattern == "2:4" else (0, 0)
    sparsity = 0.5 if group else float(pattern)
    np.testing.assert_array_equal(got, prune_by_score_reference(w, score, sparsity, keep, group))
