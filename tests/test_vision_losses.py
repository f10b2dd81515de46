"""Vision-spec losses against slow, obviously correct float64 references, gradients included.

Each reference loops over anchors / views / pairs with the formulas of the specs in
``shared/specs/vision`` written out literally (plain exponentials and logs in float64, no
engine). The implementations are also run blockwise where they use the engine.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.core import metrics
from contrastkit.core.losses import (
    AdaptiveTemperature, AMCLLoss, CACRLoss, DCLWLoss, FTMoCoLoss, HardInfoNCELoss, KeyQueue,
    MoCHiLoss, MoCoLoss, MultiHeadProjector, MVDHELLoss, MVInfoNCELoss, SwAVLoss, SwAVPrototypes,
    alignment_loss, amcl_loss, amcl_regularizer, cacr_loss, dclw_loss, dclw_weights,
    decoupled_loss, ft_moco_loss,
    hard_infonce_loss, hard_nt_xent, id_match_pairs, mochi_loss, mochi_negatives,
    moco_loss, moco_score_stats, avg_loss, pvc_loss, mv_dhel_loss, mv_infonce_loss, negative_interpolation,
    negative_weight_stats, nt_xent, positive_extrapolation, pwe_loss, simple_contrastive_loss,
    sinkhorn_knopp, swav_loss, tolerance, uniformity_loss)

TOL = 1e-9


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _leaf(*shape, seed=0, scale=1.0):
    return (scale * torch.randn(*shape, generator=_gen(seed))).requires_grad_(True)


def _cos(a, b):
    return (a @ b) / (a.norm() * b.norm())


def _close(out, ref, tensors, tol=TOL):
    assert torch.allclose(out, ref, atol=tol, rtol=tol), (out, ref)
    g_out = torch.autograd.grad(out.sum(), tensors, retain_graph=True, allow_unused=True)
    g_ref = torch.autograd.grad(ref.sum(), tensors, retain_graph=True, allow_unused=True)
    for x, y in zip(g_out, g_ref):
        if y is None:
            assert x is None or torch.allclose(x, torch.zeros_like(x), atol=tol)
        else:
            assert x is not None and torch.allclose(x, y, atol=tol, rtol=tol), \
                (x - y).abs().max()


# ---------------------------------------------------------------------------------------------
# DCL / DCLW
# ---------------------------------------------------------------------------------------------
def _dclw_reference(z1, z2, tau, sigma, weighted):
    B = z1.shape[0]
    z = torch.cat([z1, z2])
    s_pos = torch.stack([_cos(z1[i], z2[i]) for i in range(B)]).detach()
    if weighted:
        mean = sum(math.exp(float(s) / sigma) for s in s_pos) / B
        w = [2 - math.exp(float(s_pos[i]) / sigma) / mean for i in range(B)]
    else:
        w = [1.0] * B
    total = 0.0
    for r in range(2 * B):
        i, p = r % B, (r + B) % (2 * B)
        neg = torch.stack([_cos(z[r], z[j]) / tau for j in range(2 * B) if j not in (r, p)])
        total = total - w[i] * _cos(z[r], z[p]) / tau + torch.logsumexp(neg, 0)
    return total / (2 * B)


@pytest.mark.parametrize("weighted,sigma", [(True, 0.5), (True, 0.05), (False, 0.5)])
def test_dclw_matches_reference(weighted, sigma):
    z1, z2 = _leaf(7, 4, seed=1), _leaf(7, 4, seed=2)
    ref = _dclw_reference(z1, z2, 0.1, sigma, weighted)
    for bs in (None, 3):
        out = dclw_loss(z1, z2, temperature=0.1, sigma=sigma, weighted=weighted, block_size=bs)
        _close(out, ref, [z1, z2])
    if not weighted:
        _close(decoupled_loss(z1, z2, temperature=0.1), ref, [z1, z2])


def test_dclw_weights_mean_one_no_grad_and_can_be_negative():
    z1, z2 = _leaf(9, 4, seed=3), _leaf(9, 4, seed=4)
    w = dclw_weights(z1, z2, sigma=0.05)
    assert not w.requires_grad
    assert torch.allclose(w.mean(), torch.tensor(1.0))
    assert bool((w < 0).any())  # sigma small: the easiest pair gets a negative weight
    s = F.cosine_similarity(z1, z2).detach()
    assert int(w.argmax()) == int(s.argmin())  # harder (less similar) positives weigh more


def test_dclw_module_and_half_precision_input():
    z1, z2 = _leaf(6, 4, seed=5), _leaf(6, 4, seed=6)
    m = DCLWLoss(temperature=0.2, sigma=0.5)
    assert torch.allclose(m(z1, z2), dclw_loss(z1, z2, temperature=0.2))
    out = dclw_loss(z1.detach().bfloat16(), z2.detach().bfloat16(), temperature=0.05)
    assert out.dtype == torch.float32 and torch.isfinite(out)


# ---------------------------------------------------------------------------------------------
# SwAV
# ---------------------------------------------------------------------------------------------
def _sinkhorn_reference(scores, eps, iters):
    """The official algorithm, literally (plain exponentials, float64)."""
    Q = torch.exp(scores.detach().double() / eps).t()
    Q = Q / Q.sum()
    K, B = Q.shape
    for _ in range(iters):
        Q = Q / Q.sum(1, keepdim=True) / K
        Q = Q / Q.sum(0, keepdim=True) / B
    return (Q * B).t()


def test_sinkhorn_matches_official_algorithm_and_marginals():
    scores = torch.randn(12, 5, generator=_gen(10), requires_grad=True)
    for iters in (1, 3):
        codes = sinkhorn_knopp(scores, epsilon=0.05, iterations=iters)
        assert not codes.requires_grad
        assert torch.allclose(codes, _sinkhorn_reference(scores, 0.05, iters), atol=1e-10)
        assert torch.allclose(codes.sum(1), torch.ones(12))           # each sample sums to 1
    codes = sinkhorn_knopp(scores, epsilon=0.5, iterations=200)       # converged: both marginals
    assert torch.allclose(codes.sum(0), torch.full((5,), 12 / 5), atol=1e-6)
    assert torch.allclose(codes.sum(1), torch.ones(12), atol=1e-10)


def test_sinkhorn_is_stable_where_exp_overflows():
    scores = 40 * torch.randn(16, 6, generator=_gen(11))              # exp(40 / 0.05) = inf
    assert not bool(torch.isfinite(torch.exp(scores / 0.05)).all())
    for s in (scores, scores.bfloat16(), scores.half()):
        codes = sinkhorn_knopp(s)
        assert codes.dtype in (torch.float32, torch.float64)
        assert bool(torch.isfinite(codes).all())
        assert torch.allclose(codes.sum(1).double(), torch.ones(16), atol=1e-5)


def _swav_reference(scores, num_global, tau, eps, iters, queue=None):
    V, B = len(scores), scores[0].shape[0]
    total = 0.0
    for i in range(num_global):
        s = scores[i].detach()
        if queue is not None:
            s = torch.cat([s, queue[i]])
        q = _sinkhorn_reference(s, eps, iters)[:B]
        sub = 0.0
        for v in range(V):
            if v == i:
                continue
            for b in range(B):
                p = torch.exp(scores[v][b] / tau) / torch.exp(scores[v][b] / tau).sum()
                sub = sub - (q[b] * torch.log(p)).sum() / B
        total = total + sub / (V - 1)
    return total / num_global


@pytest.mark.parametrize("V,num_global", [(2, 2), (5, 2), (3, 1)])
def test_swav_multicrop_matches_reference(V, num_global):
    scores = [_leaf(6, 4, seed=20 + v) for v in range(V)]
    ref = _swav_reference(scores, num_global, 0.1, 0.05, 3)
    out = swav_loss(scores, num_global=num_global, temperature=0.1)
    _close(out, ref, scores)
    assert torch.allclose(SwAVLoss(num_global=num_global)(scores), out)


def test_swav_codes_come_from_global_crops_only_and_queue_rows():
    scores = [_leaf(6, 4, seed=30 + v) for v in range(4)]
    base = swav_loss(scores)
    # changing a small crop's scores changes its predictions only, never the codes: the loss
    # equals the reference whose codes are computed from the global crops
    small = [scores[0], scores[1], scores[2] * 3, scores[3]]
    _close(swav_loss(small), _swav_reference(small, 2, 0.1, 0.05, 3), scores)
    queue = [torch.randn(10, 4, generator=_gen(33)), torch.randn(10, 4, generator=_gen(34))]
    with_q = swav_loss(scores, queue_scores=queue)
    _close(with_q, _swav_reference(scores, 2, 0.1, 0.05, 3, queue=queue), scores)
    assert not torch.allclose(with_q, base)
    codes = [sinkhorn_knopp(scores[0]), sinkhorn_knopp(scores[1])]
    assert torch.allclose(swav_loss(scores, codes=codes), base)


def test_swav_prototypes_normalise_and_score():
    torch.manual_seed(0)
    protos = SwAVPrototypes(8, 5).double()
    with torch.no_grad():
        protos.weight.mul_(3.0)
    protos.normalize_()
    assert torch.allclose(protos.weight.norm(dim=1), torch.ones(5))
    z = torch.randn(4, 8)
    assert torch.allclose(protos(z), F.normalize(z, dim=1) @ protos.weight.t())


# ---------------------------------------------------------------------------------------------
# MoCo / MoCHi
# ---------------------------------------------------------------------------------------------
def _moco_reference(q, k, queue, tau, extra=None, queue_ids=None, ids=None, decoupled=False):
    B = q.shape[0]
    total = 0.0
    for b in range(B):
        pos = _cos(q[b], k[b]) / tau
        terms = [] if decoupled else [pos]
        for j in range(queue.shape[0]):
            if ids is not None and int(ids[b]) >= 0 and int(queue_ids[j]) == int(ids[b]):
                continue
            terms.append(_cos(q[b], queue[j].detach()) / tau)
        if extra is not None:
            terms += [_cos(q[b], h) / tau for h in extra[b]]
        total = total - pos + torch.logsumexp(torch.stack(terms), 0)
    return total / B


@pytest.mark.parametrize("decoupled", [False, True])
def test_moco_loss_with_ids_extra_negatives_matches_reference(decoupled):
    q, k, queue = _leaf(5, 4, seed=40), _leaf(5, 4, seed=41), _leaf(13, 4, seed=42)
    queue_ids = torch.tensor([0, 1, 2, 0, 7, 8, 9, 3, 3, -1, 11, 12, 4])
    ids = torch.tensor([0, 3, 5, 4, -1])
    extra = torch.randn(5, 3, 4, generator=_gen(43))
    ref = _moco_reference(q, k, queue, 0.2, extra, queue_ids, ids, decoupled)
    for bs in (None, 2):
        out = moco_loss(q, k, queue, temperature=0.2, extra_negatives=extra, queue_ids=queue_ids,
                        ids=ids, decoupled=decoupled, block_size=bs)
        _close(out, ref, [q, k, queue])
    g = torch.autograd.grad(moco_loss(q, k, queue), [queue], allow_unused=True)[0]
    assert g is None or torch.count_nonzero(g) == 0                   # queue entries: no grad
    mod = MoCoLoss(0.2, decoupled=decoupled)
    assert torch.allclose(mod(q, k, queue, queue_ids, ids, extra_negatives=extra), ref)


def test_moco_loss_with_ids_of_mixed_entries_excludes_any_match():
    """``queue_ids [Q, K]``: an entry made of K images leaves row b when any of its ids is
    ``ids[b]``; K = 1 is the plain case."""
    q, k, queue = _leaf(4, 3, seed=44), _leaf(4, 3, seed=45), _leaf(6, 3, seed=46)
    two = torch.tensor([[0, 5], [1, 1], [2, 0], [-1, 3], [4, -1], [6, 6]])
    ids = torch.tensor([0, 3, -1, 6])
    total = 0.0
    for b in range(4):
        pos = _cos(q[b], k[b]) / 0.2
        keep = [j for j in range(6) if int(ids[b]) < 0 or int(ids[b]) not in two[j].tolist()]
        terms = [pos] + [_cos(q[b], queue[j].detach()) / 0.2 for j in keep]
        total = total - pos + torch.logsumexp(torch.stack(terms), 0)
    for bs in (None, 2):
        _close(moco_loss(q, k, queue, temperature=0.2, queue_ids=two, ids=ids, block_size=bs),
               total / 4, [q, k, queue])
    torch.testing.assert_close(
        moco_loss(q, k, queue, queue_ids=two[:, :1], ids=ids),
        moco_loss(q, k, queue, queue_ids=two[:, 0], ids=ids))
    with pytest.raises(ValueError, match=r"queue_ids: expected \[6\] ids .* or \[6, K\]"):
        moco_loss(q, k, queue, queue_ids=two[:5], ids=ids)


def test_id_match_pairs_is_exact():
    ids = torch.tensor([3, 0, 9, -1, 3])
    qids = torch.tensor([0, 3, 3, 5, -1, 0, 3])
    got = {tuple(p) for p in id_match_pairs(ids, qids).t().tolist()}
    want = {(b, j) for b in range(5) for j in range(7)
            if int(ids[b]) >= 0 and int(ids[b]) == int(qids[j])}
    assert got == want


def test_mochi_negatives_are_the_specified_convex_mixtures():
    q = _leaf(4, 6, seed=50)
    queue = torch.randn(30, 6, generator=_gen(51))
    queue_ids = torch.arange(30) % 12
    ids = torch.tensor([0, 1, 2, 40])
    neg, info = mochi_negatives(q, queue, num_hard=6, num_mix=20, num_mix_query=9,
                                queue_ids=queue_ids, ids=ids, generator=_gen(52),
                                return_info=True)
    assert neg.shape == (4, 29, 6) and not neg.requires_grad
    n = F.normalize(queue, dim=1)
    qn = F.normalize(q.detach(), dim=1)
    for b in range(4):
        # Q_N(q): the literal top-6 by cosine among the entries of other images
        cand = [j for j in range(30) if int(queue_ids[j]) != int(ids[b])]
        top = sorted(cand, key=lambda j: -float(qn[b] @ n[j]))[:6]
        assert set(info["hard_indices"][b].tolist()) == set(top)
        for s in range(20):
            i, j = info["mix_index"][b, s].tolist()
            a = info["mix_coef"][b, s]
            assert i in top and j in top and 0 <= float(a) < 1
            assert torch.allclose(neg[b, s], F.normalize(a * n[i] + (1 - a) * n[j], dim=0),
                                  atol=1e-12)
        for s in range(9):
            j = int(info["query_index"][b, s])
            c = info["query_coef"][b, s]
            assert j in top and 0 <= float(c) < 0.5
            assert torch.allclose(neg[b, 20 + s], F.normalize(c * qn[b] + (1 - c) * n[j], dim=0),
                                  atol=1e-12)
    # coefficients are drawn per query and per point (not shared across the batch)
    assert len(set(info["mix_coef"].flatten().tolist())) == 80
    again = mochi_negatives(q, queue, num_hard=6, num_mix=20, num_mix_query=9,
                            queue_ids=queue_ids, ids=ids, generator=_gen(52))
    assert torch.equal(again, neg)                                    # reproducible
    with pytest.raises(ValueError, match="queue_ids"):
        mochi_negatives(q, queue[:2], queue_ids=torch.tensor([0, 0]), ids=torch.zeros(4).long())


def test_mochi_loss_is_moco_with_synthetic_negatives_and_grad_only_through_query():
    q, k, queue = _leaf(4, 6, seed=53), _leaf(4, 6, seed=54), torch.randn(25, 6, generator=_gen(55))
    kw = dict(num_hard=8, num_mix=10, num_mix_query=4)
    extra = mochi_negatives(q, queue, generator=_gen(56), **kw)
    ref = _moco_reference(q, k, queue, 0.2, extra)
    out = mochi_loss(q, k, queue, temperature=0.2, generator=_gen(56), **kw)
    _close(out, ref, [q, k])
    mod = MoCHiLoss(0.2, **kw)
    assert torch.allclose(mod(q, k, queue, generator=_gen(56)), ref)
    mod.enabled = False
    assert torch.allclose(mod(q, k, queue), moco_loss(q, k, queue, temperature=0.2))


def test_key_queue_fifo_with_ids():
    torch.manual_seed(0)
    kq = KeyQueue(3, 5, dtype=torch.float64)
    assert kq.num_filled == 0 and bool((kq.ids == -1).all())
    kq.enqueue(torch.randn(3, 3), torch.tensor([1, 2, 3]))
    kq.enqueue(torch.randn(4, 3), torch.tensor([4, 5, 6, 7]))
    assert kq.ids.tolist() == [6, 7, 3, 4, 5] and int(kq.ptr) == 2 and kq.num_filled == 5
    assert torch.allclose(kq.features.norm(dim=1), torch.ones(5))
    with pytest.raises(ValueError, match="keys"):
        kq.enqueue(torch.randn(6, 3))


# ---------------------------------------------------------------------------------------------
# Hardness, uniformity, tolerance
# ---------------------------------------------------------------------------------------------
def _hard_reference(z, n, tau, k=None, frac=None):
    total = 0.0
    for r in range(2 * n):
        p = (r + n) % (2 * n)
        negs = [j for j in range(2 * n) if j not in (r, p)]
        sims = {j: _cos(z[r], z[j]) for j in negs}
        keep = sorted(negs, key=lambda j: -float(sims[j].detach()))
        if k is not None:
            keep = keep[:k]
        elif frac is not None:
            keep = keep[:math.ceil(frac * len(negs))]
        terms = [_cos(z[r], z[p]) / tau] + [sims[j] / tau for j in keep]
        total = total - _cos(z[r], z[p]) / tau + torch.logsumexp(torch.stack(terms), 0)
    return total / (2 * n)


@pytest.mark.parametrize("k,frac", [(1, None), (4, None), (None, 0.3), (None, None)])
def test_hard_infonce_matches_reference(k, frac):
    z1, z2 = _leaf(6, 5, seed=60), _leaf(6, 5, seed=61)
    ref = _hard_reference(torch.cat([z1, z2]), 6, 0.3, k, frac)
    _close(hard_nt_xent(z1, z2, temperature=0.3, top_k=k, keep_fraction=frac), ref, [z1, z2])
    out = hard_infonce_loss(torch.cat([z1, z2]), None, positives=6, temperature=0.3, top_k=k,
                            keep_fraction=frac, block_size=5)
    _close(out, ref, [z1, z2])
    assert torch.allclose(HardInfoNCELoss(0.3, top_k=k, keep_fraction=frac)(z1, z2), ref)


def test_hard_infonce_with_all_negatives_is_infonce_and_cross_candidates():
    z1, z2 = _leaf(6, 5, seed=62), _leaf(6, 5, seed=63)
    _close(hard_nt_xent(z1, z2, temperature=0.5, top_k=100), nt_xent(z1, z2, temperature=0.5),
           [z1, z2])
    a, b = _leaf(5, 4, seed=64), _leaf(9, 4, seed=65)
    ref = 0.0
    for i in range(5):
        negs = sorted([j for j in range(9) if j != i],
                      key=lambda j: -float(_cos(a[i], b[j]).detach()))[:3]
        terms = torch.stack([_cos(a[i], b[i]) / 0.2] + [_cos(a[i], b[j]) / 0.2 for j in negs])
        ref = ref - _cos(a[i], b[i]) / 0.2 + torch.logsumexp(terms, 0)
    _close(hard_infonce_loss(a, b, temperature=0.2, top_k=3), ref / 5, [a, b])


def test_simple_loss_uniformity_alignment_match_reference():
    z1, z2 = _leaf(5, 4, seed=66), _leaf(5, 4, seed=67)
    z = torch.cat([z1, z2])
    ref = 0.0
    for r in range(10):
        p = (r + 5) % 10
        ref = ref - _cos(z[r], z[p]) + 0.1 * sum(_cos(z[r], z[j]) for j in range(10)
                                                  if j not in (r, p))
    _close(simple_contrastive_loss(z1, z2, weight=0.1), ref / 10, [z1, z2])
    u = F.normalize(z, dim=1)
    terms = [torch.exp(-2 * (u[i] - u[j]).pow(2).sum()) for i in range(10) for j in range(10)
             if i != j]
    ref_u = torch.log(sum(terms) / len(terms))
    for bs in (None, 3):
        _close(uniformity_loss(z, t=2.0, block_size=bs), ref_u, [z1, z2])
    assert abs(float(ref_u.detach()) - metrics.uniformity(z.detach())) < 1e-9
    ref_a = sum((F.normalize(z1[i], dim=0) - F.normalize(z2[i], dim=0)).norm() ** 3
                for i in range(5)) / 5
    _close(alignment_loss(z1, z2, alpha=3.0), ref_a, [z1, z2])


def test_tolerance_and_negative_weight_stats_match_reference():
    z = torch.randn(9, 4, generator=_gen(70))
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 3])
    same = [(i, j) for i in range(9) for j in range(9) if i != j and labels[i] == labels[j]]
    vals = [float(_cos(z[i], z[j])) for i, j in same]
    assert abs(tolerance(z, labels) - sum(vals) / len(vals)) < 1e-12
    assert abs(tolerance(z, labels, over="all_pairs") - sum(vals) / 72) < 1e-12
    with pytest.raises(ValueError, match="labels"):
        tolerance(z, torch.arange(9))
    n = 4
    x = torch.randn(2 * n, 3, generator=_gen(71))
    st = negative_weight_stats(x, positives=n, temperature=0.5, block_size=3)
    pos, neg, H = [], [], []
    for r in range(2 * n):
        p = (r + n) % (2 * n)
        pos.append(float(_cos(x[r], x[p])))
        s = torch.stack([_cos(x[r], x[j]) for j in range(2 * n) if j not in (r, p)])
        neg += s.tolist()
        rr = torch.softmax(s / 0.5, 0)
        H.append(float(-(rr * rr.log()).sum()))
    pos_t, neg_t = torch.tensor(pos), torch.tensor(neg)
    assert abs(st["pos_mean"] - float(pos_t.mean())) < 1e-12
    assert abs(st["pos_std"] - float(pos_t.std(unbiased=False))) < 1e-12
    assert abs(st["neg_mean"] - float(neg_t.mean())) < 1e-12
    assert abs(st["neg_std"] - float(neg_t.std(unbiased=False))) < 1e-9
    assert abs(st["neg_entropy"] - sum(H) / len(H)) < 1e-12
    assert abs(st["effective_negatives"] - sum(math.exp(h) for h in H) / len(H)) < 1e-12


# ---------------------------------------------------------------------------------------------
# Multi-view
# ---------------------------------------------------------------------------------------------
def _mv_infonce_reference(z, tau, denominator):
    V, N, _ = z.shape
    total = 0.0
    for i in range(N):
        num = sum(torch.exp(_cos(z[l, i], z[m, i]) / tau) for l in range(V) for m in range(V)
                  if m != l)
        den = 0.0
        for l in range(V):
            for m in range(V):
                for j in range(N):
                    if (j, m) == (i, l) or (denominator == "cross_view" and m == l):
                        continue
                    den = den + torch.exp(_cos(z[l, i], z[m, j]) / tau)
        total = total - torch.log(num / den)
    return total / N


def _mv_dhel_reference(z, tau, variant):
    V, N, _ = z.shape
    total = 0.0
    for i in range(N):
        pairs = (itertools.permutations(range(V), 2) if variant == "paper"
                 else itertools.combinations(range(V), 2))
        num = sum(torch.exp(_cos(z[l, i], z[m, i]) / tau) for l, m in pairs)
        prod = 1.0
        for l in range(V):
            prod = prod * sum(torch.exp(_cos(z[l, i], z[l, j]) / tau) for j in range(N)
                              if j != i or variant == "paper")
        total = total - torch.log(num / prod)
    return total / N


@pytest.mark.parametrize("V", [2, 3])
@pytest.mark.parametrize("denominator", ["all", "cross_view"])
def test_mv_infonce_matches_reference(V, denominator):
    z = _leaf(V, 5, 4, seed=80 + V)
    ref = _mv_infonce_reference(z, 0.5, denominator)
    for bs in (None, 4):
        _close(mv_infonce_loss(z, temperature=0.5, denominator=denominator, block_size=bs),
               ref, [z])
    assert torch.allclose(MVInfoNCELoss(0.5, denominator)(z), ref)


@pytest.mark.parametrize("V", [2, 4])
@pytest.mark.parametrize("variant", ["code", "paper"])
def test_mv_dhel_matches_reference(V, variant):
    z = _leaf(V, 5, 4, seed=90 + V)
    ref = _mv_dhel_reference(z, 0.3, variant)
    for bs in (None, 2):
        _close(mv_dhel_loss(z, temperature=0.3, variant=variant, block_size=bs), ref, [z])
    assert torch.allclose(MVDHELLoss(0.3, variant)(z), ref)


def test_mv_dhel_two_views_is_dhel_and_pwe_two_views_is_nt_xent():
    z = _leaf(2, 6, 3, seed=95)
    ref = 0.0
    for i in range(6):
        ref = ref - _cos(z[0, i], z[1, i]) / 0.2
        for l in range(2):
            ref = ref + torch.logsumexp(torch.stack([_cos(z[l, i], z[l, j]) / 0.2
                                                     for j in range(6) if j != i]), 0)
    _close(mv_dhel_loss(z, temperature=0.2), ref / 6, [z])
    _close(pwe_loss(z, temperature=0.2), nt_xent(z[0], z[1], temperature=0.2), [z])
    z3 = _leaf(3, 4, 3, seed=96)
    pw = (nt_xent(z3[0], z3[1]) + nt_xent(z3[0], z3[2]) + nt_xent(z3[1], z3[2])) / 3
    _close(pwe_loss(z3, temperature=0.5), pw, [z3])


def _baseline_reference(z, tau, kind):
    """AVG / PVC written out: one InfoNCE term per (instance, view), literal exps and logs."""
    V, N, _ = z.shape
    total = 0.0
    for i in range(N):
        for l in range(V):
            u = z[l, i] / z[l, i].norm()

            def others(j):
                return [z[m, j] / z[m, j].norm() for m in range(V) if m != l]

            if kind == "arithmetic":
                crit = [torch.log(sum(torch.exp(u @ w / tau) for w in others(j)) / (V - 1))
                        for j in range(N)]
            else:
                mean = [sum(others(j)) / (V - 1) for j in range(N)]
                crit = [(_cos(u, m) if kind == "avg" else u @ m) / tau for m in mean]
            total = total - torch.log(torch.exp(crit[i]) / sum(torch.exp(c) for c in crit))
    return total / (N * V)


@pytest.mark.parametrize("V", [2, 3, 4])
@pytest.mark.parametrize("kind", ["avg", "arithmetic", "geometric"])
def test_avg_and_pvc_baselines_match_reference(V, kind):
    z = _leaf(V, 5, 4, seed=70 + V)
    ref = _baseline_reference(z, 0.4, kind)
    for bs in (None, 2):
        out = (avg_loss(z, temperature=0.4, block_size=bs) if kind == "avg"
               else pvc_loss(z, temperature=0.4, variant=kind, block_size=bs))
        _close(out, ref, [z])
    per_instance = (avg_loss(z, temperature=0.4, reduction="none") if kind == "avg" else
                    pvc_loss(z, temperature=0.4, variant=kind, reduction="none"))
    assert per_instance.shape == (5,) and torch.allclose(per_instance.mean(), ref)


def test_pvc_two_views_is_nt_xent_cross_view_only():
    """With V = 2 the three baselines are the cross-view InfoNCE of each view (no same-view
    negatives), the same for AVG and both PVC critics."""
    z = _leaf(2, 6, 3, seed=77)
    ref = 0.0
    for l, m in ((0, 1), (1, 0)):
        for i in range(6):
            ref = ref - torch.log_softmax(torch.stack([_cos(z[l, i], z[m, j]) / 0.3
                                                       for j in range(6)]), 0)[i]
    ref = ref / 12
    for out in (avg_loss(z, temperature=0.3), pvc_loss(z, temperature=0.3),
                pvc_loss(z, temperature=0.3, variant="geometric")):
        _close(out, ref, [z])


def _mv_dhel_log_reference(z, tau):
    """``_mv_dhel_reference`` (code variant) with ``-log(num / prod_l S_l)`` written as
    ``-log num + sum_l log S_l``: at tau = 0.01 and V = 6 the product reaches e^600 and its
    square (in the backward of the division) overflows even float64."""
    V, N, _ = z.shape
    total = 0.0
    for i in range(N):
        num = sum(torch.exp(_cos(z[l, i], z[m, i]) / tau)
                  for l, m in itertools.combinations(range(V), 2))
        total = total - torch.log(num)
        for l in range(V):
            total = total + torch.log(sum(torch.exp(_cos(z[l, i], z[l, j]) / tau)
                                          for j in range(N) if j != i))
    return total / N


def test_mv_dhel_large_temperature_product_does_not_overflow_in_float32():
    """e^{cos/0.01} reaches e^100 (> float32 max) and the product of the V = 6 view sums
    e^600: the float32 / bfloat16 results are finite AND equal the float64 literal formulas
    (on the same, rounded inputs), the float32 gradient included."""
    z = torch.randn(6, 64, 8, generator=_gen(97)).float()
    out = mv_dhel_loss(z, temperature=0.01)
    assert torch.isfinite(out)
    assert torch.isfinite(mv_infonce_loss(z.bfloat16(), temperature=0.01))
    zs = z[:, :32].clone().requires_grad_(True)
    out = mv_dhel_loss(zs, temperature=0.01)
    assert out.dtype == torch.float32
    z64 = zs.detach().double().requires_grad_(True)
    ref = _mv_dhel_log_reference(z64, 0.01)
    assert out.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(torch.autograd.grad(out, zs)[0].double(),
                               torch.autograd.grad(ref, z64)[0], rtol=1e-4, atol=1e-4)
    zb = z[:, :32].bfloat16()
    out_b = mv_infonce_loss(zb, temperature=0.01)
    assert torch.isfinite(out_b)
    ref_b = _mv_infonce_reference(zb.double(), 0.01, "all")
    assert out_b.item() == pytest.approx(ref_b.item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# CACR
# ---------------------------------------------------------------------------------------------
def _cacr_reference(z, alpha, beta, tp, tn, conditional, weights_grad, prior=0.0):
    V, M, _ = z.shape
    u = F.normalize(z, dim=-1)

    def c(a, b):
        return (a - b).pow(2).sum()

    def weights(costs, t):
        if not conditional:
            return [1.0 / len(costs)] * len(costs)
        e = [torch.exp(t * x) for x in costs]
        w = [x / sum(e) for x in e]
        return w if weights_grad else [x.detach() for x in w]

    ca = 0.0
    for v in range(V):
        for i in range(M):
            costs = [c(u[v, i], u[m, i]) for m in range(V) if m != v]
            ca = ca + alpha * sum(w * x for w, x in zip(weights(costs, tp), costs))
    ca = ca / (V * M)
    pairs = list(itertools.combinations(range(V), 2))
    cr = 0.0
    for a, b in pairs:
        for i in range(M):
            costs = [c(u[a, i], u[b, j]) for j in range(M) if j != i]
            e = sum(w * x for w, x in zip(weights(costs, -tn), costs))
            if prior:
                e = (e - prior * c(u[a, i], u[b, i])) / (1 - prior)
            cr = cr - beta * e
    cr = cr / (len(pairs) * M)
    return ca + cr, ca, cr


@pytest.mark.parametrize("conditional,weights_grad,prior", [
    (True, True, 0.0), (True, False, 0.0), (False, True, 0.0), (True, True, 0.1)])
def test_cacr_matches_reference(conditional, weights_grad, prior):
    z = _leaf(3, 5, 4, seed=100)
    ref, ref_ca, ref_cr = _cacr_reference(z, 1.0, 0.7, 1.0, 0.9, conditional, weights_grad, prior)
    for bs in (None, 2):
        tot, ca, cr = cacr_loss(z, beta=0.7, neg_temperature=0.9, conditional=conditional,
                                weights_grad=weights_grad, debias_prior=prior,
                                return_parts=True, block_size=bs)
        _close(tot, ref, [z])
        _close(ca, ref_ca, [z])
        _close(cr, ref_cr, [z])
    mod = CACRLoss(beta=0.7, neg_temperature=0.9, conditional=conditional,
                   weights_grad=weights_grad, debias_prior=prior)
    assert torch.allclose(mod(z), ref)


# ---------------------------------------------------------------------------------------------
# Feature transformation
# ---------------------------------------------------------------------------------------------
def test_feature_transformation_formulas_identities_and_draws():
    q, k = _leaf(4, 3, seed=110), _leaf(4, 3, seed=111)
    qh, kh, lam = positive_extrapolation(q, k, lam=1.0)
    assert torch.equal(qh, q) and torch.equal(kh, k)
    qh, kh, _ = positive_extrapolation(q, k, lam=1.5)
    assert torch.allclose(qh, q + 0.5 * (q - k)) and torch.allclose(kh, k + 0.5 * (k - q))
    for gran, shape in (("step", ()), ("sample", (4, 1)), ("element", (4, 3))):
        _, _, lam = positive_extrapolation(q, k, granularity=gran, generator=_gen(1))
        assert lam.shape == shape and bool(((lam >= 1) & (lam <= 2)).all())
    n = torch.randn(6, 3, generator=_gen(112), requires_grad=True)
    nh, lam, perm = negative_interpolation(n, lam=1.0)
    assert torch.equal(nh, n.detach()) and not nh.requires_grad
    perm = torch.tensor([1, 2, 0, 5, 3, 4])
    nh, _, _ = negative_interpolation(n, lam=0.25, permutation=perm)
    assert torch.allclose(nh, 0.25 * n.detach() + 0.75 * n.detach()[perm])
    _, lam1, p1 = negative_interpolation(n, generator=_gen(5))
    _, lam2, p2 = negative_interpolation(n, generator=_gen(5))
    assert torch.equal(lam1, lam2) and torch.equal(p1, p2) and 0 <= float(lam1) <= 1
    with pytest.raises(ValueError, match="lam"):
        positive_extrapolation(q, k, lam=0.5)
    with pytest.raises(ValueError, match="permutation"):
        negative_interpolation(n, permutation=torch.tensor([0, 0, 1, 2, 3, 4]))


@pytest.mark.parametrize("postmix_norm", [False, True])
def test_ft_moco_loss_matches_reference_with_grad_through_k_hat(postmix_norm):
    q, k = _leaf(4, 5, seed=120), _leaf(4, 5, seed=121)
    queue = torch.randn(9, 5, generator=_gen(122))
    g = _gen(7)  # replay ft_moco_loss's draws in order: lambda_p, then (permutation, lambda_n)
    qn, kn, nn_ = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    # only the random coefficients come from the implementation; the mixtures are written out,
    # so a detach inside positive_extrapolation would change the gradients below
    _, _, lam_p = positive_extrapolation(qn.detach(), kn.detach(), generator=g)
    _, lam_n, perm = negative_interpolation(nn_, generator=g)
    assert 1.0 <= float(lam_p) <= 2.0 and 0.0 <= float(lam_n) <= 1.0
    qh, kh = lam_p * qn + (1 - lam_p) * kn, lam_p * kn + (1 - lam_p) * qn
    nh = lam_n * nn_ + (1 - lam_n) * nn_[perm]
    if postmix_norm:
        qh, kh, nh = F.normalize(qh, dim=1), F.normalize(kh, dim=1), F.normalize(nh, dim=1)
    ref = 0.0
    for b in range(4):
        logits = torch.cat([(qh[b] @ kh[b])[None], nh @ qh[b]]) / 0.2
        ref = ref - logits[0] + torch.logsumexp(logits, 0)
    ref = ref / 4
    out = ft_moco_loss(q, k, queue, temperature=0.2, postmix_norm=postmix_norm, generator=_gen(7))
    _close(out, ref, [q, k])
    plain = ft_moco_loss(q, k, queue, extrapolate=False, interpolate=False)
    assert torch.allclose(plain, moco_loss(q, k, queue, temperature=0.2))
    mod = FTMoCoLoss(0.2, postmix_norm=postmix_norm)
    assert torch.allclose(mod(q, k, queue, generator=_gen(7)), ref)
    qids, ids = torch.arange(queue.size(0)), torch.tensor([0, 1, -1, 2])  # own images present
    with_ids = mod(q, k, queue, qids, ids, generator=_gen(7))
    assert torch.allclose(with_ids, ft_moco_loss(q, k, queue, temperature=0.2,
                                                 postmix_norm=postmix_norm, generator=_gen(7),
                                                 queue_ids=qids, ids=ids))
    assert not torch.allclose(with_ids, ref)  # the own-image mixes left the denominators


def test_moco_score_stats_match_reference():
    q, k, n = (torch.randn(*s, generator=_gen(130 + i))
               for i, s in enumerate([(4, 3), (4, 3), (7, 3)]))
    st = moco_score_stats(q, k, n, temperature=0.5, block_size=3)
    pos = (q * k).sum(1)
    neg = q @ n.t()
    assert abs(st["pos_mean"] - float(pos.mean())) < 1e-12
    assert abs(st["pos_var"] - float(pos.var(unbiased=False))) < 1e-12
    assert abs(st["neg_mean"] - float(neg.mean())) < 1e-12
    assert abs(st["neg_var"] - float(neg.var(unbiased=False))) < 1e-10
    assert abs(st["exp_pos_mean"] - float((pos / 0.5).exp().mean())) < 1e-10
    assert abs(st["exp_neg_mean"] - float((neg / 0.5).exp().mean())) < 1e-10


# ---------------------------------------------------------------------------------------------
# AMCL
# ---------------------------------------------------------------------------------------------
def _omega(t, d):
    return d / 2 * torch.log(t) + 1 / t


def _amcl_reg(t, d, beta, regularizer):
    if regularizer == "table":                     # beta * Omega, Omega = d/2 log t + 1/t
        return beta * _omega(t, d)
    return 1 / t + beta * d / 2 * torch.log(t)     # Gaussian NLL: 1/t + beta d/2 log t


def _amcl_reference(z1, z2, tnet, beta, smooth, regularizer="symmetric"):
    C, M, D = z1.shape
    sign = 1.0 if regularizer == "symmetric" else -1.0
    total = 0.0
    for c in range(C):
        u1, u2 = F.normalize(z1[c], dim=1), F.normalize(z2[c], dim=1)
        for a, b in ((u1, u2), (u2, u1)):
            for i in range(M):
                tp = tnet(a[i][None], b[i][None])[0]
                negs = [b[j] for j in range(M) if j != i] + [a[j] for j in range(M) if j != i]
                l = -(a[i] @ b[i]) / tp + _amcl_reg(tp, D, beta, regularizer)
                if smooth:
                    ts = [tnet(a[i][None], n[None])[0] for n in negs]
                    logits = torch.stack([(a[i] @ n) / t for n, t in zip(negs, ts)])
                    share = torch.softmax(logits, 0).detach()
                    l = l + torch.logsumexp(logits, 0) + sign * sum(
                        s * _amcl_reg(t, D, beta, regularizer) for s, t in zip(share, ts))
                else:
                    hard = max(negs, key=lambda n: float((a[i] @ n).detach()))
                    tn = tnet(a[i][None], hard[None])[0]
                    l = l + (a[i] @ hard) / tn + sign * _amcl_reg(tn, D, beta, regularizer)
                total = total + l
    return total / (2 * M)


@pytest.mark.parametrize("regularizer", ["symmetric", "gaussian", "table"])
@pytest.mark.parametrize("smooth", [False, True])
def test_amcl_matches_reference_incl_temperature_network_grads(smooth, regularizer):
    torch.manual_seed(3)
    tnet = AdaptiveTemperature(dim=4, hidden=8, tau_min=0.05, tau_max=2.0).double()
    z1, z2 = _leaf(2, 5, 4, seed=140), _leaf(2, 5, 4, seed=141)
    ref = _amcl_reference(z1, z2, tnet, 0.1, smooth, regularizer)
    out = amcl_loss(z1, z2, tnet, beta=0.1, smooth=smooth, regularizer=regularizer,
                    block_size=2)
    _close(out, ref, [z1, z2, *tnet.parameters()])
    loss_mod = AMCLLoss(dim=4, beta=0.1, hidden=8, tau_min=0.05, smooth=smooth,
                        regularizer=regularizer).double()
    loss_mod.temperature.load_state_dict(tnet.state_dict())
    assert torch.allclose(loss_mod(z1, z2), ref)


def test_amcl_regularizer_formula_and_detached_temperature_input():
    # default ("symmetric"): each temperature sees a Gaussian NLL with an interior minimum
    # tau* = (1 -/+ s) / (beta d/2); the spec's table form beta*Omega is the named option.
    t = torch.tensor([0.05, 0.3, 1.7], dtype=torch.float64)
    assert torch.allclose(amcl_regularizer(t, 8), 4 * torch.log(t) + 1 / t)
    tnet = AdaptiveTemperature(dim=4, hidden=8, tau_min=0.05).double()
    z1, z2 = _leaf(2, 5, 4, seed=150), _leaf(2, 5, 4, seed=151)
    a = amcl_loss(z1, z2, tnet, smooth=True)
    b = amcl_loss(z1, z2, tnet, smooth=True, detach_input=True)
    assert torch.allclose(a, b)
    # detach_input: the heads get gradient only through the similarities, phi gets it all
    ref = _amcl_reference(z1, z2, lambda x, y: tnet(x.detach(), y.detach()), 0.1, True)
    _close(b, ref, [z1, z2, *tnet.parameters()])
    pw = tnet.pairwise(z1[0], z2[0])
    dense = tnet(z1[0][:, None].expand(5, 5, 4), z2[0][None].expand(5, 5, 4))
    assert torch.allclose(pw, dense)


def test_amcl_fixed_temperature_and_heads():
    z1, z2 = _leaf(5, 4, seed=142), _leaf(5, 4, seed=143)
    out = amcl_loss(z1, z2, 0.5)                                      # one head, fixed tau
    ref = 0.0
    for a, b in ((F.normalize(z1, dim=1), F.normalize(z2, dim=1)),
                 (F.normalize(z2, dim=1), F.normalize(z1, dim=1))):
        for i in range(5):
            negs = [b[j] for j in range(5) if j != i] + [a[j] for j in range(5) if j != i]
            hard = max(negs, key=lambda n: float((a[i] @ n).detach()))
            ref = ref - a[i] @ b[i] / 0.5 + a[i] @ hard / 0.5
    _close(out, ref / 10, [z1, z2])
    torch.manual_seed(0)
    heads = MultiHeadProjector(6, 8, 4, num_heads=3).double()
    h = heads(torch.randn(7, 6))
    assert h.shape == (3, 7, 4) and not torch.allclose(h[0], h[1])


def _train_amcl_toy(regularizer, steps=150):
    """Free head outputs of 16 samples (2 heads, d' = 16) + a temperature network, Adam."""
    torch.manual_seed(0)
    base = torch.randn(16, 16)
    z = torch.nn.Parameter(torch.stack([base, base + 0.3 * torch.randn(16, 16)], 0)[:, None]
                           .repeat(1, 2, 1, 1))                          # [2 views, C, M, D]
    tnet = AdaptiveTemperature(dim=16, hidden=16, tau_min=0.02, tau_max=2.0)
    opt = torch.optim.Adam([z, *tnet.parameters()], lr=0.02)
    for _ in range(steps):
        loss = amcl_loss(z[0], z[1], tnet, beta=0.1, smooth=True, regularizer=regularizer)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        u1, u2 = F.normalize(z[0, 0], dim=1), F.normalize(z[1, 0], dim=1)
        tau = tnet.pairwise(u1, torch.cat([u2, u1], 0))
    return float(loss.detach()), tau


def test_amcl_temperatures_do_not_pin_and_loss_is_bounded():
    # regression (Fashion-MNIST collapse, loss ~ -62): with the spec-table regulariser
    # beta * Omega the positive term (beta - s)/tau + beta d'/2 log tau decreases as tau -> 0
    # whenever s > beta, so (almost) every temperature pins to tau_min and the loss falls to the
    # floor the bounds allow. The Gaussian form keeps most temperatures off tau_min (a positive
    # pair with s -> 1 legitimately sits there: tau* = (1 - s) / (beta d'/2)).
    loss, tau = _train_amcl_toy("symmetric")
    at_min = (tau < 0.021).float().mean()
    assert at_min < 0.2, f"{at_min:.2f} of the temperatures pinned to tau_min"
    # floor of the symmetric form per head and anchor (both terms at their minimum over tau):
    # (1 - s)/tau + b log tau >= b log tau_min and (1 + s')/tau + b log tau >= b log tau_min
    b = 0.1 * 16 / 2
    assert loss > 2 * 2 * b * math.log(0.02)
    loss_t, tau_t = _train_amcl_toy("table")
    assert (tau_t < 0.021).float().mean() > 0.9 and loss_t < -50  # the test can fail


# ---------------------------------------------------------------------------------------------
# Precision
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,fn", [
    ("dclw", lambda z: dclw_loss(z[0], z[1], temperature=0.02)),
    ("mv_infonce", lambda z: mv_infonce_loss(z, temperature=0.02)),
    ("mv_dhel", lambda z: mv_dhel_loss(z, temperature=0.02)),
    ("cacr", lambda z: cacr_loss(z, pos_temperature=5.0, neg_temperature=5.0)),
    ("hard", lambda z: hard_nt_xent(z[0], z[1], temperature=0.02, top_k=4)),
    ("moco", lambda z: moco_loss(z[0], z[1], z[2], temperature=0.02)),
    ("swav", lambda z: swav_loss([z[0], z[1]], epsilon=0.01)),  # unit rows as prototype scores
    ("amcl", lambda z: amcl_loss(z[:2], z[1:], 0.02)),
])
def test_float32_and_bfloat16_agree_with_float64_at_small_temperature(name, fn):
    z = F.normalize(torch.randn(3, 16, 8, generator=_gen(150)), dim=-1)
    want = float(fn(z))
    got32 = fn(z.float())
    assert got32.dtype == torch.float32
    assert abs(float(got32) - want) < 1e-4 * max(1.0, abs(want)), (float(got32), want)
    got16 = fn(z.bfloat16())                # computed in float32 from the rounded inputs
    want16 = float(fn(z.bfloat16().double()))
    assert got16.dtype == torch.float32
    assert abs(float(got16) - want16) < 1e-4 * max(1.0, abs(want16)), (float(got16), want16)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call,match", [
    (lambda: dclw_loss(torch.randn(4, 3), torch.randn(5, 3)), "z1 and z2"),
    (lambda: dclw_loss(torch.randn(4, 3), torch.randn(4, 3), sigma=0), "sigma"),
    (lambda: dclw_loss(torch.randn(1, 3), torch.randn(1, 3)), "z1"),
    (lambda: sinkhorn_knopp(torch.randn(4)), "scores"),
    (lambda: sinkhorn_knopp(torch.randn(4, 3), epsilon=-1), "epsilon"),
    (lambda: sinkhorn_knopp(torch.randn(4, 3), iterations=0), "iterations"),
    (lambda: sinkhorn_knopp(torch.full((4, 3), float("nan"))), "scores"),
    (lambda: swav_loss(torch.randn(4, 3)), "scores"),
    (lambda: swav_loss([torch.randn(4, 3)]), "scores"),
    (lambda: swav_loss([torch.randn(4, 3), torch.randn(5, 3)]), r"scores\[1\]"),
    (lambda: swav_loss([torch.randn(4, 3)] * 2, num_global=3), "num_global"),
    (lambda: swav_loss([torch.randn(4, 3)] * 2, queue_scores=[None]), "queue_scores"),
    (lambda: moco_loss(torch.randn(4, 3), torch.randn(4, 2), torch.randn(5, 3)), "key"),
    (lambda: moco_loss(torch.randn(4, 3), torch.randn(4, 3), torch.randn(0, 3)), "queue"),
    (lambda: moco_loss(torch.randn(4, 3), torch.randn(4, 3), torch.randn(5, 3),
                       ids=torch.arange(4)), "queue_ids and ids"),
    (lambda: moco_loss(torch.randn(4, 3), torch.randn(4, 3), torch.randn(5, 3),
                       queue_ids=torch.arange(4), ids=torch.arange(4)), "queue_ids"),
    (lambda: moco_loss(torch.randn(4, 3), torch.randn(4, 3), torch.randn(5, 3),
                       temperature=0.0), "temperature"),
    (lambda: moco_loss(torch.randn(4, 3), torch.randn(4, 3), torch.randn(5, 3),
                       extra_negatives=torch.randn(3, 2, 3)), "extra_negatives"),
    (lambda: mochi_negatives(torch.randn(4, 3), torch.randn(5, 3), num_hard=0), "num_hard"),
    (lambda: mochi_negatives(torch.randn(4, 3), torch.randn(5, 3), num_mix=1.5), "num_mix"),
    (lambda: mochi_negatives(torch.randn(4, 3), torch.randn(5, 3), query_max=0.7 + 1),
     "query_max"),
    (lambda: hard_nt_xent(torch.randn(4, 3), torch.randn(4, 3), top_k=0), "top_k"),
    (lambda: hard_nt_xent(torch.randn(4, 3), torch.randn(4, 3), keep_fraction=1.5),
     "keep_fraction"),
    (lambda: hard_nt_xent(torch.randn(4, 3), torch.randn(4, 3), top_k=2, keep_fraction=0.5),
     "top_k and keep_fraction"),
    (lambda: hard_infonce_loss(torch.randn(4, 3), positives=torch.arange(4), top_k=2),
     "positives"),
    (lambda: uniformity_loss(torch.randn(1, 3)), r"^z: expected at least 2 rows"),
    (lambda: uniformity_loss(torch.randn(4, 3), t=0), r"^t: expected a positive"),
    (lambda: tolerance(torch.randn(4, 3), torch.zeros(3).long()), "labels"),
    (lambda: tolerance(torch.randn(4, 3), torch.zeros(4)), "labels"),
    (lambda: mv_infonce_loss(torch.randn(4, 3)), r"^z: expected a 3-D tensor"),
    (lambda: mv_infonce_loss(torch.randn(1, 4, 3)), "V >= 2"),
    (lambda: mv_infonce_loss(torch.randn(2, 4, 3), denominator="paper"), "denominator"),
    (lambda: pvc_loss(torch.randn(2, 4, 3), variant="harmonic"), "variant"),
    (lambda: avg_loss(torch.randn(4, 3)), r"^z: expected a 3-D tensor"),
    (lambda: mv_dhel_loss(torch.randn(2, 4, 3), variant="x"), "variant"),
    (lambda: mv_dhel_loss(torch.randn(2, 4, 3), temperature=-1.0), "temperature"),
    (lambda: cacr_loss(torch.randn(1, 4, 3)), r"^z: expected \[V, M, D\] with V >= 2"),
    (lambda: cacr_loss(torch.randn(2, 4, 3), neg_temperature=-1), "neg_temperature"),
    (lambda: cacr_loss(torch.randn(2, 4, 3), debias_prior=1.0), "debias_prior"),
    (lambda: positive_extrapolation(torch.randn(4, 3), torch.randn(4, 3), granularity="x"),
     "granularity"),
    (lambda: positive_extrapolation(torch.randn(4, 3), torch.randn(4, 3), alpha=0), "alpha"),
    (lambda: ft_moco_loss(torch.randn(4, 3), torch.randn(4, 3), torch.randn(5, 3),
                          temperature=-1), "temperature"),
    (lambda: amcl_loss(torch.randn(4, 3), torch.randn(4, 3), "hot"), "temperature"),
    (lambda: amcl_loss(torch.randn(4, 3), torch.randn(5, 3), 0.5), "z1 and z2"),
    (lambda: AdaptiveTemperature(4, tau_min=1.0, tau_max=0.5), "tau_max"),
    (lambda: AdaptiveTemperature(4)(torch.randn(2, 3), torch.randn(2, 3)), "za, zb"),
    (lambda: KeyQueue(3, 0), "size"),
])
def test_bad_input_raises_naming_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_pwe_loss_matches_literal_reference():
    """PWE written out (the existing check compares it with ``nt_xent``, the code it calls):
    mean over view pairs (l < m) of the symmetric NT-Xent, 2N - 1 denominator terms per anchor."""
    z = _leaf(3, 4, 5, seed=98)
    tau = 0.4
    pairs = list(itertools.combinations(range(3), 2))
    ref = 0.0
    for l, m in pairs:
        x = torch.cat([z[l], z[m]])
        term = 0.0
        for r in range(8):
            p = (r + 4) % 8
            den = sum(torch.exp(_cos(x[r], x[j]) / tau) for j in range(8) if j != r)
            term = term - torch.log(torch.exp(_cos(x[r], x[p]) / tau) / den)
        ref = ref + term / 8
    ref = ref / len(pairs)
    out = pwe_loss(z, temperature=tau)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(torch.autograd.grad(out, z)[0], torch.autograd.grad(ref, z)[0],
                               rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# Bad input that used to pass silently (NaN through, wrong shapes, empty queues)
# ---------------------------------------------------------------------------------------------
def _with_nan(t, index=(0, 0)):
    t = t.clone()
    t[index] = float("nan")
    return t


@pytest.mark.parametrize("kw", [dict(top_k=2), dict(keep_fraction=0.5), {}])
def test_hard_infonce_rejects_non_finite_embeddings_like_the_engine(kw):
    a, b = torch.randn(5, 3, generator=_gen(200)), torch.randn(5, 3, generator=_gen(201))
    assert torch.isfinite(hard_infonce_loss(a, b, **kw))
    with pytest.raises(ValueError, match="anchors: expected finite values, got 1 NaN"):
        hard_infonce_loss(_with_nan(a), b, **kw)         # top_k / keep_fraction: was NaN
    with pytest.raises(ValueError, match="candidates: expected finite values, got 0 NaN and 3"):
        hard_infonce_loss(a, b.index_fill(0, torch.tensor([2]), float("inf")), **kw)
    with pytest.raises(ValueError, match="anchors: expected finite"):
        hard_nt_xent(_with_nan(a), b, **kw)
    with pytest.raises(ValueError, match="positives: 'aligned' pairs anchor i with candidate i"):
        hard_infonce_loss(a, None, **kw)                 # was a silent 0 with top_k


def test_swav_checks_every_crop_and_the_codes():
    scores = [torch.randn(6, 4, generator=_gen(210 + v)) for v in range(4)]
    codes = [sinkhorn_knopp(scores[0]), sinkhorn_knopp(scores[1])]
    assert torch.isfinite(swav_loss(scores, codes=codes))
    small_nan = scores[:3] + [_with_nan(scores[3])]      # a small crop only predicts: was NaN
    with pytest.raises(ValueError, match=r"scores\[3\]: expected finite values"):
        swav_loss(small_nan)
    with pytest.raises(ValueError, match=r"scores\[0\]: expected finite values"):
        swav_loss([_with_nan(scores[0])] + scores[1:], codes=codes)  # codes skip Sinkhorn
    with pytest.raises(ValueError, match=r"scores\[0\]: expected at least one row"):
        swav_loss([torch.zeros(0, 4)] * 2, codes=[torch.zeros(0, 4)] * 2)
    with pytest.raises(ValueError, match=r"codes\[1\]: expected finite, non-negative weights"):
        swav_loss(scores, codes=[codes[0], _with_nan(codes[1])])
    with pytest.raises(ValueError, match=r"codes\[0\]: expected finite, non-negative"):
        swav_loss(scores, codes=[-codes[0], codes[1]])
    with pytest.raises(ValueError, match=r"codes\[1\]: expected shape \(6, 4\)"):
        swav_loss(scores, codes=[codes[0], codes[1][:5]])
    with pytest.raises(TypeError, match="codes: expected a list of 2 entries"):
        swav_loss(scores, codes=torch.stack(codes))
    with pytest.raises(ValueError, match="codes: expected 2 entries"):
        swav_loss(scores, codes=codes[:1])
    with pytest.raises(TypeError, match="queue_scores: expected a list"):
        swav_loss(scores, queue_scores=torch.randn(2, 4))
    with pytest.raises(ValueError, match="queue_scores and codes: expected at most one"):
        swav_loss(scores, codes=codes, queue_scores=[None, None])
    with pytest.raises(ValueError, match=r"queue_scores\[1\]: expected finite"):
        swav_loss(scores, queue_scores=[None, _with_nan(torch.randn(3, 4))])
    with pytest.raises(ValueError, match=r"scores\[2\]: expected shape \(6, 4\)"):
        swav_loss(scores[:2] + [torch.randn(6, 5)], num_global=2)


def test_amcl_checks_the_output_of_a_temperature_callable():
    z1, z2 = torch.randn(6, 4, generator=_gen(220)), torch.randn(6, 4, generator=_gen(221))
    good = lambda a, b: torch.full(a.shape[:-1], 0.5)  # noqa: E731
    for smooth in (False, True):
        assert torch.isfinite(amcl_loss(z1, z2, good, smooth=smooth))
    cases = [
        (lambda a, b: torch.full(a.shape[:-1], float("nan")), ValueError, "1? ?NaN|NaN"),
        (lambda a, b: torch.full(a.shape[:-1], -0.5), ValueError, "non-positive"),
        (lambda a, b: torch.zeros(a.shape[:-1]), ValueError, "positive, finite"),
        (lambda a, b: torch.full(a.shape[:-1], float("inf")), ValueError, "infinite"),
        (lambda a, b: torch.full((a.shape[0], 1), 0.5), ValueError, r"shape \[6\]"),
        (lambda a, b: 0.5, TypeError, "floating-point tensor"),
        (lambda a, b: torch.ones(a.shape[:-1], dtype=torch.long), TypeError, "torch.int64"),
    ]
    for fn, exc, match in cases:
        for smooth in (False, True):
            with pytest.raises(exc, match="temperature: expected the callable"):
                amcl_loss(z1, z2, fn, smooth=smooth)
            with pytest.raises(exc, match=match):
                amcl_loss(z1, z2, fn, smooth=smooth, detach_input=True)

    class WithPairwise:
        def __call__(self, a, b):
            return torch.full(a.shape[:-1], 0.5)

        def pairwise(self, a, b):
            return torch.full((a.size(0), b.size(0) - 1), 0.5)

    with pytest.raises(ValueError, match=r"pairwise\(za, zb\) output to return shape \[6, 12\]"):
        amcl_loss(z1, z2, WithPairwise(), smooth=True)
    # AdaptiveTemperature (pairwise included) still passes through unchanged
    net = AdaptiveTemperature(4, 8)
    assert torch.isfinite(amcl_loss(z1, z2, net, smooth=True))


def test_moco_parts_reject_nan_and_empty_queues():
    q, k, queue = (torch.randn(4, 3, generator=_gen(230)), torch.randn(4, 3, generator=_gen(231)),
                   torch.randn(7, 3, generator=_gen(232)))
    extra = torch.randn(4, 2, 3, generator=_gen(233))
    assert torch.isfinite(moco_loss(q, k, queue, extra_negatives=extra))
    with pytest.raises(ValueError, match="extra_negatives: expected finite values, got 1 NaN"):
        moco_loss(q, k, queue, extra_negatives=_with_nan(extra, (1, 0, 2)))
    kq = KeyQueue(3, 5)
    with pytest.raises(ValueError, match="keys: expected finite values"):
        kq.enqueue(_with_nan(k))                          # was written, poisoning the queue
    assert kq.num_filled == 0 and bool(torch.isfinite(kq.features).all())
    with pytest.raises(ValueError, match="keys: expected at least one row"):
        kq.enqueue(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="queue: expected a non-empty"):
        moco_loss(q, k, kq.filled()[0])                   # nothing enqueued yet
    with pytest.raises(ValueError, match="queue: expected finite values"):
        negative_interpolation(_with_nan(queue), lam=0.5)
    with pytest.raises(ValueError, match="queue: expected at least one row"):
        negative_interpolation(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="queue: expected at least one row"):
        ft_moco_loss(q, k, torch.zeros(0, 3))
    with pytest.raises(ValueError, match="queue: expected finite values"):
        ft_moco_loss(q, k, _with_nan(queue))
    with pytest.raises(ValueError, match="queue_ids: expected 7 ids"):
        ft_moco_loss(q, k, queue, queue_ids=torch.arange(5), ids=torch.arange(4))
    with pytest.raises(ValueError, match="queue: expected finite values"):
        moco_score_stats(q, k, _with_nan(queue))


@pytest.mark.parametrize("conditional", [True, False])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_cacr_rejects_non_finite_embeddings_in_every_mode(conditional, bad):
    z = torch.randn(2, 4, 3, generator=_gen(240))
    assert torch.isfinite(cacr_loss(z, conditional=conditional))
    z[1, 2, 0] = bad
    # conditional=False never reached the engine's check: the loss was NaN
    with pytest.raises(ValueError, match=r"^z: expected finite values"):
        cacr_loss(z, conditional=conditional)
    with pytest.raises(ValueError, match=r"^z: expected finite values"):
        cacr_loss(z, neg_temperature=0.0)


def test_negative_weight_stats_checks_its_inputs():
    a, b = torch.randn(5, 3, generator=_gen(250)), torch.randn(6, 3, generator=_gen(251))
    st = negative_weight_stats(a, b)
    assert all(math.isfinite(v) for v in st.values())
    with pytest.raises(ValueError, match="candidates: expected feature size 3"):
        negative_weight_stats(a, torch.randn(6, 4))
    with pytest.raises(ValueError, match="candidates: expected finite values"):
        negative_weight_stats(a, _with_nan(b))
    with pytest.raises(ValueError, match="candidates: expected at least one row"):
        negative_weight_stats(a, torch.zeros(0, 3))
    with pytest.raises(TypeError, match="candidates: expected a floating-point"):
        negative_weight_stats(a, torch.ones(6, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="positives: 'aligned' pairs anchor i with candidate i"):
        negative_weight_stats(a)                     # every positive is the excluded self pair
    with pytest.raises(ValueError, match="positives: 'aligned' .* 5 anchors and 4 candidates"):
        negative_weight_stats(a, b[:4])              # anchor 4 would wrap to candidate 0
    with pytest.raises(ValueError, match="temperature"):
        negative_weight_stats(a, b, temperature=float("nan"))
