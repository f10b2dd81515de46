"""The fused Triton kernel (``backend="fused"``) against a slow float64 reference, with gradients.

Without a GPU the kernel runs under Triton's interpreter (``TRITON_INTERPRET=1``, set by
``conftest.py`` before the kernel module is first imported), so sizes stay small. Tolerances
(relative to the largest magnitude): float32 1e-4; bfloat16 inputs 2e-2 (the factors are rounded
to bfloat16, accumulation is float32); TF32 (GPU only) 1e-2.
"""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("triton", reason="the fused kernel needs the optional 'kernel' extra (triton)")

from contrastkit.core.engine import contrastive_loss, row_statistics  # noqa: E402
from contrastkit.core.pairs import SameLabel  # noqa: E402
from contrastkit.core.weights import LabelTable, VectorWeight  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("no CUDA device and TRITON_INTERPRET is not 1", allow_module_level=True)

N, M, D, K = 150, 130, 24, 5  # not multiples of the 64-row tiles; D not a power of two


def reference_loss(a, b, *, self_contrast, positives, temperature, similarity="cosine",
                   form="infonce", diagonal="exclude", table=None, table_labels=None,
                   normalize_weights=False):
    """Literal float64 loss: masks and sums written out entry by entry over a dense matrix."""
    a = a.double()
    b = a if self_contrast else b.double()
    if similarity == "cosine":
        a_n, b_n = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    else:
        a_n, b_n = a, b
    s = a_n @ b_n.T / temperature
    n, m = s.shape
    keep = torch.ones(n, m, dtype=torch.bool)
    eye = torch.eye(n, m, dtype=torch.bool)
    if self_contrast and diagonal == "exclude":
        keep &= ~eye
    if self_contrast and not isinstance(diagonal, str):
        s = torch.where(eye, torch.full_like(s, float(diagonal)), s)
    if isinstance(positives, int):
        pos = torch.zeros(n, m, dtype=torch.bool)
        for i in range(n):
            pos[i, (i + positives) % m] = True
    elif positives is None:
        pos = torch.zeros(n, m, dtype=torch.bool)
    else:
        la, lb = positives
        pos = (la[:, None] == lb[None, :]) & (la[:, None] >= 0)
    pos &= keep
    den = keep & ~pos if form == "decoupled" else keep.clone()
    w = torch.ones(n, m, dtype=torch.float64)
    if table is not None:
        w = table.double()[table_labels[:, None], table_labels[None, :]]
        den &= w > 0
    losses = []
    for i in range(n):
        terms = [w[i, j] * torch.exp(s[i, j]) for j in range(m) if den[i, j]]
        if not terms:
            continue
        lse = torch.log(torch.stack(terms).sum())
        if normalize_weights:
            lse = lse - torch.log(torch.stack([w[i, j] for j in range(m) if den[i, j]]).sum())
        js = [j for j in range(m) if pos[i, j]]
        if form == "log_partition":
            losses.append(lse)
        elif not js:
            continue
        elif form == "positive_mass":
            losses.append(lse - torch.log(torch.stack([torch.exp(s[i, j]) for j in js]).sum()))
        else:
            losses.append(lse - torch.stack([s[i, j] for j in js]).mean())
    return torch.stack(losses).mean()


def _labels(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, K, (N,), generator=g), torch.randint(-1, K, (M,), generator=g)


CASES = {
    "cross_aligned_offset": dict(self_contrast=False, positives=3, temperature=0.5),
    "grace_stacked_views": dict(self_contrast=True, positives=N // 2, temperature=0.5),
    "decoupled": dict(self_contrast=True, positives=N // 2, temperature=0.5, form="decoupled"),
    "labels_cross": dict(self_contrast=False, positives="labels", temperature=0.3),
    "positive_mass": dict(self_contrast=True, positives="labels_self", temperature=0.5,
                          form="positive_mass"),
    "fixed_diagonal": dict(self_contrast=True, positives="labels_self", temperature=0.5,
                           diagonal=2.0),
    "diagonal_negative_dot": dict(self_contrast=True, positives="labels_self", temperature=4.0,
                                  diagonal="negative", similarity="dot"),
    "table_weights": dict(self_contrast=True, positives=N // 2, temperature=0.5, table=True),
    "table_normalised": dict(self_contrast=True, positives=N // 2, temperature=0.5, table=True,
                             normalize_weights=True),
    "log_partition": dict(self_contrast=False, positives=None, temperature=0.5,
                          form="log_partition"),
}


def _call(case, a, b, backend, table):
    """Run the engine on ``case`` with ``backend``; returns (loss, engine kwargs)."""
    la, lb = _labels()
    c = dict(case)
    self_contrast = c.pop("self_contrast")
    pos = c.pop("positives")
    kw = dict(temperature=c.pop("temperature"), similarity=c.pop("similarity", "cosine"),
              form=c.pop("form", "infonce"), diagonal=c.pop("diagonal", "exclude"),
              normalize_weights=c.pop("normalize_weights", False))
    if pos == "labels":
        kw["positives"], ref_pos = SameLabel(la, lb), (la, lb)
    elif pos == "labels_self":
        kw["positives"], ref_pos = la, (la, la)
    else:
        kw["positives"], ref_pos = pos, pos
    if c.pop("table", False):
        kw["negative_weight"] = LabelTable(table, la)
    loss = contrastive_loss(a, None if self_contrast else b, backend=backend, **kw)
    ref_kw = dict(kw, positives=ref_pos, self_contrast=self_contrast,
                  table=table if "negative_weight" in kw else None, table_labels=la)
    ref_kw.pop("negative_weight", None)
    return loss, ref_kw


def _inputs(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(N, D, generator=g).to(device=DEVICE, dtype=dtype).requires_grad_()
    b = torch.randn(M, D, generator=g).to(device=DEVICE, dtype=dtype).requires_grad_()
    table = torch.rand(K, K, generator=g) + 0.2 * torch.eye(K)
    table[0, 1] = 0.0  # a zero weight: that pair leaves the denominator
    return a, b, table.to(DEVICE)


def _rel(x, y):
    x, y = x.detach(), y.detach()
    return float((x.double() - y.double()).abs().max() / y.double().abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("name", sorted(CASES))
def test_fused_matches_float64_reference_with_gradients(name):
    case = CASES[name]
    a, b, table = _inputs()
    loss, ref_kw = _call(case, a, b, "fused", table)
    ga, gb = torch.autograd.grad(loss, [a, b], allow_unused=True)
    a64 = a.detach().cpu().double().requires_grad_()
    b64 = b.detach().cpu().double().requires_grad_()
    ref_kw["table"] = None if ref_kw["table"] is None else ref_kw["table"].cpu()
    ref = reference_loss(a64, b64, **ref_kw)
    ra, rb = torch.autograd.grad(ref, [a64, b64], allow_unused=True)
    assert _rel(loss.detach().cpu(), ref.detach()) < 1e-4
    assert _rel(ga.cpu(), ra) < 1e-4
    if case["self_contrast"]:
        assert gb is None and rb is None
    else:
        assert _rel(gb.cpu(), rb) < 1e-4


@pytest.mark.parametrize("name", ["grace_stacked_views", "positive_mass", "table_normalised"])
def test_fused_equals_blockwise_statistics(name):
    """Same statistics as the engine's blockwise path on the rows that count."""
    a, b, table = _inputs()
    per_row = {}
    for backend in ("blockwise", "fused"):
        loss, _ = _call(dict(CASES[name]), a, b, backend, table)
        per_row[backend] = torch.autograd.grad(loss, [a])[0]
    assert _rel(per_row["fused"], per_row["blockwise"]) < 1e-4


def test_bfloat16_inputs_within_tolerance():
    a, b, table = _inputs()
    a16 = a.detach().bfloat16().requires_grad_()
    loss, ref_kw = _call(CASES["grace_stacked_views"], a16, None, "fused", table)
    (g,) = torch.autograd.grad(loss, [a16])
    assert g.dtype == torch.bfloat16
    a64 = a.detach().cpu().double().requires_grad_()
    ref = reference_loss(a64, None, **ref_kw)
    (r,) = torch.autograd.grad(ref, [a64])
    assert _rel(loss.detach().cpu(), ref.detach()) < 2e-2
    assert _rel(g.float().cpu(), r) < 2e-2


@pytest.mark.parametrize("self_contrast", [False, True])
def test_learnable_and_per_candidate_temperature_gradients(self_contrast):
    """Learnable or per-candidate temperatures (self-comparisons then take the general
    two-kernel backward instead of the symmetric one)."""
    a, b, _ = _inputs()
    cand, n_cand = (None, N) if self_contrast else (b, M)
    for tau in (torch.tensor(0.4, device=DEVICE, requires_grad=True),
                (0.3 + torch.rand(n_cand, device=DEVICE)).requires_grad_()):
        grads = {}
        for backend in ("blockwise", "fused"):
            loss = contrastive_loss(a, cand, positives=N // 2 if self_contrast else "aligned",
                                    temperature=tau, backend=backend)
            grads[backend] = torch.autograd.grad(loss, [a, tau] if self_contrast else [a, b, tau])
        for gf, gb in zip(grads["fused"], grads["blockwise"]):
            assert _rel(gf, gb) < 1e-4


def test_rows_without_positives_or_denominator_are_left_out():
    """Label -1 rows have no positive; a one-row problem has an empty denominator."""
    a, b, _ = _inputs()
    la = torch.full((N,), -1, dtype=torch.long)
    la[:10] = torch.arange(10) % 3
    out = {bk: contrastive_loss(a, None, positives=la, backend=bk, reduction="none")
           for bk in ("blockwise", "fused")}
    assert torch.isfinite(out["fused"]).all()
    assert _rel(out["fused"], out["blockwise"]) < 1e-4
    assert (out["fused"][10:] == 0).all()
    with pytest.warns(RuntimeWarning, match="no anchor has a non-empty denominator"):
        one = contrastive_loss(a[:1], None, positives=None, form="log_partition",
                               backend="fused")
    assert float(one.detach()) == 0.0


def test_wide_features_use_smaller_tiles():
    """d = 300 (padded to 512: 32 x 32 tiles), cross-view dot similarity as in gCooL."""
    g = torch.Generator().manual_seed(3)
    a = (0.1 * torch.randn(70, 300, generator=g)).to(DEVICE).requires_grad_()
    b = (0.1 * torch.randn(70, 300, generator=g)).to(DEVICE).requires_grad_()
    out = {}
    for backend in ("blockwise", "fused"):
        loss = contrastive_loss(a, b, similarity="dot", temperature=0.5, backend=backend)
        out[backend] = (loss, *torch.autograd.grad(loss, [a, b]))
    for x, y in zip(out["fused"], out["blockwise"]):
        assert _rel(x, y) < 1e-4


def test_row_statistics_values():
    a, b, _ = _inputs()
    la, lb = _labels()
    kw = dict(positives=SameLabel(la, lb), temperature=0.5, need_pos_lse=True)
    f = row_statistics(a, b, backend="fused", **kw)
    r = row_statistics(a, b, backend="blockwise", **kw)
    has = r.pos_count > 0
    for name in ("lse", "pos_sum", "pos_count", "den_count"):
        assert _rel(getattr(f, name), getattr(r, name)) < 1e-5, name
    assert _rel(f.pos_lse[has], r.pos_lse[has]) < 1e-5


@pytest.mark.parametrize("kwargs, needle", [
    (dict(similarity="neg_sq_dist"), "similarity"),
    (dict(exclude=torch.tensor([[0], [1]])), "exclude"),
    (dict(positives=torch.tensor([[0, 1], [1, 2]])), "Pairs"),
    (dict(negative_weight=VectorWeight(torch.ones(M))), "VectorWeight"),
])
def test_unsupported_options_raise_clear_error(kwargs, needle):
    a, b, _ = _inputs()
    with pytest.raises(ValueError, match=needle):
        contrastive_loss(a, b, backend="fused", **kwargs)
    # auto falls back to the blockwise path silently
    assert torch.isfinite(contrastive_loss(a, b, backend="auto", **kwargs))


def test_unsupported_learnable_table_and_batched():
    a, _, table = _inputs()
    la, _ = _labels()
    with pytest.raises(ValueError, match="requires grad"):
        contrastive_loss(a, None, positives=N // 2, backend="fused",
                         negative_weight=LabelTable(table.clone().requires_grad_(), la))
    with pytest.raises(ValueError, match="batched"):
        contrastive_loss(a.detach().view(3, 50, D), None, positives=1, backend="fused")


def test_backend_argument_validated():
    a, _, _ = _inputs()
    with pytest.raises(ValueError, match="backend"):
        contrastive_loss(a, None, positives=1, backend="triton")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="TF32 matmuls exist only on CUDA")
def test_tf32_within_tolerance():
    a, _, table = _inputs()
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        loss, ref_kw = _call(CASES["grace_stacked_views"], a, None, "fused", table)
        (g,) = torch.autograd.grad(loss, [a])
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    a64 = a.detach().cpu().double().requires_grad_()
    ref = reference_loss(a64, None, **ref_kw)
    (r,) = torch.autograd.grad(ref, [a64])
    assert _rel(loss.cpu(), ref) < 1e-2
    assert _rel(g.cpu(), r) < 1e-2


def test_kernels_compile_to_cubin_for_hopper_and_ampere():
    """Ahead-of-time compilation with this Triton's ptxas (no GPU needed): the GPU path lowers."""
    import subprocess
    import sys

    code = (
        "from contrastkit.core.kernels.fused_stats import compile_kernels\n"
        "a = compile_kernels(90)\n"
        "b = compile_kernels(80, dtype='bfloat16', dim=64, DIAG=3, POS=2, DECOUPLED=1, WEIGHT=1,"
        " NORMW=1, NEED_PLSE=1)\n"
        "c = compile_kernels(90, dim=384, DIAG=0)\n"
        "print(sorted({(k, len(v) > 1000) for x in (a, b, c) for k, v in x.items()}))\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=600)
    if proc.returncode != 0 and "ptxas" in proc.stderr.lower() and "not found" in proc.stderr:
        pytest.skip("this Triton install has no bundled ptxas")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str([("_stats_bwd_a", True), ("_stats_bwd_b", True),
                                       ("_stats_bwd_sym", True), ("_stats_fwd", True)])
