"""TS2Vec: crops, training-data preparation, causal encoding, ridge / SVM protocols, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import require_dataset
from contrastkit.registry import get_method
from contrastkit.seqcl import ts2vec as T
from contrastkit.seqcl.hierarchical import TSEncoder


def test_config_validation_and_registry():
    cfg = T.TS2VecConfig()
    assert (cfg.output_dims, cfg.hidden_dims, cfg.depth, cfg.lr, cfg.batch_size,
            cfg.max_train_length) == (320, 64, 10, 1e-3, 8, 3000)
    for bad in ({"lr": 0}, {"alpha": 1.5}, {"batch_size": 0}, {"iters": 0},
                {"mask_mode": "zeros"}, {"pred_lens": (0,)}):
        with pytest.raises(ValueError, match=rf"^{next(iter(bad))}:"):
            T.TS2VecConfig(**bad)
    assert T.default_iters(100_000) == 200 and T.default_iters(100_001) == 600
    spec = get_method("ts2vec")
    assert spec.config_cls is T.TS2VecConfig and spec.default_dataset == "etth1"


def test_crops_share_the_overlap():
    torch.manual_seed(0)
    x = torch.arange(50.0)[None, :, None].repeat(6, 1, 1) + 100 * torch.arange(6.0)[:, None, None]
    for _ in range(50):
        v1, v2, crop_l = T.take_crops(x)
        assert crop_l >= 2
        torch.testing.assert_close(v1[:, -crop_l:], v2[:, :crop_l])
        # each row stays inside its own series (no wrap-around)
        assert ((v1 // 100) == torch.arange(6.0)[:, None, None]).all()
    with pytest.raises(ValueError, match="time steps"):
        T.take_crops(x[:, :3], temporal_unit=1)


def test_prepare_train_data_sections_and_nan():
    x = np.arange(7000, dtype=np.float32).reshape(1, 7000, 1)
    out = T.prepare_train_data(x, 3000)
    assert out.shape == (2, 3500, 1)
    y = np.full((3, 10, 2), np.nan, dtype=np.float32)
    y[0, :4] = 1.0  # valid prefix -> centred
    y[2] = 2.0
    out = T.prepare_train_data(y, 3000)
    assert out.shape == (2, 10, 2)  # the all-NaN instance is dropped
    assert np.isnan(out[0, 0]).all() and not np.isnan(out[0, 3:7]).any()


def test_causal_encoding_ignores_the_future():
    torch.manual_seed(0)
    enc = TSEncoder(3, 16, 8, depth=3)
    x = torch.randn(2, 120, 3)
    r = T.encode_causal(enc, x, padding=30, batch_size=37)
    x2 = x.clone()
    x2[:, 80:] = torch.randn(2, 40, 3) * 5
    r2 = T.encode_causal(enc, x2, padding=30, batch_size=64)
    assert r.shape == (2, 120, 16)
    torch.testing.assert_close(r[:, :80], r2[:, :80])
    assert (r[:, 80:] - r2[:, 80:]).abs().amax() > 1e-3
    # row t is the last output on the window x[t-30 .. t] (NaN-padded before the start)
    enc.eval()
    with torch.no_grad():
        w = enc(x[:1, 50 - 30:51], "all_true")[0, -1]
        w0 = enc(torch.cat([torch.full((1, 25, 3), float("nan")), x[:1, :6]], 1), "all_true")
    torch.testing.assert_close(r[0, 50], w)
    torch.testing.assert_close(r[0, 5], w0[0, -1])


def test_pred_samples_against_loop():
    rng = np.random.default_rng(0)
    feats, tg = rng.normal(size=(2, 30, 4)), rng.normal(size=(2, 30, 3))
    x, y = T.pred_samples(feats, tg, 5, drop=3)
    rows_x, rows_y = [], []
    for i in range(2):
        for t in range(3, 30 - 5):
            rows_x.append(feats[i, t])
            rows_y.append(tg[i, t + 1:t + 6].reshape(-1))
    np.testing.assert_array_equal(x, np.array(rows_x))
    np.testing.assert_array_equal(y, np.array(rows_y))
    with pytest.raises(ValueError, match="horizon"):
        T.pred_samples(feats, tg, 28, drop=3)


def test_fit_ridge_matches_sklearn_reference():
    from sklearn.linear_model import Ridge
    rng = np.random.default_rng(1)
    w_true = rng.normal(size=(6, 4))
    xtr, xva = rng.normal(size=(80, 6)), rng.normal(size=(40, 6))
    ytr = xtr @ w_true + 3 + rng.normal(size=(80, 4)) * 2
    yva = xva @ w_true + 3 + rng.normal(size=(40, 4)) * 2
    w, b, alpha = T.fit_ridge(xtr, ytr, xva, yva)
    # slow reference: TS2Vec's loop over sklearn Ridge fits
    scores = []
    for a in T.RIDGE_ALPHAS:
        p = Ridge(alpha=a).fit(xtr, ytr).predict(xva)
        scores.append(np.sqrt(((p - yva) ** 2).mean()) + np.abs(p - yva).mean())
    a_ref = T.RIDGE_ALPHAS[int(np.argmin(scores))]
    ref = Ridge(alpha=a_ref).fit(xtr, ytr)
    assert alpha == a_ref
    np.testing.assert_allclose(w, ref.coef_.T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(b, ref.intercept_, rtol=1e-8, atol=1e-10)


def test_eval_forecasting_on_toy_series():
    """A perfect representation (the future itself) gives ~zero error; mse is per horizon."""
    from types import SimpleNamespace
    t = np.arange(400)
    y = np.sin(t / 5.0)[None, :, None]
    reprs = np.stack([np.sin(t / 5.0), np.cos(t / 5.0)], -1)[None]  # spans every future value
    data = SimpleNamespace(data=y, targets=y, train_slice=slice(0, 240),
                           valid_slice=slice(240, 320), test_slice=slice(320, 400),
                           pred_lens=(4, 8))
    m = T.eval_forecasting(None, data, padding=10, reprs=torch.tensor(reprs))
    assert m["mse@4"] < 1e-3 and m["mse@8"] < 1e-3 and set(m) >= {"mse", "mae", "mae@8"}
    lv = T.last_value_metrics(data)
    assert lv["mse@8"] > lv["mse@4"] > 0.01


def test_eval_forecasting_valid_error_is_the_selected_forecaster_on_valid_rows():
    """``valid_mse@H`` / ``valid_mae@H``: the forecaster refit at the chosen alpha (sklearn Ridge
    as the independent reference), scored on the validation rows; the means average horizons."""
    from types import SimpleNamespace
    from sklearn.linear_model import Ridge
    rng = np.random.default_rng(0)
    t = np.arange(300)
    y = (np.sin(t / 7.0) + 0.3 * rng.normal(size=300))[None, :, None]
    reprs = rng.normal(size=(1, 300, 6)) + y
    data = SimpleNamespace(data=y, targets=y, train_slice=slice(0, 180),
                           valid_slice=slice(180, 240), test_slice=slice(240, 300),
                           pred_lens=(3, 5))
    m = T.eval_forecasting(None, data, padding=10, reprs=torch.tensor(reprs))
    for h in (3, 5):
        xtr, ytr = T.pred_samples(reprs[:, :180], y[:, :180], h, drop=10)
        xva, yva = T.pred_samples(reprs[:, 180:240], y[:, 180:240], h)
        err = Ridge(alpha=m[f"alpha@{h}"]).fit(xtr, ytr).predict(xva) - yva
        assert m[f"valid_mse@{h}"] == pytest.approx(float((err ** 2).mean()), rel=1e-6)
        assert m[f"valid_mae@{h}"] == pytest.approx(float(np.abs(err).mean()), rel=1e-6)
    assert m["valid_mse"] == pytest.approx((m["valid_mse@3"] + m["valid_mse@5"]) / 2)
    assert m["valid_mse"] != pytest.approx(m["mse"])  # not the test error under another name


def test_svm_protocol_separable():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 1, (60, 5)), rng.normal(4, 1, (60, 5))])
    y = np.repeat([0, 1], 60)
    m = T.eval_classification(z[::2], y[::2], z[1::2], y[1::2])
    assert m["acc"] > 0.95 and m["auprc"] > 0.95
    small = T.eval_classification(z[::12], y[::12], z[1::2], y[1::2])  # C = inf path
    assert small["acc"] > 0.9


def test_swa_average_counts_every_step():
    torch.manual_seed(0)
    cfg = T.TS2VecConfig(output_dims=8, hidden_dims=8, depth=1, iters=5, batch_size=4)
    x = np.random.default_rng(0).normal(size=(8, 40, 2)).astype(np.float32)
    method, trainer = T.fit(cfg, x, seed=0)
    assert trainer.stats["steps"] == 5 and int(method.swa_count) == 5
    enc = method.downstream_encoder()
    assert enc is method.swa_encoder
    z = method.embed(torch.from_numpy(x))
    assert z.shape == (8, 8) and torch.isfinite(z).all()


def _heldout_loss(encoder, x, reps: int = 10) -> float:
    """Mean hierarchical loss over fixed random crops of ``x`` (eval mode, no mask)."""
    from contrastkit.seqcl.hierarchical import hierarchical_contrastive_loss
    encoder.eval()
    state = torch.get_rng_state()
    torch.manual_seed(123)
    total = 0.0
    with torch.no_grad():
        for _ in range(reps):
            v1, v2, crop_l = T.take_crops(x)
            total += float(hierarchical_contrastive_loss(encoder(v1, "all_true")[:, -crop_l:],
                                                         encoder(v2, "all_true")[:, :crop_l]))
    torch.set_rng_state(state)
    return total / reps


def test_etth1_univariate_heldout_loss_falls_and_forecast_protocol():
    """Small TS2Vec on ETTh1 univariate (60 steps, ~20 s + ~20 s encoding).

    Learning is asserted on the objective only: the contrastive loss on held-out crops of the
    *validation* slice falls by a third against the untrained encoder of the same seed (measured
    1.76 -> 1.10). The ridge forecasting probe does **not** show learning on this setting, so it is
    a protocol check here, not a learning claim: mse@24 < 0.06 on the test split (measured
    trained 0.042 vs untrained 0.041 at seed 0; seeds 1 / 2: 0.044 vs 0.043, 0.041 vs 0.044;
    published full-size TS2Vec 0.039; a constant representation scores 1.91, so a misaligned
    target or an unnormalised scale breaks it). The last-value forecaster scores 0.034 at H = 24,
    below even the published TS2Vec. A probe that beats the untrained encoder is asserted for
    TS2Vec by ``test_ts_classification.py::test_ts2vec_learns_smoothsubspace``.
    """
    root = require_dataset("etth1")
    from contrastkit.datasets.timeseries import load_forecast
    torch.set_num_threads(1)
    d = load_forecast("etth1", root)
    cfg = T.TS2VecConfig(output_dims=64, hidden_dims=32, depth=5, iters=60, max_train_length=500)
    method, trainer = T.fit(cfg, d.train_data, seed=0)
    assert trainer.stats["steps"] == 60
    torch.manual_seed(0)
    fresh = T.TS2Vec(cfg, d.data.shape[-1]).encoder
    val = torch.from_numpy(T.prepare_train_data(d.data[:, d.valid_slice], 500))
    trained_loss = _heldout_loss(method.downstream_encoder(), val)
    fresh_loss = _heldout_loss(fresh, val)
    assert trained_loss < 0.67 * fresh_loss, (trained_loss, fresh_loss)
    r = T.encode_causal(method.downstream_encoder(), d.data[:, :d.test_slice.stop], 200, 512)
    m = T.eval_forecasting(None, d, (24,), padding=200, reprs=r)
    # a protocol check, not a learning one (the untrained encoder scores 0.041 here too)
    assert m["mse@24"] < 0.06, m


def test_multivariate_etth1_forecast_protocol_beats_last_value():
    """Multivariate ETTh1 (7 variables + 7 calendar covariates), the same small TS2Vec: a protocol
    check of the multivariate forecasting path, not a learning test.

    The last-value forecaster scores 1.222 at H = 24 and the published TS2Vec 0.599. Bounds: ridge
    on the trained causal representations below 0.75 of the last value (measured 0.621; a
    misaligned target breaks it) and above 0.3 (half the published score: a leak of the future
    into the representations would fall below it). Training does not reliably beat the untrained
    encoder of the same seed on this probe (measured trained vs untrained: 0.621 vs 0.634,
    0.657 vs 0.660, 0.664 vs 0.676 for seeds 0 / 1 / 2; 200 steps: 0.631 vs 0.634, 0.640 vs
    0.660), so no learning claim is made here: the untrained encoder passes these bounds too.
    Learning is asserted by the held-out loss of the univariate test and, on a probe, by
    ``test_ts_classification.py::test_ts2vec_learns_smoothsubspace``.
    """
    root = require_dataset("etth1")
    from contrastkit.datasets.timeseries import load_forecast
    torch.set_num_threads(1)
    d = load_forecast("etth1", root, univariate=False)
    assert d.data.shape == (1, 17420, 14)
    last = T.last_value_metrics(d, (24,))["mse@24"]
    assert last == pytest.approx(1.222, abs=5e-3)
    cfg = T.TS2VecConfig(output_dims=64, hidden_dims=32, depth=5, iters=60, max_train_length=500)
    method, _ = T.fit(cfg, d.train_data, seed=0)
    r = T.encode_causal(method.downstream_encoder(), d.data[:, :d.test_slice.stop], 200, 512)
    m = T.eval_forecasting(None, d, (24,), padding=200, reprs=r)
    assert 0.3 < m["mse@24"] < 0.75 * last, (m, last)


def test_run_and_evaluate_forecasting_roundtrip(tmp_path):
    """The CLI entry points: ``run`` then ``evaluate`` on the saved causal representations."""
    require_dataset("etth1")
    from contrastkit.registry import RunContext
    cfg = T.TS2VecConfig(dataset="etth1", output_dims=8, hidden_dims=8, depth=1, iters=3,
                         max_train_length=300, sliding_padding=16, pred_lens=(24,),
                         encode_batch_size=2048)
    ctx = RunContext(out_dir=tmp_path, device="cpu", seed=0, progress=False)
    res = T.run(cfg, ctx)
    assert res.embeddings.shape == (14400, 8) and set(res.metrics) >= {"mse@24", "mse", "mae"}
    again = T.evaluate(cfg, res.embeddings, ctx)
    assert again["mse@24"] == pytest.approx(res.metrics["mse@24"], rel=1e-6)
    with pytest.raises(ValueError, match="embeddings"):
        T.evaluate(cfg, res.embeddings[:-1], ctx)


# ------------------------------------------------------------------ checkpoints and resume
def _tiny_task():
    """A small classification task (the CLI entry's ``load_task`` result) with two classes."""
    from types import SimpleNamespace
    rng = np.random.default_rng(0)
    t = np.linspace(0, 6, 40, dtype=np.float32)
    x = np.stack([np.stack([np.sin(t * (1 + c)), np.cos(t)], -1) for c in (0, 1) * 6])
    x = (x + 0.1 * rng.normal(size=x.shape)).astype(np.float32)
    y = np.array([0, 1] * 6)
    return SimpleNamespace(x_train=x[:8], y_train=y[:8], x_test=x[8:], y_test=y[8:])


def test_cli_resume_continues_from_the_checkpoint_exactly(tmp_path, monkeypatch,
                                                          restore_global_state):
    """`contrastkit train ts2vec ... --resume` (ctx.resume): 2 epochs with checkpoints, then a
    budget of 4 starts at epoch 2 and ends where an uninterrupted 4-epoch run ends."""
    import json
    from dataclasses import replace

    from contrastkit.core.checkpoint import load_checkpoint
    from contrastkit.registry import RunContext
    monkeypatch.setattr(T, "load_task", lambda config: _tiny_task())
    cfg = dict(output_dims=8, hidden_dims=8, depth=1, batch_size=4, checkpoint_every=1)
    full = RunContext(out_dir=tmp_path / "full", device="cpu", seed=3, progress=False)
    part = replace(full, out_dir=tmp_path / "part")
    for ctx in (full, part):
        ctx.out_dir.mkdir()
    want = T.run(T.TS2VecConfig(**cfg, epochs=4), full)
    T.run(T.TS2VecConfig(**cfg, epochs=2), part)
    assert load_checkpoint(part.out_dir / "checkpoint.pt")["epoch"] == 2
    torch.manual_seed(99)
    with pytest.warns(RuntimeWarning, match=r"config differs .*\['epochs'\]"):
        got = T.run(T.TS2VecConfig(**cfg, epochs=4), replace(part, resume=True))
    assert load_checkpoint(part.out_dir / "checkpoint.pt")["epoch"] == 4
    log = [json.loads(line) for line in (part.out_dir / "log.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (full.out_dir / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2, 3]
    assert [r["loss"] for r in log] == [r["loss"] for r in ref]
    assert torch.equal(got.embeddings, want.embeddings)
