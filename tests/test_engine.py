"""The loss engine against a slow, obviously correct float64 reference, gradients included.

The reference loops over anchors and candidates with Python scalars, applying the definitions in
``contrastkit/core/engine.py`` literally. Every option is checked dense and blockwise.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import contrastkit.core.engine as eng
from contrastkit.core.engine import contrastive_loss, row_statistics
from contrastkit.core.losses import decoupled_loss, nt_xent, supcon_loss
from contrastkit.core.pairs import Aligned, Dense, Pairs, SameLabel
from contrastkit.core.weights import BlockWeight, LabelTable, VectorWeight

N, M, D = 11, 9, 5


@pytest.fixture(autouse=True)
def _float64():
    """The references run in float64; restore the default dtype for the other test modules."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _sim(a, b, kind):
    if kind == "cosine":
        return (a @ b) / (a.norm() * b.norm())
    if kind == "dot":
        return a @ b
    return -((a - b) ** 2).sum()


def reference(a, b, *, self_contrast, pos, excl, diagonal, weight, normalize, form, reduction,
              similarity, tau):
    """Literal per-pair definition. pos/excl/weight are python callables on (i, j[, s])."""
    rows, valid_rows, Qs = [], [], []
    Mb = a.shape[0] if self_contrast else b.shape[0]
    bb = a if self_contrast else b
    for i in range(a.shape[0]):
        den_terms, den_logw, pos_terms, pos_w = [], [], [], []
        for j in range(Mb):
            if self_contrast and i == j and diagonal == "exclude":
                continue
            if excl(i, j):
                continue
            t = tau[j] if tau.dim() == 1 else tau
            s = _sim(a[i], bb[j], similarity) / t
            if self_contrast and i == j and not isinstance(diagonal, str):
                s = torch.tensor(float(diagonal))
            q = pos(i, j)
            if q > 0:
                pos_terms.append(s)
                pos_w.append(q)
            if form == "decoupled" and q > 0:
                continue
            w = weight(i, j, s)
            if w <= 0:
                continue
            den_terms.append(s + torch.log(w if torch.is_tensor(w) else torch.tensor(float(w))))
            den_logw.append(torch.log(w if torch.is_tensor(w) else torch.tensor(float(w))))
        Q = sum(pos_w) if pos_w else 0.0
        if not den_terms:
            rows.append(torch.zeros(())), valid_rows.append(False), Qs.append(Q)
            continue
        lse = torch.logsumexp(torch.stack(den_terms), 0)
        if normalize:
            lse = lse - torch.logsumexp(torch.stack(den_logw), 0)
        P = sum(q * s for q, s in zip(pos_w, pos_terms)) if pos_w else torch.zeros(())
        if form in ("infonce", "decoupled"):
            ok = Q > 0
            val = lse - P / Q if ok else torch.zeros(())
        elif form == "positive_mass":
            ok = Q > 0
            val = lse - torch.logsumexp(torch.stack([s + math.log(q) for q, s in zip(pos_w, pos_terms)]), 0) if ok else torch.zeros(())
        elif form in ("soft_targets", "pair_mean"):
            ok = Q > 0 if form == "pair_mean" else True
            val = Q * lse - P
        else:
            ok, val = True, lse
        rows.append(val if ok else torch.zeros(())), valid_rows.append(ok), Qs.append(Q)
    per_row = torch.stack([torch.as_tensor(r) for r in rows])
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    if form == "pair_mean":
        return per_row.sum() / sum(q for q, v in zip(Qs, valid_rows) if v)
    return per_row.sum() / max(1, sum(valid_rows))


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(N, D, generator=g).requires_grad_(True)
    b = torch.randn(M, D, generator=g).requires_grad_(True)
    return a, b, g


def _check(loss_fn, ref_fn, tensors, tol=1e-8):
    ref = ref_fn()
    gref = torch.autograd.grad(ref.sum(), tensors, allow_unused=True)
    for bs in (None, 1, 3, 4, N):
        out = loss_fn(bs)
        assert torch.allclose(out, ref, atol=tol, rtol=tol), (bs, out, ref)
        gout = torch.autograd.grad(out.sum(), tensors, allow_unused=True)
        for x, y in zip(gout, gref):
            if y is None:
                assert x is None or torch.allclose(x, torch.zeros_like(x))
            else:
                assert x is not None and torch.allclose(x, y, atol=tol, rtol=tol), (bs, (x - y).abs().max())


@pytest.mark.parametrize("similarity,form,reduction", list(itertools.product(
    ["cosine", "dot", "neg_sq_dist"],
    ["infonce", "decoupled", "pair_mean", "soft_targets", "positive_mass", "log_partition"],
    ["mean", "sum", "none"])))
def test_cross_candidates_labels(similarity, form, reduction):
    a, b, g = _data(1)
    la = torch.randint(0, 3, (N,), generator=g)
    lb = torch.randint(0, 3, (M,), generator=g)
    tau = torch.tensor(0.7, requires_grad=True)
    _check(lambda bs: contrastive_loss(a, b, positives=SameLabel(la, lb), temperature=tau,
                                       similarity=similarity, form=form, reduction=reduction,
                                       block_size=bs),
           lambda: reference(a, b, self_contrast=False,
                             pos=lambda i, j: 0.0 if form == "log_partition" else float(la[i] == lb[j]),
                             excl=lambda i, j: False, diagonal="exclude",
                             weight=lambda i, j, s: 1.0, normalize=False, form=form,
                             reduction=reduction, similarity=similarity, tau=tau),
           [a, b, tau])


@pytest.mark.parametrize("diagonal", ["exclude", "negative", 0.0, 1.5])
@pytest.mark.parametrize("form", ["infonce", "positive_mass", "pair_mean"])
def test_self_contrast_offset_and_diagonal(diagonal, form):
    a, _, _ = _data(2)
    _check(lambda bs: contrastive_loss(a, None, positives=Aligned(3), temperature=0.5, form=form,
                                       diagonal=diagonal, block_size=bs),
           lambda: reference(a, None, self_contrast=True, pos=lambda i, j: float(j == (i + 3) % N),
                             excl=lambda i, j: False, diagonal=diagonal,
                             weight=lambda i, j, s: 1.0, normalize=False, form=form,
                             reduction="mean", similarity="cosine", tau=torch.tensor(0.5)),
           [a])


def test_weighted_pairs_exclusions_and_per_candidate_temperature():
    a, b, g = _data(3)
    idx = torch.stack([torch.randint(0, N, (25,), generator=g), torch.randint(0, M, (25,), generator=g)])
    w = torch.rand(25, generator=g) + 0.1
    dense_pos = torch.zeros(N, M)
    dense_pos.index_put_((idx[0], idx[1]), w, accumulate=True)
    excl_idx = torch.tensor([[0, 1, 2, 5], [1, 1, 3, 0]])
    excl = {(0, 1), (1, 1), (2, 3), (5, 0)}
    tau = (torch.rand(M, generator=g) + 0.3).requires_grad_(True)
    for form in ("infonce", "positive_mass", "soft_targets"):
        _check(lambda bs: contrastive_loss(a, b, positives=Pairs(idx, w), exclude=excl_idx,
                                           temperature=tau, form=form, block_size=bs),
               lambda: reference(a, b, self_contrast=False,
                                 pos=lambda i, j: 0.0 if (i, j) in excl else float(dense_pos[i, j]),
                                 excl=lambda i, j: (i, j) in excl, diagonal="exclude",
                                 weight=lambda i, j, s: 1.0, normalize=False, form=form,
                                 reduction="mean", similarity="cosine", tau=tau),
               [a, b, tau])


def test_dense_soft_positives_match_pairs():
    a, b, g = _data(4)
    q = torch.softmax(torch.randn(N, M, generator=g), 1)
    _check(lambda bs: contrastive_loss(a, b, positives=Dense(q), temperature=0.3, form="soft_targets",
                                       block_size=bs),
           lambda: reference(a, b, self_contrast=False, pos=lambda i, j: float(q[i, j]),
                             excl=lambda i, j: False, diagonal="exclude", weight=lambda i, j, s: 1.0,
                             normalize=False, form="soft_targets", reduction="mean",
                             similarity="cosine", tau=torch.tensor(0.3)),
           [a, b])


@pytest.mark.parametrize("normalize", [False, True])
def test_label_tables_summed_and_vector_weights(normalize):
    a, b, g = _data(5)
    K = 4
    T1 = (torch.rand(K, K, generator=g) + 0.1).requires_grad_(True)
    T1.data.fill_diagonal_(0.0)  # zero weight = exclusion (MEOW's w_ii = 0)
    la1, lb1 = torch.randint(0, K, (N,), generator=g), torch.randint(0, K, (M,), generator=g)
    T2 = torch.rand(K, K, generator=g)
    la2, lb2 = torch.randint(0, K, (N,), generator=g), torch.randint(0, K, (M,), generator=g)
    v = (torch.rand(M, generator=g) + 0.5).requires_grad_(True)
    weights = [LabelTable(T1, la1, lb1), LabelTable(T2, la2, lb2), VectorWeight(v, "candidate")]
    _check(lambda bs: contrastive_loss(a, b, positives="aligned", temperature=0.5,
                                       negative_weight=weights, normalize_weights=normalize,
                                       block_size=bs),
           lambda: reference(a, b, self_contrast=False, pos=lambda i, j: float(j == i % M),
                             excl=lambda i, j: False, diagonal="exclude",
                             weight=lambda i, j, s: T1[la1[i], lb1[j]] + T2[la2[i], lb2[j]] + v[j],
                             normalize=normalize, form="infonce", reduction="mean",
                             similarity="cosine", tau=torch.tensor(0.5)),
           [a, b, T1, v])


def test_callable_weight_with_parameters_and_closure():
    """AdaMEOW-style: w_ij = softplus(MLP(v_i + u_j)), closing over embeddings; grads flow to both."""
    a, b, g = _data(6)
    mlp = torch.nn.Sequential(torch.nn.Linear(D, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    params = list(mlp.parameters())

    def fn(s, rows):
        return F.softplus(mlp(a[rows][:, None, :] + b[None, :, :]).squeeze(-1)) * torch.exp(0.1 * s)

    _check(lambda bs: contrastive_loss(a, b, positives="aligned", temperature=0.4,
                                       negative_weight=BlockWeight(fn),
                                       block_size=bs),
           lambda: reference(a, b, self_contrast=False, pos=lambda i, j: float(j == i % M),
                             excl=lambda i, j: False, diagonal="exclude",
                             weight=lambda i, j, s: F.softplus(mlp(a[i] + b[j])).squeeze() * torch.exp(0.1 * s),
                             normalize=False, form="infonce", reduction="mean",
                             similarity="cosine", tau=torch.tensor(0.4)),
           [a, b, *params])


def test_nt_xent_matches_grace_formula_and_naive_double_loop():
    g = torch.Generator().manual_seed(7)
    u = torch.randn(8, 6, generator=g, requires_grad=True)
    w = torch.randn(8, 6, generator=g, requires_grad=True)
    tau = 0.4

    def ell(x, y):  # GRACE's l(u_i, w_i), literally: 2N-1 denominator terms
        out = 0.0
        for i in range(x.size(0)):
            th = lambda p, q: F.cosine_similarity(p, q, dim=0) / tau
            num = torch.exp(th(x[i], y[i]))
            den = num + sum(torch.exp(th(x[i], y[k])) for k in range(x.size(0)) if k != i) \
                + sum(torch.exp(th(x[i], x[k])) for k in range(x.size(0)) if k != i)
            out = out - torch.log(num / den)
        return out

    ref = (ell(u, w) + ell(w, u)) / (2 * u.size(0))
    for bs in (None, 1, 5):
        out = nt_xent(u, w, temperature=tau, block_size=bs)
        assert torch.allclose(out, ref, atol=1e-10)
        g1 = torch.autograd.grad(out, [u, w])
        g2 = torch.autograd.grad(ref, [u, w], retain_graph=True)
        assert all(torch.allclose(x, y, atol=1e-10) for x, y in zip(g1, g2))


def test_float32_agrees_with_float64_at_small_temperature():
    g = torch.Generator().manual_seed(8)
    u, w = torch.randn(64, 16, generator=g), torch.randn(64, 16, generator=g)
    for tau in (0.2, 0.05):
        l64 = nt_xent(u, w, temperature=tau)
        l32 = nt_xent(u.float(), w.float(), temperature=tau, block_size=16)
        assert torch.isfinite(l32) and abs(float(l32) - float(l64)) < 1e-4 * max(1.0, float(l64))


def test_supcon_and_decoupled_wrappers_match_reference():
    a, _, g = _data(9)
    lab = torch.randint(0, 3, (N,), generator=g)
    ref = reference(a, None, self_contrast=True, pos=lambda i, j: float(lab[i] == lab[j] and i != j),
                    excl=lambda i, j: False, diagonal="exclude", weight=lambda i, j, s: 1.0,
                    normalize=False, form="infonce", reduction="mean", similarity="cosine",
                    tau=torch.tensor(0.1))
    _check(lambda bs: supcon_loss(a, lab, temperature=0.1, block_size=bs), lambda: ref, [a])
    z1, z2 = a[:5], a[5:10]
    z = torch.cat([z1, z2])
    ref = reference(z, None, self_contrast=True, pos=lambda i, j: float(j == (i + 5) % 10),
                    excl=lambda i, j: False, diagonal="exclude", weight=lambda i, j, s: 1.0,
                    normalize=False, form="decoupled", reduction="mean", similarity="cosine",
                    tau=torch.tensor(0.1))
    _check(lambda bs: decoupled_loss(z1, z2, temperature=0.1, block_size=bs), lambda: ref, [a])


def test_empty_rows_give_zero_not_nan():
    a, b, _ = _data(10)
    lab_a = torch.full((N,), -1)
    lab_a[0] = 0
    lab_b = torch.zeros(M, dtype=torch.long)
    out = contrastive_loss(a, b, positives=SameLabel(lab_a, lab_b), reduction="none", block_size=3)
    assert torch.isfinite(out).all() and (out[1:] == 0).all() and out[0] > 0
    # every candidate excluded: loss 0, gradient 0, no NaN, and a warning that says so
    excl = torch.stack(torch.meshgrid(torch.arange(N), torch.arange(M), indexing="ij")).reshape(2, -1)
    with pytest.warns(RuntimeWarning, match="no anchor has a positive and a non-empty denom"):
        loss = contrastive_loss(a, b, exclude=excl, block_size=4)
    (ga,) = torch.autograd.grad(loss, [a])
    assert float(loss.detach()) == 0.0 and torch.isfinite(ga).all()


def _spy_tiles(monkeypatch):
    seen = []
    for name in ("tile_stats", "tile_grad"):
        orig = getattr(eng._Plan, name)

        def spy(self, s, *args, _orig=orig, **kwargs):
            seen.append(tuple(s.shape))
            return _orig(self, s, *args, **kwargs)

        monkeypatch.setattr(eng._Plan, name, spy)
    return seen


def test_blockwise_never_materialises_full_matrix(monkeypatch):
    """Every tile the engine forms has at most block_size rows (forward and backward)."""
    seen = _spy_tiles(monkeypatch)
    a, b = torch.randn(100, 8, requires_grad=True), torch.randn(60, 8)
    contrastive_loss(a, b, positives="aligned", block_size=16).backward()
    assert max(r for r, _ in seen) == 16 and len(seen) == 2 * math.ceil(100 / 16)
    # a self-comparison uses square tiles of the upper block triangle, of side 40 here (no more
    # entries than a [16, 100] row block): 3 diagonal tiles and 3 off-diagonal ones, each of
    # those read for its rows and (transposed) for its columns
    seen.clear()
    z = torch.randn(100, 8, requires_grad=True)
    contrastive_loss(z, None, positives=50, block_size=16).backward()
    assert eng.symmetric_tile_side(100, 16) == 40
    assert max(max(t) for t in seen) == 40 and len(seen) == 2 * (3 + 2 * 3)
    assert max(r * c for r, c in seen) <= 16 * 100


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize("form,diagonal", [("infonce", "exclude"), ("decoupled", "exclude"),
                                           ("positive_mass", 1.5), ("soft_targets", "negative")])
def test_symmetric_self_comparison_matches_reference(monkeypatch, similarity, form, diagonal):
    """The upper-triangle path (self-comparison, fixed scalar temperature) against the float64
    reference, gradients included: random pairs with duplicates, exclusions, rows whose gradient
    is zero (``reduction="none"`` weighted) and a last block of one row."""
    seen = _spy_tiles(monkeypatch)
    n = 13
    g = torch.Generator().manual_seed(5)
    a = torch.randn(n, D, generator=g).requires_grad_(True)
    idx = torch.stack([torch.randint(0, n, (30,), generator=g), torch.randint(0, n, (30,), generator=g)])
    excl = torch.tensor([[0, 4, 12, 7], [9, 4, 1, 12]])
    pos = lambda i, j: float(((idx[0] == i) & (idx[1] == j)).sum())  # noqa: E731
    ex = {(int(i), int(j)) for i, j in excl.t()}
    weights = torch.rand(n, generator=g) * (torch.arange(n) % 4 != 0)  # some rows get no gradient
    ref = reference(a, None, self_contrast=True, pos=pos, excl=lambda i, j: (i, j) in ex,
                    diagonal=diagonal, weight=lambda i, j, s: 1.0, normalize=False, form=form,
                    reduction="none", similarity=similarity, tau=torch.tensor(0.4))
    (gref,) = torch.autograd.grad((ref * weights).sum(), [a])
    for bs in (1, 4, 6, 12):
        seen.clear()
        out = contrastive_loss(a, None, positives=Pairs(idx), exclude=Pairs(excl), temperature=0.4,
                               similarity=similarity, form=form, diagonal=diagonal,
                               reduction="none", block_size=bs)
        (gout,) = torch.autograd.grad((out * weights).sum(), [a])
        assert torch.allclose(out, ref, atol=1e-10), bs
        assert torch.allclose(gout, gref, atol=1e-10), (bs, (gout - gref).abs().max())
        side = eng.symmetric_tile_side(n, bs)  # 3, 7, 8, 12: last tiles of 1, 6, 5, 1 rows
        assert bs <= side < n and max(max(t) for t in seen) == side  # the symmetric path ran


def test_symmetric_path_not_taken_with_learnable_temperature(monkeypatch):
    """A temperature with a gradient keeps the row-block path (its gradient is then exact)."""
    seen = _spy_tiles(monkeypatch)
    a, _, _ = _data(6)
    tau = torch.tensor(0.6, requires_grad=True)
    out = contrastive_loss(a, None, positives=4, temperature=tau, block_size=4)
    ref = reference(a, None, self_contrast=True, pos=lambda i, j: float(j == (i + 4) % N),
                    excl=lambda i, j: False, diagonal="exclude", weight=lambda i, j, s: 1.0,
                    normalize=False, form="infonce", reduction="mean", similarity="cosine", tau=tau)
    got = torch.autograd.grad(out, [a, tau])
    want = torch.autograd.grad(ref, [a, tau])
    assert all(torch.allclose(x, y, atol=1e-10) for x, y in zip(got, want))
    assert {t[1] for t in seen} == {N}  # full-width row tiles


@pytest.mark.parametrize("kwargs,match", [
    (dict(temperature=0.0), "temperature"),
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=torch.tensor(-0.5)), "temperature"),
    (dict(similarity="l2"), "similarity"),
    (dict(form="nce"), "form"),
    (dict(reduction="avg"), "reduction"),
    (dict(block_size=0), "block_size"),
    (dict(positives=torch.zeros(3, dtype=torch.long)), "labels_a"),
    (dict(positives=torch.tensor([[0, 1], [0, 99]])), r"index\[1\]"),
    (dict(diagonal="drop"), "diagonal"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    a, b, _ = _data(11)
    with pytest.raises((ValueError, TypeError), match=match):
        contrastive_loss(a, b, **kwargs)


def test_bad_embeddings_raise_clear_errors():
    a, b, _ = _data(12)
    bad = a.detach().clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="anchors: expected finite"):
        contrastive_loss(bad, b)
    with pytest.raises(ValueError, match="candidates: expected feature size"):
        contrastive_loss(a, torch.randn(M, D + 1))
    with pytest.raises(ValueError, match="z1 and z2"):
        nt_xent(a, b)
    with pytest.raises(ValueError, match="anchors: expected at least one row"):
        contrastive_loss(torch.zeros(0, D), b)
    inf = b.detach().clone()
    inf[1, 1] = float("inf")
    with pytest.raises(ValueError, match="candidates: expected finite"):
        contrastive_loss(a, inf)


def test_row_statistics_shapes_and_half_precision_upcast():
    a = torch.randn(6, 4).half()
    st = row_statistics(a.float(), positives=3, temperature=0.5)
    assert st.lse.shape == (6,) and st.pos_count.eq(1).all()
    assert contrastive_loss(a, None, positives=3, temperature=0.05).dtype == torch.float32


def test_zero_weight_exclusions_are_not_exclusions_on_both_paths():
    a, b, g = _data(13)
    idx = torch.tensor([[0, 1, 2], [1, 2, 3]])
    w = torch.tensor([0.0, 1.0, 0.0])
    fast = contrastive_loss(a, b, exclude=Pairs(idx, w), block_size=3)
    general = contrastive_loss(a, b, exclude=Pairs(idx, w), block_size=3,
                               negative_weight=VectorWeight(torch.ones(M)))
    ref = contrastive_loss(a, b, exclude=Pairs(idx[:, 1:2]), block_size=3)
    assert torch.allclose(fast, ref, atol=1e-12) and torch.allclose(general, ref, atol=1e-12)


def test_empty_row_statistics_have_no_gradient_on_both_paths():
    a, b, _ = _data(14)
    excl = torch.stack([torch.zeros(M, dtype=torch.long), torch.arange(M)])  # row 0: all excluded
    for weight in (None, VectorWeight(torch.ones(M))):
        st = row_statistics(a, b, positives=None, exclude=excl, negative_weight=weight,
                            block_size=4)
        (ga, gb) = torch.autograd.grad(st.lse[0], [a, b])
        assert torch.count_nonzero(ga) == 0 and torch.count_nonzero(gb) == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_bad_weights_are_errors_not_exclusions(bad):
    a, b, g = _data(15)
    table = torch.rand(3, 3)
    table[0, 1] = bad
    with pytest.raises(ValueError, match="table: expected finite, non-negative"):
        LabelTable(table, torch.zeros(N, dtype=torch.long))
    with pytest.raises(ValueError, match="fn output: expected finite"):
        contrastive_loss(a, b, negative_weight=BlockWeight(lambda s, r: s * 0 + bad))


def test_second_derivatives_are_refused_not_silently_wrong():
    z1 = torch.randn(40, 8, requires_grad=True)
    z2 = torch.randn(40, 8)
    loss = nt_xent(z1, z2, block_size=16)
    (g,) = torch.autograd.grad(loss, z1, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        g.sum().backward()


def test_mixed_dtype_inputs_promote_to_the_wider():
    a32 = torch.randn(6, 4, dtype=torch.float32)
    b64 = torch.randn(5, 4, dtype=torch.float64)
    assert contrastive_loss(a32, b64, positives="aligned").dtype == torch.float64


def test_dclw_positive_coefficients():
    """DCLW: l_i = -w_i s_i+ + log sum_{j != i, i+} e^{s_ij}, with w as a coefficient."""
    g = torch.Generator().manual_seed(16)
    z1 = torch.randn(6, 4, generator=g, requires_grad=True)
    z2 = torch.randn(6, 4, generator=g, requires_grad=True)
    z = torch.cat([z1, z2])
    coef = torch.rand(12, generator=g) + 0.5
    rows = torch.arange(12)
    pairs = Pairs(torch.stack([rows, (rows + 6) % 12]), coef)
    zn = F.normalize(z, dim=1)
    ref = 0.0
    for i in range(12):
        s = zn[i] @ zn.t() / 0.3
        p = (i + 6) % 12
        neg = torch.stack([s[j] for j in range(12) if j not in (i, p)])
        ref = ref + (-coef[i] * s[p] + torch.logsumexp(neg, 0))
    ref = ref / 12
    for bs in (None, 5):
        out = contrastive_loss(z, None, positives=pairs, temperature=0.3, form="decoupled",
                               positive_mean=False, block_size=bs)
        assert torch.allclose(out, ref, atol=1e-10)
        g1 = torch.autograd.grad(out, [z1, z2])
        g2 = torch.autograd.grad(ref, [z1, z2], retain_graph=True)
        assert all(torch.allclose(x, y, atol=1e-10) for x, y in zip(g1, g2))


def test_bad_pair_weights_are_errors():
    idx = torch.tensor([[0, 1], [1, 2]])
    for bad in (float("nan"), -0.5):
        with pytest.raises(ValueError, match="weight: expected finite, non-negative"):
            Pairs(idx, torch.tensor([1.0, bad]))
        with pytest.raises(ValueError, match="weight: expected finite, non-negative"):
            Dense(torch.tensor([[1.0, bad]]))


@pytest.mark.parametrize("form", ["positive_mass", "infonce", "pair_mean"])
def test_batched_anchors_equal_per_group_calls(form):
    """``[G, N, D]`` anchors give each group's own statistics (incl. the positive LSE)."""
    z = torch.randn(3, 6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = contrastive_loss(z, None, positives=1, form=form, reduction="none")
    want = torch.stack([contrastive_loss(z[g], None, positives=1, form=form, reduction="none")
                        for g in range(3)])
    assert torch.allclose(got, want, atol=1e-12)


def test_symmetric_tile_side_bounds_memory_and_tile_count():
    """Tiles hold no more entries than one row block, and a small block_size does not shrink
    them below what that bound allows (the tile count stays ~ (n / 768)^2 / 2, not (n / b)^2 / 2)."""
    for n, b in [(20_000, 24), (169_343, 24), (5_000, 1), (3_000, 2_000), (100, 16), (13, 1)]:
        side = eng.symmetric_tile_side(n, b)
        assert min(b, n) <= side <= n
        assert side * side <= max(b * n, b * b)
    assert eng.symmetric_tile_side(20_000, 24) == math.isqrt(24 * 20_000) == 692
    assert eng.symmetric_tile_side(169_343, 24) == eng.SYMMETRIC_MIN_SIDE
    # automatic blocks keep the previous rule: max(block, SYMMETRIC_MIN_SIDE)
    for n in (4_096, 27_504, 169_343):
        block = eng.TILE_ENTRIES // n
        assert eng.symmetric_tile_side(n, block) == min(n, max(block, eng.SYMMETRIC_MIN_SIDE))


# ---------------------------------------------------------------------------------------------
# Named wrappers of contrastkit.core.losses that had no reference of their own (audit)
# ---------------------------------------------------------------------------------------------
def _lit_cos(x, y):
    return (x @ y) / (x.norm() * y.norm())


def test_info_nce_and_modules_match_literal_reference_incl_learnable_temperature():
    """``info_nce`` (cross candidates, aligned positives), ``InfoNCE(learnable=True)`` (gradient
    of the temperature parameter) and ``NTXent``, from the docstring equation written out."""
    from contrastkit.core.losses import InfoNCE, NTXent, info_nce
    g = torch.Generator().manual_seed(31)
    a = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(8, 4, generator=g, dtype=torch.float64, requires_grad=True)
    tau = 0.35

    def ref_cross(t):  # l_i = -log e^{s_ii/t} / sum_j e^{s_ij/t}, every candidate in the sum
        total = 0.0
        for i in range(6):
            den = sum(torch.exp(_lit_cos(a[i], b[j]) / t) for j in range(8))
            total = total - torch.log(torch.exp(_lit_cos(a[i], b[i]) / t) / den)
        return total / 6

    ref = ref_cross(tau)
    gref = torch.autograd.grad(ref, [a, b])
    for bs in (None, 2):
        out = info_nce(a, b, temperature=tau, block_size=bs)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
        for x, y in zip(torch.autograd.grad(out, [a, b]), gref):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)
    mod = InfoNCE(tau, learnable=True).double()
    t_ref = torch.tensor(tau, dtype=torch.float64, requires_grad=True)
    out, ref = mod(a, b), ref_cross(t_ref)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    got = torch.autograd.grad(out, [a, b, mod.temperature])
    want = torch.autograd.grad(ref, [a, b, t_ref])
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)
    assert float(want[2].abs()) > 1e-3  # the temperature gradient is really exercised

    z1, z2 = a[:4], b[:4]
    z = torch.cat([z1, z2])
    ref = 0.0
    for r in range(8):  # GRACE / NT-Xent: 2N - 1 denominator terms, self excluded
        den = sum(torch.exp(_lit_cos(z[r], z[j]) / tau) for j in range(8) if j != r)
        ref = ref - torch.log(torch.exp(_lit_cos(z[r], z[(r + 4) % 8]) / tau) / den)
    ref = ref / 8
    out = NTXent(tau)(z1, z2)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    for x, y in zip(torch.autograd.grad(out, [a, b]), torch.autograd.grad(ref, [a, b])):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)


def test_supcon_and_decoupled_modules_match_literal_reference():
    from contrastkit.core.losses import DecoupledLoss, SupConLoss
    g = torch.Generator().manual_seed(32)
    x = torch.randn(9, 3, generator=g, dtype=torch.float64, requires_grad=True)
    lab = torch.tensor([0, 1, 0, 2, 1, 0, 3, 2, 1])  # label 3: an anchor without positive
    tau = 0.2
    total, count = 0.0, 0
    for i in range(9):
        P = [p for p in range(9) if p != i and lab[p] == lab[i]]
        if not P:
            continue  # anchors without a positive leave the mean
        den = sum(torch.exp(_lit_cos(x[i], x[j]) / tau) for j in range(9) if j != i)
        total = total - sum(torch.log(torch.exp(_lit_cos(x[i], x[p]) / tau) / den)
                            for p in P) / len(P)
        count += 1
    ref = total / count
    out = SupConLoss(tau)(x, lab)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(torch.autograd.grad(out, x)[0], torch.autograd.grad(ref, x)[0],
                               rtol=1e-10, atol=1e-10)
    z1, z2 = x[:4], x[4:8]
    z = torch.cat([z1, z2])
    ref = 0.0
    for r in range(8):  # DCL: -s_{i,i+}/tau + log sum_{j != i, i+} e^{s_ij/tau}
        p = (r + 4) % 8
        ref = ref - _lit_cos(z[r], z[p]) / tau + torch.log(
            sum(torch.exp(_lit_cos(z[r], z[j]) / tau) for j in range(8) if j not in (r, p)))
    ref = ref / 8
    out = DecoupledLoss(tau)(z1, z2)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(torch.autograd.grad(out, x)[0], torch.autograd.grad(ref, x)[0],
                               rtol=1e-10, atol=1e-10)


def test_positive_mass_loss_matches_literal_reference():
    """l_i = -log sum_{j in P(i)} q_ij e^{s_ij} / sum_j e^{s_ij}, weighted pairs, cross and self."""
    from contrastkit.core.losses import positive_mass_loss
    g = torch.Generator().manual_seed(33)
    a = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([[0, 0, 1, 2, 3, 3, 5, 6], [1, 4, 1, 0, 2, 3, 4, 0]])  # row 4: none
    q = torch.rand(8, generator=g, dtype=torch.float64) + 0.2
    tau = 0.6

    def ref_fn(cands, self_contrast):
        total, count = 0.0, 0
        for i in range(7):
            pos = [(int(idx[1, k]), q[k]) for k in range(8) if int(idx[0, k]) == i
                   and not (self_contrast and int(idx[1, k]) == i)]
            if not pos:
                continue  # no positive: the row leaves the mean
            js = [j for j in range(cands.size(0)) if not (self_contrast and j == i)]
            den = sum(torch.exp(_lit_cos(a[i], cands[j]) / tau) for j in js)
            num = sum(w * torch.exp(_lit_cos(a[i], cands[j]) / tau) for j, w in pos)
            total = total - torch.log(num / den)
            count += 1
        return total / count

    for cands, self_contrast in ((b, False), (None, True)):
        ref = ref_fn(a if self_contrast else b, self_contrast)
        gref = torch.autograd.grad(ref, [a, b], allow_unused=True)
        for bs in (None, 3):
            out = positive_mass_loss(a, cands, positives=Pairs(idx, q), temperature=tau,
                                     block_size=bs)
            torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
            for x, y in zip(torch.autograd.grad(out, [a, b], allow_unused=True), gref):
                if y is None:
                    assert x is None or torch.count_nonzero(x) == 0
                else:
                    torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)


def test_aligned_positives_with_fewer_candidates_than_anchors_are_rejected():
    from contrastkit.core.losses import info_nce
    a, b, _ = _data(10)
    a, b = a[:10], b[:6]
    # anchors 6..9 used to wrap around to candidates 0..3 (i mod M) silently
    with pytest.raises(ValueError, match=r"positives: 'aligned' .* 10 anchors and 6 candidates"):
        info_nce(a, b)
    with pytest.raises(ValueError, match=r"positives: 'aligned' .* 10 anchors and 6"):
        info_nce(a, b[:6], block_size=3)
    # more candidates than anchors (extra negatives) pairs i with i, no wrap: still fine
    assert torch.isfinite(info_nce(a[:4], b))
    # the engine itself keeps its documented i <-> i mod M (the tests above rely on it)
    assert torch.isfinite(contrastive_loss(a, b[:6], positives="aligned"))


def test_a_loss_that_cannot_have_positives_is_named():
    a, b, _ = _data(10)
    with pytest.raises(ValueError, match="positives: 'aligned' pairs anchor i with candidate i"):
        contrastive_loss(a)  # self-comparison: each anchor's only positive is itself
    assert torch.isfinite(contrastive_loss(a, diagonal="negative"))  # the self pair kept: fine
    with pytest.warns(RuntimeWarning, match="no anchor has a positive"):
        assert float(contrastive_loss(a, b, positives=None).detach()) == 0.0
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="diagonal: expected a finite"):
            contrastive_loss(a, positives=SameLabel(torch.arange(N) % 3), diagonal=bad)
    for name in ("normalize_weights", "positive_mean"):
        with pytest.raises(TypeError, match=f"{name}: expected a bool, got 'no'"):
            contrastive_loss(a, b, **{name: "no"})


def test_l2_normalize_huge_rows_do_not_overflow():
    """``F.normalize`` squares entries: float32 rows above ~1.8e19 have an infinite norm and
    silently became zero vectors. ``l2_normalize`` keeps them unit rows, and rows with entries
    at most 1 are passed to ``F.normalize`` untouched (same bits)."""
    from contrastkit.core.similarity import l2_normalize
    x = torch.tensor([[3e20, 4e20], [3.0, 4.0], [0.3, 0.4], [0.0, 0.0]], dtype=torch.float32)
    assert torch.nn.functional.normalize(x, dim=-1)[0].abs().sum() == 0  # the failure it fixes
    want = torch.tensor([[0.6, 0.8], [0.6, 0.8], [0.6, 0.8], [0.0, 0.0]], dtype=torch.float32)
    assert torch.allclose(l2_normalize(x), want)
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        for magnitude in (1e-3, 1.0, 7.0, 1e3, 3e4):  # bit-identical where F.normalize is finite
            rows = torch.randn(65, 16, generator=g, dtype=torch.float64) * magnitude
            rows = (rows * torch.rand(65, 1, generator=g, dtype=torch.float64) * 10).to(dtype)
            a, b = rows.clone().requires_grad_(), rows.clone().requires_grad_()
            want, got = torch.nn.functional.normalize(a, dim=-1), l2_normalize(b)
            assert torch.equal(got, want)
            w = torch.randn(rows.shape, generator=g, dtype=torch.float64).to(dtype)
            (want * w).sum().backward()
            (got * w).sum().backward()
            assert torch.equal(b.grad, a.grad)
    half = torch.full((2, 8), 3e4, dtype=torch.float16)  # a float16 norm above 65504 is inf
    unit = torch.full((2, 8), 8 ** -0.5, dtype=torch.float32)
    assert torch.allclose(l2_normalize(half).float(), unit, atol=1e-3)


@pytest.mark.parametrize("name", ["info_nce", "nt_xent", "decoupled_loss", "hard_infonce_loss",
                                  "uniformity_loss", "alignment_loss"])
def test_cosine_losses_are_scale_invariant_up_to_huge_magnitudes(name):
    """Cosine losses at float32 embeddings of magnitude 1e25 equal those at magnitude 1, with a
    finite, non-zero gradient (they were log(N)-constants with a zero gradient before)."""
    import contrastkit.core.losses as L
    fn = getattr(L, name)
    g = torch.Generator().manual_seed(0)
    z1, z2 = (torch.randn(16, 8, generator=g, dtype=torch.float32) for _ in range(2))
    call = (lambda a, b: fn(a)) if name == "uniformity_loss" else fn
    big1 = (z1 * 1e25).requires_grad_()
    big = call(big1, z2 * 1e25)
    assert torch.allclose(big, call(z1, z2), rtol=1e-5, atol=1e-6)
    big.backward()
    assert torch.isfinite(big1.grad).all() and big1.grad.abs().sum() > 0
