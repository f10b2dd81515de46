"""Bad input gets a clear error (ValueError/TypeError naming the argument), never a silent NaN.

One place for the user-facing cases the foundation issue lists; the modules' own test files cover
each check in more detail.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch_geometric.data import Data

from contrastkit.cli import main
from contrastkit.core import nt_xent
from contrastkit.core.trainer import Trainer
from contrastkit.graphcl.grace import GRACE, GRACEConfig
from contrastkit.graphcl.validate import validate_graph


def _graph(n=6, f=4):
    ei = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])
    return Data(x=torch.rand(n, f), edge_index=torch.cat([ei, ei.flip(0)], 1),
                y=torch.arange(n) % 2)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_features(bad):
    g = _graph()
    g.x[2, 1] = bad
    with pytest.raises(ValueError, match=r"x: expected finite values"):
        validate_graph(g)
    # even without validation, the loss refuses non-finite embeddings instead of returning NaN
    cfg = GRACEConfig(hidden_channels=8, projection_channels=8, epochs=1)
    method = GRACE(cfg, 4)
    with pytest.raises(ValueError, match="expected finite"):
        Trainer(1, progress=False).fit(method, [g])


def test_views_of_different_shapes():
    with pytest.raises(ValueError, match=r"z1 and z2: expected the same shape"):
        nt_xent(torch.randn(5, 8), torch.randn(6, 8))


def test_edge_index_out_of_range():
    g = _graph()
    g.edge_index[1, 0] = 6
    with pytest.raises(ValueError, match=r"edge_index.*6.*num_nodes|num_nodes.*6"):
        validate_graph(g)


def test_empty_graph():
    g = Data(x=torch.zeros(0, 4), edge_index=torch.zeros(2, 0, dtype=torch.long),
             y=torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty graph"):
        validate_graph(g)


@pytest.mark.parametrize("argv,needle", [
    (["train", "simclr-nope"], "unknown method"),
    (["train", "grace", "--dataset", "coraa"], "coraa"),
    (["train", "grace", "--set", "temperature=0"], "temperature"),
    (["train", "grace", "--set", "temperature=-0.5"], "temperature"),
    (["train", "grace", "--set", "temprature=0.5"], "temprature"),
    (["train", "grace", "--set", "drop_edge_p1=1.5"], "drop_edge_p1"),
    (["train", "grace", "--set", "weight_decay=nan"], "weight_decay: expected a finite"),
    (["train", "grace", "--set", "weight_decay=inf"], "weight_decay: expected a finite"),
    (["train", "grace", "--set", "weight_decay=-1"], "weight_decay: expected a weight decay >= 0"),
    (["train", "meow", "--set", "eval_lr=nan"], "eval_lr"),
    (["train", "meow", "--set", "proto_weight=nan"], "proto_weight"),
    (["train", "meow", "--set", "eval_ratios=[]"], "eval_ratios"),
    (["train", "comet", "--set", "dropout=nan"], "dropout"),
    (["train", "comet", "--set", "dropout=1.5"], "dropout"),
    (["train", "comet", "--set", "depth=-1"], "depth"),
    (["train", "comet", "--set", "fold_seed=-1"], "fold_seed"),
    (["train", "comet", "--set", "level_weights=[nan,1,1,1]"], "level_weights"),
    (["train", "comet", "--set", "finetune_weight_decay=-1"], "finetune_weight_decay"),
    (["train", "simclr", "--set", "cacr_alpha=-1"], "cacr_alpha"),
    (["train", "simclr", "--set", "amcl_beta=nan"], "amcl_beta"),
])
def test_cli_bad_arguments_exit_2_with_a_named_error(argv, needle, tmp_path, capsys):
    rc = main(argv + ["--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error:") and needle.lower() in err.lower(), err
    assert "Traceback" not in err


def test_truncated_checkpoint_on_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "grace", "--set", "epochs=1", "--set", "eval_repeats=1",
                 "--out", str(out), "--no-progress"]) == 0
    ckpt = out / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    rc = main(["train", "grace", "--set", "epochs=2", "--set", "eval_repeats=1",
               "--out", str(out), "--resume", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "truncated or corrupt" in err, err


def test_resume_continues_exactly(tmp_path):
    """train 2 epochs; train 1 epoch then --resume to 2: identical embeddings."""
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--set", "eval_repeats=1", "--set", "hidden_channels=32",
              "--set", "projection_channels=32", "--no-progress"]
    assert main(["train", "grace", "--set", "epochs=2", "--out", str(a)] + common) == 0
    assert main(["train", "grace", "--set", "epochs=1", "--out", str(b)] + common) == 0
    assert main(["train", "grace", "--set", "epochs=2", "--out", str(b), "--resume"] + common) == 0
    ea = torch.load(a / "embeddings.pt", weights_only=True)
    eb = torch.load(b / "embeddings.pt", weights_only=True)
    assert torch.equal(ea, eb)
    log = [json.loads(line) for line in (b / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1]


def test_resume_needs_the_run_folder_and_keeps_its_config(tmp_path, capsys):
    assert main(["train", "grace", "--resume", "--no-progress"]) == 2
    assert "--resume: expected --out" in capsys.readouterr().err
    out = tmp_path / "run"
    common = ["--set", "eval_repeats=1", "--set", "hidden_channels=16",
              "--set", "projection_channels=16", "--no-progress"]
    assert main(["train", "grace", "--set", "epochs=1", "--out", str(out)] + common) == 0
    assert main(["train", "grace", "--out", str(out), "--resume", "--no-progress"]) == 0
    import yaml
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["epochs"] == 1 and saved["hidden_channels"] == 16


def test_configs_reject_non_finite_and_out_of_range_hyperparameters():
    """From Python as from the command line: every method's config checks its numbers by
    name (``*_lr`` > 0, ``*weight_decay`` >= 0, ``*dropout*`` in [0, 1], floats finite), ints
    included."""
    import dataclasses

    from contrastkit.registry import get_method, list_methods
    checked: dict[str, int] = {"lr": 0, "weight_decay": 0, "dropout": 0}
    for name in list_methods():
        cls = get_method(name).config_cls
        for f in dataclasses.fields(cls):
            default = getattr(cls(), f.name)
            if isinstance(default, bool) or not isinstance(default, (int, float)):
                continue
            if f.name == "lr" or f.name.endswith("_lr"):
                kind, bad = "lr", (0, -1e-3, float("nan"))
            elif f.name.endswith("weight_decay"):
                kind, bad = "weight_decay", (-1, -1e-4, float("inf"))
            elif "dropout" in f.name:
                kind, bad = "dropout", (2, 1.5, -0.1, float("nan"))
            else:
                continue
            for value in bad:
                with pytest.raises(ValueError, match=f"{f.name}: expected"):
                    cls(**{f.name: value})
            checked[kind] += 1
    assert checked["lr"] >= 17 and checked["weight_decay"] >= 15 and checked["dropout"] >= 5, \
        checked



def _views(n=8, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


def _with_nan(z):
    z = z.clone()
    z[0, 0] = float("nan")
    return z


@pytest.mark.parametrize("call,error,match", [
    (lambda L, a, b: L.nt_xent(a[:, :0], b[:, :0]), ValueError, r"z1: expected a feature size"),
    (lambda L, a, b: L.decoupled_loss(a[None], b[None]), ValueError, r"z1: expected a 2-D"),
    (lambda L, a, b: L.decoupled_loss([1.0], [1.0]), TypeError, r"z1: expected a torch.Tensor"),
    (lambda L, a, b: L.simple_contrastive_loss(_with_nan(a), b), ValueError, r"z1: expected fin"),
    (lambda L, a, b: L.simple_contrastive_loss(a[:0], b[:0]), ValueError, r"z1: .* one row"),
    (lambda L, a, b: L.alignment_loss(_with_nan(a), b), ValueError, r"z1: expected finite"),
    (lambda L, a, b: L.amcl_loss(_with_nan(a), b, 0.1), ValueError, r"z1: expected finite"),
    (lambda L, a, b: L.dclw_weights(_with_nan(a), b), ValueError, r"z1: expected finite"),
    (lambda L, a, b: L.tolerance(_with_nan(a), torch.arange(8) % 3), ValueError, r"z: expected"),
    (lambda L, a, b: L.negative_weight_stats(_with_nan(a)), ValueError, r"anchors: expected fin"),
    (lambda L, a, b: L.moco_score_stats(a, b, a[:0]), ValueError, r"non-empty queue"),
    (lambda L, a, b: L.mochi_loss(a[:0], b[:0], a), ValueError, r"query: .* one row"),
    (lambda L, a, b: L.amcl_regularizer(torch.tensor([-1.0]), 4), ValueError, r"tau: expected"),
    (lambda L, a, b: L.info_nce(a * 1e19, b * 1e19, similarity="dot"), ValueError,
     r"logits overflowed"),
    (lambda L, a, b: L.nt_xent(a, b, temperature=1e-40), ValueError,
     r"temperature: expected a value whose inverse fits torch.float32"),
])
def test_losses_name_bad_embeddings(call, error, match):
    import contrastkit.core.losses as L
    a, b = _views()
    with pytest.raises(error, match=match):
        call(L, a, b)


def test_numpy_and_0d_tensor_scalars_are_accepted_bools_and_strings_are_not():
    """Shared checks take numpy ints/floats and 0-d tensors as the numbers they are (they were
    refused after the checks were tightened) and still refuse bools and strings by name."""
    import numpy as np

    from contrastkit.core.checks import (check_edge_index, check_int, check_positive,
                                         check_probability)
    from contrastkit.graphcl.augment import degree_centrality
    from contrastkit.graphcl.encoders import gcn_adjacency
    from contrastkit.seqcl.hierarchical import generate_mask
    assert check_int("n", np.int64(3)) == 3 and type(check_int("n", np.int64(3))) is int
    assert check_int("n", torch.tensor(4)) == 4
    assert check_probability("p", np.float32(0.5)) == 0.5
    assert check_probability("p", torch.tensor(0.25)) == 0.25
    assert check_positive("t", np.float32(0.5)) == 0.5
    with pytest.raises(TypeError, match=r"^n: expected an int, got bool"):
        check_int("n", True)
    with pytest.raises(TypeError, match=r"^n: expected an int, got float"):
        check_int("n", np.float64(3.0))
    with pytest.raises(TypeError, match=r"^p: expected a probability"):
        check_probability("p", "0.5")
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    assert torch.equal(gcn_adjacency(ei, np.int64(3)).to_dense(), gcn_adjacency(ei, 3).to_dense())
    assert torch.equal(degree_centrality(ei, np.int64(3)), degree_centrality(ei, 3))
    with pytest.raises(TypeError, match=r"^num_nodes: expected a non-negative int, got float"):
        check_edge_index("edge_index", ei, 3.0)
    with pytest.raises(ValueError, match=r"^num_nodes: expected a non-negative int, got -1"):
        degree_centrality(ei, -1)
    assert generate_mask(np.int64(2), 5, "binomial", p=np.float32(0.5)).shape == (2, 5)


def test_zero_width_embeddings_and_huge_extra_negatives():
    """``l2_normalize`` on a zero-width dimension stays zero (no raw IndexError from amax); the
    cosine of MoCHi's extra negatives is scale-invariant up to float32 magnitudes of 1e25."""
    from contrastkit.core.losses import info_nce, moco_loss
    from contrastkit.core.similarity import l2_normalize
    assert l2_normalize(torch.zeros(4, 0)).shape == (4, 0)
    assert torch.isfinite(info_nce(torch.randn(4, 0), torch.randn(4, 0)))
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    queue, h = torch.randn(16, 4, generator=g), torch.randn(8, 5, 4, generator=g)
    want = moco_loss(q, k, queue, extra_negatives=h)
    assert torch.allclose(moco_loss(q, k, queue, extra_negatives=h * 1e25), want)
