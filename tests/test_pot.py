"""POT (node-compactness regulariser): score vs a dense float64 reference (values and gradients),
bounds vs sampled admissible augmentations, κ = 0 parity with the base method, activation errors,
the POT evaluator, the CLI switch and a learning test on Cora."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from torch_geometric.utils import to_undirected

from conftest import assert_grads_match

from contrastkit.cli import main
from contrastkit.core.probes import torch_lr_probe
from contrastkit.core.trainer import Trainer
from contrastkit.graphcl.augment import AdaptiveDropEdges
from contrastkit.graphcl.encoders import GCNEncoder
from contrastkit.graphcl.grace import (GRACE, GCAPOTConfig, GRACEConfig, GRACEPOTConfig,
                                       evaluate_embeddings)
from contrastkit.graphcl.pot import (GCA_POT_PRESETS, GRACE_POT_PRESETS, POTPlugin,
                                     adaptive_budgets, boundable_slope, certified_score,
                                     contrast_direction, node_degrees, pot_bce, pot_bounds,
                                     pot_score, uniform_budgets)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _graph(n: int = 24, m: int = 50, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (m,), generator=g)
    dst = torch.randint(0, n, (m,), generator=g)
    keep = src != dst
    ei = torch.stack([src[keep], dst[keep]])
    ring = torch.arange(n)  # a ring so that every node has neighbours
    ei = torch.cat([ei, torch.stack([ring, (ring + 1) % n])], 1)
    return to_undirected(ei, num_nodes=n)


def _encoder(f: int, h: int, act: str = "relu", seed: int = 0) -> GCNEncoder:
    torch.manual_seed(seed)
    enc = GCNEncoder(f, h, 2, act).double()
    with torch.no_grad():
        for conv in enc.convs:
            conv.bias.normal_(0, 0.3)  # non-zero biases exercise every term
        if act == "prelu":
            enc.activation.weight.fill_(0.2)
    return enc


def _dense_norm(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """gcn_norm as a dense matrix M[source, target] (self-loops added, in-degree at the target)."""
    a = torch.zeros(n, n, dtype=torch.float64)
    a[edge_index[0], edge_index[1]] = 1.0
    a.fill_diagonal_(1.0)
    deg = a.sum(0)  # in-degree (column sums) incl. the self-loop
    return deg.rsqrt()[:, None] * a * deg.rsqrt()[None, :]


def _reference_score(enc, x, clean, q, view, z_other, nodes, exact_chord=False):
    """Slow dense float64 transcription of spec pot.md §3 (dense N x N bounds, explicit W̃₁)."""
    n_all = x.size(0)
    a = torch.zeros(n_all, n_all, dtype=torch.float64)
    a[clean[0], clean[1]] = 1.0
    d = a.sum(1)
    qd = q.double()
    a_tilde = a + torch.eye(n_all, dtype=torch.float64)
    s = 1 / torch.sqrt(d + 1 - qd)
    upper = torch.where(a_tilde > 0, s[:, None] * s[None, :], torch.zeros_like(a))
    lower = torch.diag(1 / (d + 1))
    S = torch.arange(n_all) if nodes is None else nodes
    U, L = upper[S][:, S], lower[S][:, S]
    mid, rad = (U + L) / 2, (U - L) / 2
    c1, c2 = enc.convs
    W1, b1, W2, b2 = c1.lin.weight.t(), c1.bias, c2.lin.weight.t(), c2.bias  # [F,m] .. [m,h]
    alpha = boundable_slope(enc)
    P1 = (x @ W1)[S]
    Z1U, Z1L = mid @ P1 + rad @ P1.abs() + b1, mid @ P1 - rad @ P1.abs() + b1
    H = enc.activation(c1(x, clean))
    P2 = (H @ W2)[S]
    Z2U, Z2L = mid @ P2 + rad @ P2.abs() + b2, mid @ P2 - rad @ P2.abs() + b2

    def relax(lo, up):
        slope = torch.zeros_like(lo)
        icpt = torch.zeros_like(lo)
        pos, neg = lo >= 0, up <= 0
        cr = ~(pos | neg)
        slope[pos] = 1.0
        slope[neg] = alpha
        slope[cr] = (up[cr] - alpha * lo[cr]) / (up[cr] - lo[cr])
        den = (up[cr] - lo[cr]) if exact_chord else (up[cr] - alpha * lo[cr])
        icpt[cr] = (alpha - 1) * up[cr] * lo[cr] / den
        return slope, icpt

    n = S.numel()
    zh = torch.nn.functional.normalize(z_other, dim=1)
    w = torch.stack([zh[i] - torch.cat([zh[:i], zh[i + 1:]]).mean(0) for i in range(n)])
    a2, t2 = relax(Z2L, Z2U)
    a1, t1 = relax(Z1L, Z1U)
    lam2 = a2 * w
    del2 = torch.where(w >= 0, torch.zeros_like(t2), t2)
    Wt2 = lam2 @ W2.t()
    bt2 = torch.diag(lam2 @ (del2 + b2).t())
    lam1 = a1 * Wt2
    del1 = torch.where(Wt2 >= 0, torch.zeros_like(t1), t1)
    Wt1 = lam1 @ W1.t()  # [n, F]
    bt1 = torch.diag(lam1 @ (del1 + b1).t())
    u = (x[S] * Wt1).sum(1)
    An = _dense_norm(view, n_all)[S][:, S]
    return An @ (An @ u + bt1) + bt2


def _aug(edge_index, p, seed):
    g = torch.Generator().manual_seed(seed)
    return edge_index[:, torch.rand(edge_index.size(1), generator=g) >= p]


# ---------------------------------------------------------------------------------------------
# the score against the dense reference
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["relu", "prelu", "rrelu"])
@pytest.mark.parametrize("subset", [False, True])
@pytest.mark.parametrize("exact_chord", [False, True])
def test_score_matches_dense_reference_with_gradients(act, subset, exact_chord):
    n, f, h = 24, 7, 5
    clean = _graph(n)
    enc = _encoder(f, h, act)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, f, generator=g, dtype=torch.float64)
    nodes = torch.randperm(n, generator=g)[:15] if subset else None
    k = n if nodes is None else nodes.numel()
    z_other = torch.randn(k, h, generator=g, dtype=torch.float64, requires_grad=True)
    q = uniform_budgets(node_degrees(clean, n), 0.4)
    view = _aug(clean, 0.3, 2)
    bounds = pot_bounds(clean, n, q, dtype=torch.float64)

    params = [enc.convs[0].lin.weight, enc.convs[0].bias, enc.convs[1].lin.weight,
              enc.convs[1].bias, z_other]
    ours = pot_score(enc, x, bounds, view, contrast_direction(z_other), nodes,
                     clean_edge_index=clean, exact_chord=exact_chord)
    ref = _reference_score(enc, x, clean, q, view, z_other, nodes, exact_chord)
    assert ours.shape == (k,)
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-10)
    g1 = torch.autograd.grad(pot_bce(ours), params)
    g2 = torch.autograd.grad(pot_bce(ref), params)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_plugin_shares_the_dense_product_and_clean_layer():
    """POTPlugin (xw shared, H via the cached normalisation) equals the plain score."""
    n, f, h = 24, 7, 5
    clean = _graph(n)
    enc = _encoder(f, h, "prelu")
    x = torch.rand(n, f, dtype=torch.float64)
    cfg = GRACEConfig(pot=True, drop_edge_p1=0.3, drop_edge_p2=0.5)
    plugin = POTPlugin(cfg)
    data = type("D", (), {"x": x, "edge_index": clean})()
    views = [type("V", (), {"edge_index": _aug(clean, p, i)})() for i, p in enumerate((.3, .5))]
    z = [enc(x, v.edge_index) for v in views]
    got = plugin.loss(enc, data, views, z, None)
    want = 0
    for v in (0, 1):
        b = pot_bounds(clean, n, uniform_budgets(node_degrees(clean, n), (0.3, 0.5)[v]),
                       dtype=torch.float64)
        want = want + pot_bce(pot_score(enc, x, b, views[v].edge_index,
                                        contrast_direction(z[1 - v]), clean_edge_index=clean))
    torch.testing.assert_close(got, want / 2)
    assert len(plugin._cache) == 1
    plugin.loss(enc, data, views, z, None)
    assert len(plugin._cache) == 1  # cached, not recomputed


# ---------------------------------------------------------------------------------------------
# budgets and bounds
# ---------------------------------------------------------------------------------------------
def test_budgets_follow_the_spec():
    deg = torch.tensor([0., 1., 2., 5., 10.])
    assert uniform_budgets(deg, 0.4).tolist() == [0, 0, 1, 2, 4]
    clean = _graph(30, 80)
    n = 30
    data = type("D", (), {"edge_index": clean, "num_nodes": n})()
    probs = AdaptiveDropEdges(0.4, "degree").probabilities(data)
    d = node_degrees(clean, n)
    q = adaptive_budgets(clean, probs, d)
    b = torch.zeros(n, dtype=torch.float64).index_add_(0, clean[1], probs.double())
    assert torch.equal(q, torch.minimum((d - 1).clamp_min(0).double(), b.round()).long())


def test_zero_budget_collapses_the_intervals():
    """Acceptance check 1: with q ≡ 0 (and the tight lower bound) Â^L = Â^U = Â."""
    n = 24
    clean = _graph(n)
    b = pot_bounds(clean, n, torch.zeros(n, dtype=torch.long), tight_lower=True)
    torch.testing.assert_close(b.upper, b.lower)
    dense = _dense_norm(clean, n).float()
    torch.testing.assert_close(b.upper, dense[b.edge_index[0], b.edge_index[1]])
    # the code's bounds keep a zero lower bound off the diagonal (documented looseness)
    code = pot_bounds(clean, n, torch.zeros(n, dtype=torch.long))
    off = code.edge_index[0] != code.edge_index[1]
    assert bool((code.lower[off] == 0).all()) and torch.equal(code.upper, b.upper)


def test_bounds_are_sparse_and_validated():
    n = 24
    clean = _graph(n)
    b = pot_bounds(clean, n, uniform_budgets(node_degrees(clean, n), 0.5))
    assert b.upper.numel() == clean.size(1) + n  # entries of A + I only, never N x N
    with pytest.raises(ValueError, match="budget"):
        pot_bounds(clean, n, torch.full((n,), 99))
    with pytest.raises(ValueError, match="undirected"):
        pot_bounds(torch.tensor([[0], [1]]), 3, torch.zeros(3, dtype=torch.long))


def _admissible(clean, n, q, p, g):
    """A symmetric augmentation removing at most q_i edges at each node (self-loops kept)."""
    und = clean[:, clean[0] < clean[1]]
    left = q.clone()
    keep = torch.ones(und.size(1), dtype=torch.bool)
    for e in torch.randperm(und.size(1), generator=g).tolist():
        i, j = und[:, e].tolist()
        if torch.rand(1, generator=g).item() < p and left[i] > 0 and left[j] > 0:
            keep[e] = False
            left[i] -= 1
            left[j] -= 1
    return to_undirected(und[:, keep], num_nodes=n)


def _acceptance_trials(n=40, f=8, h=6, trials=6):
    """Acceptance check 2's cases: random graph, 2-layer GCN (ReLU / PReLU), features, GRACE
    budgets at p = 0.5, their bounds, a contrast direction and the generator for sampling."""
    for trial in range(trials):
        clean = _graph(n, 90, seed=trial)
        enc = _encoder(f, h, "relu" if trial % 2 else "prelu", seed=trial)
        g = torch.Generator().manual_seed(100 + trial)
        x = torch.rand(n, f, generator=g, dtype=torch.float64)
        q = uniform_budgets(node_degrees(clean, n), 0.5)
        b = pot_bounds(clean, n, q, dtype=torch.float64)
        with torch.no_grad():
            w = contrast_direction(enc(x, _aug(clean, 0.3, trial)))
        yield clean, enc, x, q, b, w, g


def test_score_against_sampled_admissible_augmentations():
    """Acceptance check 2 on random 2-layer GCNs and budget-respecting symmetric augmentations.

    * The layer-1 pre-activation interval is a true bound: never violated.
    * The score s_i is NOT a bound of the true margin z_i(G̃)·w_i: measured violation rate
      ≈ 0.37 (ReLU) / 0.48 (PReLU) of (node, augmentation) pairs. The spec expected "rarely";
      the cause is pitfall 4(b): the back-substitution uses node l's own objective (W̃₂_l, W̃₁_l)
      for every neighbour l of i, so s_i differs from node i's margin even with no edge dropped.
      The test pins the rate (regression guard) and that the score tracks the margin. The
      sound option, ``certified_score``, is never violated (test below).
    """
    n = 40
    total = viol = 0
    scores, margins = [], []
    for clean, enc, x, q, b, w, g in _acceptance_trials(n):
        with torch.no_grad():
            ei, mid, rad = b.restrict(None)
            p1 = x @ enc.convs[0].lin.weight.t()
            mid_d = torch.zeros(n, n, dtype=torch.float64)
            rad_d = torch.zeros(n, n, dtype=torch.float64)
            mid_d[ei[0], ei[1]], rad_d[ei[0], ei[1]] = mid, rad
            lo = mid_d @ p1 - rad_d @ p1.abs()
            hi = mid_d @ p1 + rad_d @ p1.abs()
            for _ in range(25):
                aug = _admissible(clean, n, q, 0.6, g)
                pre1 = _dense_norm(aug, n).t() @ p1  # layer-1 pre-activation on G̃ (no bias)
                assert bool((pre1 >= lo - 1e-12).all() and (pre1 <= hi + 1e-12).all())
                margin = (enc(x, aug) * w).sum(1)
                s = pot_score(enc, x, b, aug, w, clean_edge_index=clean)
                viol += int((s > margin + 1e-9).sum())
                total += n
                scores.append(s)
                margins.append(margin)
    rate = viol / total
    print(f"POT score violation rate on admissible augmentations: {rate:.4f} ({viol}/{total})")
    assert 0.2 < rate < 0.6, rate
    corr = torch.corrcoef(torch.stack([torch.cat(scores), torch.cat(margins)]))[0, 1]
    assert corr > 0.1, corr  # measured ≈ 0.23: a weak surrogate of the margin


def _reference_certified(enc, x, clean, q, w):
    """Slow dense float64 transcription of :func:`certified_score`: node i's objective through
    every neighbour j's layer-1 interval, the minimum of c·σ(p) over the interval taken per
    unit from its two ends and its kink, then the worse end of each adjacency interval."""
    n = x.size(0)
    a = torch.zeros(n, n, dtype=torch.float64)
    a[clean[0], clean[1]] = 1.0
    d = a.sum(1)
    a_tilde = a + torch.eye(n, dtype=torch.float64)
    inv = 1 / torch.sqrt(d + 1 - q.double())
    upper = torch.where(a_tilde > 0, inv[:, None] * inv[None, :], torch.zeros_like(a))
    lower = torch.diag(1 / (d + 1))
    c1, c2 = enc.convs
    alpha = boundable_slope(enc)
    p1 = x @ c1.lin.weight.t()
    mid, rad = (upper + lower) / 2, (upper - lower) / 2
    lo = mid @ p1 - rad @ p1.abs() + c1.bias
    hi = mid @ p1 + rad @ p1.abs() + c1.bias

    def act(v):
        return torch.clamp(v, min=0) + alpha * torch.clamp(v, max=0)

    out = []
    for i in range(n):
        c = c2.lin.weight.t() @ w[i]
        total = w[i] @ c2.bias
        for j in range(n):
            if a_tilde[i, j] == 0:
                continue
            g = 0.0
            for k in range(c.numel()):
                pts = [lo[j, k], hi[j, k]]
                if lo[j, k] < 0 < hi[j, k]:
                    pts.append(torch.zeros((), dtype=torch.float64))
                g = g + min(c[k] * act(p) for p in pts)
            total = total + min(lower[i, j] * g, upper[i, j] * g)
        out.append(total)
    return torch.stack(out)


@pytest.mark.parametrize("act", ["relu", "prelu"])
def test_certified_score_matches_reference_with_gradients(act):
    n, f, h = 14, 5, 3
    clean = _graph(n, 30, seed=4)
    enc = _encoder(f, h, act, seed=4)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(n, f, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(n, h, generator=g, dtype=torch.float64, requires_grad=True)
    q = uniform_budgets(node_degrees(clean, n), 0.5)
    b = pot_bounds(clean, n, q, dtype=torch.float64)
    got = certified_score(enc, x, b, w, chunk_size=7)  # several chunks
    ref = _reference_certified(enc, x, clean, q, w)
    torch.testing.assert_close(got, ref)
    params = [x, w, *enc.parameters()]
    g1 = torch.autograd.grad(got.sum(), params, allow_unused=True)
    g2 = torch.autograd.grad(ref.sum(), params, allow_unused=True)
    for a_, b_ in zip(g1, g2):
        if b_ is None:
            assert a_ is None or not a_.any()
        else:
            torch.testing.assert_close(a_, b_)
    with pytest.raises(ValueError, match="chunk_size"):
        certified_score(enc, x, b, w, chunk_size=0)


def test_certified_score_is_never_violated_on_admissible_augmentations():
    """Acceptance check 2 for the sound option: the same random GCNs and budget-respecting
    symmetric augmentations as above; ``certified_score`` never exceeds the true margin."""
    n = 40
    gaps = []
    for clean, enc, x, q, b, w, g in _acceptance_trials(n):
        with torch.no_grad():
            s = certified_score(enc, x, b, w)
            for graph in [clean] + [_admissible(clean, n, q, 0.6, g) for _ in range(25)]:
                margin = (enc(x, graph) * w).sum(1)
                assert bool((s <= margin + 1e-10).all()), float((s - margin).max())
                gaps.append(margin - s)
    gap = torch.cat(gaps)
    print(f"certified score: mean gap to the margin {float(gap.mean()):.3f}")
    assert float(gap.min()) >= -1e-10 and float(gap.mean()) > 0


def test_certified_bound_option_trains(monkeypatch):
    """``pot_bound="certified"`` scores with :func:`certified_score` (twice a step, one per
    view), not the official surrogate, and so trains to different weights."""
    import contrastkit.graphcl.pot as P
    data = _toy_data()
    calls = {"certified": 0, "official": 0}

    def counting(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(P, "certified_score", counting("certified", P.certified_score))
    monkeypatch.setattr(P, "pot_score", counting("official", P.pot_score))
    base = dict(hidden_channels=8, projection_channels=8, pot=True)
    m = _train(GRACEConfig(**base, pot_bound="certified"), data, epochs=3)
    assert calls == {"certified": 6, "official": 0}
    ref = _train(GRACEConfig(**base, pot_bound="official"), data, epochs=3)
    assert calls == {"certified": 6, "official": 6}
    assert all(torch.isfinite(p).all() for p in m.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(m.parameters(), ref.parameters()))
    with pytest.raises(ValueError, match="pot_bound"):
        GRACEConfig(pot_bound="crown")


# ---------------------------------------------------------------------------------------------
# plug-in behaviour
# ---------------------------------------------------------------------------------------------
def _toy_data(n=120, f=16, seed=0):
    from torch_geometric.data import Data
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, f, generator=g)
    return Data(x=x / x.sum(1, keepdim=True), edge_index=_graph(n, 300, seed),
                y=torch.randint(0, 3, (n,), generator=g))


def _train(cfg, data, epochs=4):
    torch.manual_seed(3)
    m = GRACE(cfg, data.num_features)
    Trainer(epochs, seed=3, progress=False).fit(m, [data])
    return m


@pytest.mark.parametrize("extra", [dict(), dict(loss_subset=50), dict(pot_batch=40),
                                   dict(drop_scheme="degree", loss_subset=64, pot_batch=30)])
def test_kappa_zero_reproduces_the_base_method_bit_for_bit(extra):
    data = _toy_data()
    base = dict(hidden_channels=8, projection_channels=8, drop_feature_p1=0.0,
                drop_feature_p2=0.0, epochs=4, **extra)
    m0 = _train(GRACEConfig(**base), data)
    m1 = _train(GRACEConfig(**base, pot=True, pot_kappa=0.0), data)
    m2 = _train(GRACEConfig(**base, pot=True, pot_kappa=0.5), data)
    s0, s1, s2 = m0.state_dict(), m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s0[k], s1[k]) for k in s0)
    assert not all(torch.equal(s0[k], s2[k]) for k in s0)  # POT does change training


def test_unboundable_activations_and_depth_raise():
    for act in ("elu", "rrelu_random"):
        with pytest.raises(ValueError, match=r"activation.*activation=rrelu"):
            boundable_slope(GCNEncoder(4, 3, 2, act))
    with pytest.raises(ValueError, match="exactly 2 layers"):
        boundable_slope(GCNEncoder(4, 3, 3, "relu"))
    with pytest.raises(ValueError, match="PReLU with 3"):
        boundable_slope(GCNEncoder(4, 3, 2, torch.nn.PReLU(3)))
    assert boundable_slope(GCNEncoder(4, 3, 2, "rrelu")) == pytest.approx((1 / 8 + 1 / 3) / 2)
    data = _toy_data()
    cfg = GRACEConfig(hidden_channels=8, projection_channels=8, activation="elu", pot=True)
    with pytest.raises(ValueError, match="'elu'"):
        GRACE(cfg, data.num_features).training_step(data)
    for bad in (dict(pot_kappa=1.5), dict(pot_batch=0), dict(loss_subset=1), dict(pot="yes")):
        with pytest.raises((ValueError, TypeError), match=rf"^{next(iter(bad))}:"):
            GRACEConfig(**bad)


def test_pot_evaluator_split_order_and_official_masks(cora):
    cfg = GRACEPOTConfig(pot_swap_masks=True)
    emb = torch.randn(cora.num_nodes, 8, generator=torch.Generator().manual_seed(0))
    emb[:, :7] += 2 * torch.nn.functional.one_hot(cora.y, 7)
    res = evaluate_embeddings(cfg, emb, cora, seed=0)
    idx = lambda m: m.nonzero().view(-1)  # noqa: E731
    tr, va, te = idx(cora.train_mask), idx(cora.val_mask), idx(cora.test_mask)
    right = torch_lr_probe(emb, cora.y, tr, va, te, seed=0)
    swapped = torch_lr_probe(emb, cora.y, tr, te, va, seed=0)
    assert res["micro_f1"] == pytest.approx(right["micro_f1"])
    assert res["micro_f1_official"] == pytest.approx(swapped["micro_f1"])


def test_presets_follow_the_spec_tables():
    assert GRACE_POT_PRESETS["cora"]["temperature"] == 0.7  # config.yaml, not the --tau 0.9 default
    assert GRACE_POT_PRESETS["computers"]["loss_subset"] == 4096
    assert GCA_POT_PRESETS["computers"]["loss_subset"] == 2048
    assert GCA_POT_PRESETS["computers"]["activation"] == "prelu"
    for preset in list(GRACE_POT_PRESETS.values()) + list(GCA_POT_PRESETS.values()):
        cfg = GCAPOTConfig(**preset)
        assert cfg.pot and cfg.drop_feature_p1 == cfg.drop_feature_p2 == 0.0
        assert cfg.eval_protocol == "pot"


@pytest.fixture(scope="module")
def cora():
    from contrastkit.datasets import load
    return load("cora")


def test_cli_switch_and_wrapper(tmp_path):
    for args in (["grace", "--set", "pot=true", "--set", "pot_kappa=0.3",
                  "--set", "eval_repeats=1"], ["gca_pot", "--set", "pot_batch=512"]):
        out = tmp_path / args[0]
        assert main(["train", *args, "--set", "epochs=1", "--out", str(out),
                     "--no-progress"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert 0.0 <= metrics["micro_f1"] <= 1.0
        used = yaml.safe_load((out / "config.yaml").read_text())
        assert used["pot"] is True
        if args[0] == "grace":
            assert used["pot_kappa"] == 0.3
        else:
            assert used["pot_batch"] == 512 and used["eval_protocol"] == "pot"


def test_grace_pot_learns_on_cora(cora):
    """15 epochs of GRACE+POT (POT's Cora config, 1024-node NCE subset for speed): the
    public-split probe (measured 0.620 -> 0.761) clears a floor and beats the untrained
    encoder. (The loss itself is not comparable across steps: NCE chunks differ in size.)"""
    cfg = GRACEPOTConfig(epochs=15, loss_subset=1024)
    torch.manual_seed(0)
    m = GRACE(cfg, cora.num_features)
    m.eval()
    before = evaluate_embeddings(cfg, m.embed(cora), cora, 0)["micro_f1"]
    trainer = Trainer(cfg.epochs, seed=0, progress=False)
    trainer.fit(m, [cora])
    m.eval()
    after = evaluate_embeddings(cfg, m.embed(cora), cora, 0)["micro_f1"]
    losses = [r["loss"] for r in trainer.history]
    print(f"GRACE+POT Cora: probe {before:.3f} -> {after:.3f}, loss {losses[0]:.3f} -> "
          f"{losses[-1]:.3f}")
    assert after >= 0.74 and after >= before + 0.03, (before, after)


def test_gca_pot_learns_on_cora(cora):
    """15 epochs of GCA+POT (POT's Cora config for GCA: degree-adaptive views, 1024-node NCE
    subset for speed): the public-split probe (measured 0.620 -> 0.759) clears a floor and
    beats the untrained encoder."""
    cfg = GCAPOTConfig(epochs=15, loss_subset=1024)
    torch.manual_seed(0)
    m = GRACE(cfg, cora.num_features)
    m.eval()
    before = evaluate_embeddings(cfg, m.embed(cora), cora, 0)["micro_f1"]
    Trainer(cfg.epochs, seed=0, progress=False).fit(m, [cora])
    m.eval()
    after = evaluate_embeddings(cfg, m.embed(cora), cora, 0)["micro_f1"]
    print(f"GCA+POT Cora: probe {before:.3f} -> {after:.3f}")
    assert after >= 0.74 and after >= before + 0.03, (before, after)


def test_pot_bce_matches_literal_reference_with_gradients():
    """``pot_bce`` was only ever compared with itself (on two scores); here against the spec's
    ``(1/n) sum_i log(1 + e^{-s_i})`` written out, including scores of large magnitude."""
    g = torch.Generator().manual_seed(12)
    s = torch.cat([torch.randn(9, generator=g, dtype=torch.float64) * 3,
                   torch.tensor([-30.0, 25.0], dtype=torch.float64)]).requires_grad_(True)
    ref = sum(torch.log1p(torch.exp(-s[i])) for i in range(s.numel())) / s.numel()
    out = pot_bce(s)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(out, s)[0], torch.autograd.grad(ref, s)[0],
                               rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# the composite objective against a float64 reference (values and gradients)
# ---------------------------------------------------------------------------------------------
def _literal_budget(clean, n, p):
    """Spec pot.md §3.1 step 2, GRACE-style: ``q_i = min(max(d_i - 1, 0), round(p d_i))``."""
    a = torch.zeros(n, n, dtype=torch.float64)
    a[clean[0], clean[1]] = 1.0
    d = a.sum(1)
    return torch.minimum((d - 1).clamp_min(0), torch.round(p * d)).long()


def _literal_w(z_other):
    """``w_i = ẑ'_i - (1/(n-1)) Σ_{j≠i} ẑ'_j`` (spec pot.md §2), one row at a time."""
    zh = torch.nn.functional.normalize(z_other, dim=1)
    return torch.stack([zh[i] - torch.cat([zh[:i], zh[i + 1:]]).mean(0)
                        for i in range(zh.size(0))])


def _literal_bce(s):
    """``(1/n) Σ_i log(1 + e^{-s_i})``."""
    return sum(torch.log1p(torch.exp(-s[i])) for i in range(s.numel())) / s.numel()


def _pot_reference(enc, x, clean, views, z, nodes, ps, bound, exact):
    """``½ (L¹ + L²)``: view v scored with its own budget (drop rate ``ps[v]``), its own sampled
    edges and ``w`` from the OTHER view's encoder outputs on ``S``."""
    n = x.size(0)
    S = torch.arange(n) if nodes is None else nodes
    per_view = []
    for v in (0, 1):
        q = _literal_budget(clean, n, ps[v])
        if bound == "official":
            s = _reference_score(enc, x, clean, q, views[v].edge_index, z[1 - v][S], nodes, exact)
        else:
            s = _reference_certified(enc, x, clean, q, _literal_w(z[1 - v][S]))
        per_view.append(_literal_bce(s))
    return (per_view[0] + per_view[1]) / 2


@pytest.mark.parametrize("act,subset,bound,exact", [
    ("relu", False, "official", False), ("prelu", False, "official", False),
    ("prelu", True, "official", True), ("relu", True, "official", False),
    ("relu", False, "certified", False), ("prelu", False, "certified", False)])
def test_plugin_loss_matches_float64_reference_with_gradients(act, subset, bound, exact):
    """``POTPlugin.loss`` against spec pot.md §2 written out from the dense float64 score
    references: ``½ (L_POT¹ + L_POT²)``, ``L_POT^v = (1/n) Σ_{i∈S} log(1 + e^{-s^v_i})`` with
    ``s^v`` from view v's budget, view v's sampled edges and w from the other view's ``z[S]``.
    Gradients w.r.t. the clean features, both views' encoder outputs and every encoder
    parameter (the PReLU slope gets gradient only through the clean hidden layer H)."""
    from types import SimpleNamespace
    n, f, h = 24, 7, 5
    clean = _graph(n, seed=3)
    enc = _encoder(f, h, act, seed=2)
    g = torch.Generator().manual_seed(21)
    x = torch.rand(n, f, generator=g, dtype=torch.float64, requires_grad=True)
    z = [torch.randn(n, h, generator=g, dtype=torch.float64, requires_grad=True)
         for _ in range(2)]
    nodes = torch.randperm(n, generator=g)[:15] if subset else None
    ps = (0.3, 0.6)  # different budgets per view: swapping the views' bounds would show
    cfg = GRACEConfig(pot=True, drop_edge_p1=ps[0], drop_edge_p2=ps[1], pot_bound=bound,
                      pot_exact_chord=exact)
    views = [SimpleNamespace(edge_index=_aug(clean, ps[v], 10 + v)) for v in (0, 1)]
    data = SimpleNamespace(x=x, edge_index=clean)
    got = POTPlugin(cfg).loss(enc, data, views, z, nodes)
    ref = _pot_reference(enc, x, clean, views, z, nodes, ps, bound, exact)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    g_ref = assert_grads_match(got, ref, [x, *z, *enc.parameters()])
    assert any(gr is not None and gr.abs().sum() > 0 for gr in g_ref[3:])  # reaches the encoder


@pytest.mark.parametrize("kappa", [0.3, 1.0])
def test_grace_pot_training_step_matches_float64_reference_with_gradients(kappa):
    """``GRACE.training_step`` with POT against spec pot.md §2/§3.2 written out:
    ``(1 - κ) J + κ ½ (L_POT¹ + L_POT²)`` with GRACE's J (spec grace_gca.md §2: cosine critic
    on the projections, intra- and inter-view negatives, ``1/(2N) Σ_i [ℓ(u_i, w_i) +
    ℓ(w_i, u_i)]``) on all nodes. The views are fixed (``views`` patched to return two given
    edge-dropped graphs with the clean features); gradients w.r.t. every model parameter."""
    from torch_geometric.data import Data
    n, f = 20, 6
    clean = _graph(n, 40, seed=5)
    g = torch.Generator().manual_seed(6)
    x = torch.rand(n, f, generator=g, dtype=torch.float64)
    ps = (0.3, 0.5)
    cfg = GRACEConfig(hidden_channels=5, projection_channels=4, activation="prelu",
                      temperature=0.6, drop_edge_p1=ps[0], drop_edge_p2=ps[1],
                      drop_feature_p1=0.0, drop_feature_p2=0.0, pot=True, pot_kappa=kappa)
    torch.manual_seed(7)
    m = GRACE(cfg, f).double()
    with torch.no_grad():
        for conv in m.encoder.convs:
            conv.bias.normal_(0, 0.3)
    data = Data(x=x, edge_index=clean)
    views = [Data(x=x, edge_index=_aug(clean, ps[v], 30 + v)) for v in (0, 1)]
    m.views = lambda batch: views
    got = m.training_step(data)

    enc = m.encoder
    z = [enc(v.x, v.edge_index) for v in views]
    u, w = (m.head(zi) for zi in z)
    tau = cfg.temperature

    def theta(a, b):
        return (a @ b) / (a.norm() * b.norm())

    def ell(a, b, i):  # anchor a_i, positive b_i; negatives b_k and a_k, k != i
        pos = torch.exp(theta(a[i], b[i]) / tau)
        neg = sum(torch.exp(theta(a[i], b[k]) / tau) + torch.exp(theta(a[i], a[k]) / tau)
                  for k in range(n) if k != i)
        return -torch.log(pos / (pos + neg))

    J = sum(ell(u, w, i) + ell(w, u, i) for i in range(n)) / (2 * n)
    pot = _pot_reference(enc, x, clean, views, z, None, ps, "official", False)
    ref = (1 - kappa) * J + kappa * pot
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    assert_grads_match(got, ref, list(m.parameters()))
