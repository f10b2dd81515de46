"""Trainer, checkpoints and seeding: learning, exact resume, atomic saves, clear errors."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from contrastkit.core.checkpoint import load_checkpoint, save_checkpoint
from contrastkit.core.method import ContrastiveMethod
from contrastkit.core.seed import get_rng_state, seed_everything, set_rng_state
from contrastkit.core.trainer import NonFiniteLossError, Trainer, move_to_device


pytestmark = pytest.mark.usefixtures("restore_global_state")


# ---- a toy method ----------------------------------------------------------------------------
@dataclass
class ToyConfig:
    in_dim: int = 8
    hidden: int = 16
    out_dim: int = 4
    lr: float = 1e-2
    noise: float = 0.3
    temperature: float = 0.5


class ToyMethod(ContrastiveMethod):
    """Two noisy views (global torch, numpy and python RNGs), an MLP with dropout, NT-Xent."""

    name = "toy"

    def __init__(self, config: ToyConfig | None = None) -> None:
        super().__init__(config or ToyConfig())
        c = self.config
        self.encoder = nn.Sequential(nn.Linear(c.in_dim, c.hidden), nn.ReLU(), nn.Dropout(0.1),
                                     nn.Linear(c.hidden, c.hidden))
        self.head = nn.Linear(c.hidden, c.out_dim)
        self.calls: list[tuple[str, Any]] = []
        self.stop_at: int | None = None      # simulate an interruption at this epoch

    def views(self, batch: Any) -> list[Tensor]:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        scale = 1.0 + 0.05 * random.random() + 0.05 * float(np.random.rand())
        return [scale * x + self.config.noise * torch.randn_like(x),
                x + self.config.noise * torch.randn_like(x)]

    def loss(self, projections: Any, batch: Any) -> Tensor:
        z1, z2 = (F.normalize(p, dim=1) for p in projections)
        logits = z1 @ z2.T / self.config.temperature
        target = torch.arange(z1.shape[0])
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))

    def on_fit_start(self, trainer: Any) -> None:
        self.calls.append(("fit_start", trainer.epochs))

    def on_epoch_start(self, epoch: int) -> None:
        if self.stop_at is not None and epoch == self.stop_at:
            raise KeyboardInterrupt(f"simulated interruption at epoch {epoch}")
        self.calls.append(("epoch_start", epoch))

    def on_epoch_end(self, epoch: int) -> None:
        self.calls.append(("epoch_end", epoch))


class OtherMethod(ToyMethod):
    name = "other"


def make_data(n: int = 64, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(n, 8, generator=g)


def make_loader(generator_seed: int | None = None, n: int = 64) -> DataLoader:
    gen = None if generator_seed is None else torch.Generator().manual_seed(generator_seed)
    return DataLoader(TensorDataset(make_data(n)), batch_size=16, shuffle=True, generator=gen)


def make_method(cls: type = ToyMethod, init_seed: int = 123, **cfg: Any) -> ToyMethod:
    torch.manual_seed(init_seed)
    return cls(ToyConfig(**cfg))


def params(method: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in method.state_dict().items()}


def same_params(a: nn.Module, b: nn.Module) -> bool:
    pa, pb = params(a), params(b)
    return pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


# ---- learning ------------------------------------------------------------------------------
def test_loss_goes_down_and_stats():
    trainer = Trainer(15, progress=False)
    method = trainer.fit(make_method(lr=0.03, temperature=0.2), make_loader())
    losses = [rec["loss"] for rec in trainer.history]
    assert len(losses) == 15 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < 0.75 * losses[0]
    assert method.training
    assert trainer.stats["epochs_run"] == 15 and trainer.stats["steps"] == 15 * 4
    assert trainer.stats["time_per_epoch_s"] > 0
    assert trainer.stats["peak_mem_bytes"] > 10 * 2**20      # peak RSS of a torch process


def test_hooks_order_and_set_epoch():
    class Sampler:
        def __init__(self) -> None:
            self.epochs: list[int] = []

        def set_epoch(self, epoch: int) -> None:
            self.epochs.append(epoch)

    class Loader:
        sampler = Sampler()

        def __iter__(self):
            yield make_data(16)

    method, loader = make_method(), Loader()
    Trainer(2, progress=False).fit(method, loader)
    assert method.calls == [("fit_start", 2), ("epoch_start", 0), ("epoch_end", 0),
                            ("epoch_start", 1), ("epoch_end", 1)]
    assert loader.sampler.epochs == [0, 1]


def test_progress_bar_runs(capsys):
    Trainer(2, progress=True).fit(make_method(), [make_data(16)])
    assert "loss" in capsys.readouterr().err


def test_progress_bar_in_a_log_redraws_sparsely(capsys):
    """Captured stderr is not a terminal: the bar is drawn at start and end, not every epoch
    (tqdm's default, with a forced redraw per postfix, left ~2 redraws per epoch in a log)."""
    Trainer(40, progress=True).fit(make_method(), [make_data(16)])
    err = capsys.readouterr().err
    assert "\r" not in err, err  # one line per redraw, no carriage returns
    assert len(err.strip().splitlines()) <= 3, err
    assert "40/40" in err and "loss=" in err


def test_progress_bar_keeps_tqdm_defaults_on_a_terminal():
    import io

    from contrastkit.core.progress import LOG_INTERVAL_S, progress_bar, writes_to_log

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    log, terminal = io.StringIO(), Terminal()
    assert writes_to_log(log) and not writes_to_log(terminal)
    with progress_bar(range(3), file=log) as bar:
        assert bar.mininterval == LOG_INTERVAL_S
        # tqdm's monitor thread forces a redraw every maxinterval (10 s by default)
        assert bar.maxinterval >= LOG_INTERVAL_S
    with progress_bar(range(3), file=terminal) as bar:
        assert bar.mininterval < 1
    with progress_bar(range(3), file=log, mininterval=2.0) as bar:
        assert bar.mininterval == 2.0


# ---- seeding -------------------------------------------------------------------------------
def test_seed_makes_runs_identical_and_different_seeds_differ():
    a = Trainer(3, seed=5, progress=False).fit(make_method(), make_loader())
    b = Trainer(3, seed=5, progress=False).fit(make_method(), make_loader())
    c = Trainer(3, seed=6, progress=False).fit(make_method(), make_loader())
    assert same_params(a, b)
    assert not same_params(a, c)


def test_rng_state_roundtrip_through_weights_only_load(tmp_path):
    seed_everything(3)
    state = get_rng_state()
    first = (random.random(), float(np.random.rand()), torch.rand(3))
    save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    again = (random.random(), float(np.random.rand()), torch.rand(3))
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])
    random.gauss(0, 1)                                   # python's cached gaussian
    np.random.randn()                                    # numpy's cached gaussian
    state = get_rng_state()
    first = (random.gauss(0, 1), float(np.random.randn()))
    set_rng_state(state)
    assert first == (random.gauss(0, 1), float(np.random.randn()))
    with pytest.raises(TypeError, match="state: expected a dict"):
        set_rng_state([1, 2])
    with pytest.raises(ValueError, match="missing"):
        set_rng_state({"python": {}})
    with pytest.raises(TypeError, match="seed: expected an int"):
        seed_everything(1.5)
    with pytest.raises(ValueError, match="seed: expected an int in"):
        seed_everything(-1)


# ---- exact resume -------------------------------------------------------------------------
@pytest.mark.parametrize("generator_seed", [None, 11], ids=["global-rng-loader", "own-generator"])
def test_exact_resume_is_bit_identical(tmp_path, generator_seed):
    full = Trainer(6, seed=0, progress=False, out_dir=tmp_path / "full")
    ref = full.fit(make_method(), make_loader(generator_seed))

    # the same run, interrupted at the start of epoch 3 (checkpoint after epoch 3)
    first = make_method()
    first.stop_at = 3
    part = Trainer(6, seed=0, progress=False, out_dir=tmp_path / "part", checkpoint_every=3)
    with pytest.raises(KeyboardInterrupt):
        part.fit(first, make_loader(generator_seed))
    torch.manual_seed(999)                 # a new process: the global generators are elsewhere
    np.random.seed(999)
    random.seed(999)
    resumed_trainer = Trainer(6, seed=0, progress=False, out_dir=tmp_path / "part")
    resumed = resumed_trainer.fit(make_method(init_seed=77), make_loader(generator_seed),
                                  resume=True)

    assert same_params(ref, resumed)
    assert [r["loss"] for r in resumed_trainer.history] == [r["loss"] for r in full.history]
    assert resumed_trainer.stats["start_epoch"] == 3 and resumed_trainer.stats["epochs_run"] == 3
    assert resumed.calls[0] == ("fit_start", 6) and resumed.calls[1] == ("epoch_start", 3)
    lines = (tmp_path / "part" / "log.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == list(range(6))


def test_resume_from_explicit_path_and_checkpoint_contents(tmp_path):
    trainer = Trainer(2, seed=4, progress=False, out_dir=tmp_path)
    method = trainer.fit(make_method(lr=0.02), make_loader())
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")        # weights_only=True
    assert ckpt["epoch"] == 2
    assert ckpt["method_class"].endswith("ToyMethod")
    assert ckpt["config"] == {"in_dim": 8, "hidden": 16, "out_dim": 4, "lr": 0.02, "noise": 0.3,
                              "temperature": 0.5}
    assert ckpt["trainer"]["epochs"] == 2 and ckpt["trainer"]["seed"] == 4
    assert [r["epoch"] for r in ckpt["history"]] == [0, 1]
    assert set(ckpt["optimizer"]) == {"state", "param_groups"}
    assert set(ckpt["rng"][0]["global"]) == {"python", "numpy", "torch", "cuda"}
    # extend the run from an explicit path into another folder
    more = Trainer(3, seed=4, progress=False, out_dir=tmp_path / "more")
    more.fit(make_method(lr=0.02), make_loader(), resume=tmp_path / "checkpoint.pt")
    assert [r["epoch"] for r in more.history] == [0, 1, 2]
    assert load_checkpoint(tmp_path / "more" / "checkpoint.pt")["epoch"] == 3
    # nothing left to do: a warning, parameters as saved
    done = Trainer(2, seed=4, progress=False, out_dir=tmp_path)
    with pytest.warns(RuntimeWarning, match="nothing to train"):
        again = done.fit(make_method(lr=0.02), make_loader(), resume=True)
    assert same_params(again, method)


def test_resume_into_a_different_method_class_errors(tmp_path):
    Trainer(1, progress=False, out_dir=tmp_path).fit(make_method(), make_loader())
    with pytest.raises(ValueError, match="method class .*ToyMethod.*OtherMethod"):
        Trainer(2, progress=False, out_dir=tmp_path).fit(make_method(OtherMethod), make_loader(),
                                                          resume=True)


def test_resume_with_changed_config_warns(tmp_path):
    Trainer(1, progress=False, out_dir=tmp_path).fit(make_method(), make_loader())
    with pytest.warns(RuntimeWarning, match=r"config differs .*\['noise'\]"):
        Trainer(2, progress=False, out_dir=tmp_path).fit(make_method(noise=0.5), make_loader(),
                                                          resume=True)


def test_resume_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        Trainer(2, progress=False, out_dir=tmp_path).fit(make_method(), make_loader(), resume=True)
    with pytest.raises(ValueError, match="resume: resume=True needs out_dir"):
        Trainer(2, progress=False).fit(make_method(), make_loader(), resume=True)


# ---- checkpoint files -----------------------------------------------------------------------
def test_atomic_save_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "ck.pt"
    save_checkpoint(path, {"w": torch.arange(5), "meta": {"epoch": 1, "name": "x"}})
    save_checkpoint(path, {"w": torch.arange(6), "meta": {"epoch": 2, "name": "y"}})
    assert [p.name for p in path.parent.iterdir()] == ["ck.pt"]
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["w"], torch.arange(6)) and loaded["meta"]["epoch"] == 2


def test_interrupted_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"w": torch.ones(100)})

    def failing_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device (simulated)")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, {"w": torch.zeros(100)})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(100))


def test_truncated_or_corrupt_checkpoint_is_a_clear_error(tmp_path):
    Trainer(1, progress=False, out_dir=tmp_path).fit(make_method(), make_loader())
    path = tmp_path / "checkpoint.pt"
    data = path.read_bytes()
    for cut in (0, 50, len(data) // 2, len(data) - 8):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"checkpoint .*\.pt is truncated or corrupt"):
            load_checkpoint(path)
    path.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(ValueError, match="truncated or corrupt") as info:
        Trainer(2, progress=False, out_dir=tmp_path).fit(make_method(), make_loader(), resume=True)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="state: expected a dict"):
        save_checkpoint(tmp_path / "x.pt", [1, 2])


class Opaque:
    """A class that weights_only loading does not allow."""


def test_checkpoint_with_unsafe_objects_is_refused(tmp_path):
    torch.save({"obj": Opaque()}, tmp_path / "unsafe.pt")
    with pytest.raises(ValueError, match="weights_only loading refuses .*Opaque"):
        load_checkpoint(tmp_path / "unsafe.pt")


class OpaqueExtraState(ToyMethod):
    """Keeps an object in its extra state that weights_only loading cannot rebuild."""

    def get_extra_state(self) -> Any:
        return {"best": {"score": 0.5, "note": Opaque()}}

    def set_extra_state(self, state: Any) -> None:
        pass


def test_save_refuses_state_that_could_not_be_loaded_back(tmp_path):
    """Refused when saving, naming the entry, instead of a checkpoint that fails on resume."""
    with pytest.raises(TypeError, match=r"^state\['method'\]\['_extra_state'\]\['best'\]"
                                        r"\['note'\]: expected tensors.*got a .*Opaque"):
        Trainer(1, progress=False, out_dir=tmp_path).fit(make_method(OpaqueExtraState),
                                                         make_loader())
    assert not (tmp_path / "checkpoint.pt").exists()
    with pytest.raises(TypeError, match=r"^state\['cfg'\]\['scale'\]: .*numpy"):
        save_checkpoint(tmp_path / "np.pt", {"cfg": {"scale": np.float32(2.0)}})
    with pytest.raises(TypeError, match=r"^state\['hooks'\]\[1\]: .*cannot be pickled"):
        save_checkpoint(tmp_path / "fn.pt", {"hooks": [1, lambda x: x]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl"]  # no checkpoint, no temp
    plain = {"w": torch.nn.Parameter(torch.ones(2)), "shape": torch.Size([2]),
             "dtype": torch.float16, "dev": torch.device("cpu"), "ids": {1, 2}, "raw": b"ab",
             "nested": [(1, 2.5, None, True, "s")]}
    save_checkpoint(tmp_path / "plain.pt", plain)
    assert load_checkpoint(tmp_path / "plain.pt")["shape"] == torch.Size([2])
    with torch.serialization.safe_globals([Opaque]):  # a registered class round-trips: allowed
        save_checkpoint(tmp_path / "registered.pt", {"obj": Opaque()})
        assert isinstance(load_checkpoint(tmp_path / "registered.pt")["obj"], Opaque)


# ---- errors and logs ------------------------------------------------------------------------
def test_non_finite_loss_names_epoch_and_step():
    class Exploding(ToyMethod):
        def __init__(self) -> None:
            super().__init__()
            self.step = 0

        def loss(self, projections: Any, batch: Any) -> Tensor:
            self.step += 1
            out = super().loss(projections, batch)
            return out * float("nan") if self.step == 7 else out   # epoch 1, step 2

    with pytest.raises(NonFiniteLossError, match="non-finite loss .* at epoch 1 step 2") as info:
        Trainer(3, progress=False).fit(Exploding(), make_loader())
    assert isinstance(info.value, FloatingPointError) and isinstance(info.value, ValueError)
    assert "grad_clip" in str(info.value)


def test_log_has_one_json_line_per_epoch(tmp_path):
    trainer = Trainer(4, progress=False, out_dir=tmp_path, log_name="train.jsonl")
    trainer.fit(make_method(), make_loader())
    lines = (tmp_path / "train.jsonl").read_text().splitlines()
    records = [json.loads(ln) for ln in lines]
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    for rec in records:
        assert set(rec) == {"epoch", "loss", "time_s", "lr"}
        assert math.isfinite(rec["loss"]) and rec["time_s"] >= 0 and rec["lr"] == 1e-2
    assert records == trainer.history
    # a fresh run truncates the log
    Trainer(2, progress=False, out_dir=tmp_path, log_name="train.jsonl").fit(make_method(),
                                                                               make_loader())
    assert len((tmp_path / "train.jsonl").read_text().splitlines()) == 2


def test_evaluator_every_n_epochs_in_eval_mode_without_perturbing_training(tmp_path):
    seen: list[tuple[bool, bool]] = []

    def evaluator(method: nn.Module) -> dict[str, float]:
        seen.append((method.training, torch.is_grad_enabled()))
        torch.rand(10)                          # draws from the global RNG ...
        np.random.rand()
        return {"score": np.float64(len(seen))}

    trainer = Trainer(5, progress=False, eval_every=2, evaluator=evaluator, out_dir=tmp_path)
    method = trainer.fit(make_method(), make_loader())
    assert seen == [(False, False)] * 2                        # after epochs 1 and 3
    assert [r.get("score") for r in trainer.history] == [None, 1.0, None, 2.0, None]
    assert method.training
    logged = [json.loads(ln) for ln in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logged[1]["score"] == 1.0 and "eval_time_s" in logged[1]
    # ... but the evaluator does not change the training trajectory
    plain = Trainer(5, progress=False).fit(make_method(), make_loader())
    assert same_params(method, plain)
    # eval_every=0: only after the last epoch
    seen.clear()
    last = Trainer(3, progress=False, evaluator=evaluator)
    last.fit(make_method(), make_loader())
    assert len(seen) == 1 and [r.get("score") for r in last.history] == [None, None, 1.0]


def test_grad_clip_is_applied(monkeypatch):
    norms: list[float] = []
    original = torch.nn.utils.clip_grad_norm_

    def recording(parameters: Any, max_norm: float, *args: Any, **kwargs: Any) -> Tensor:
        norms.append(max_norm)
        return original(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    method = make_method()
    Trainer(1, progress=False, grad_clip=1e-3).fit(method, make_loader())
    assert norms == [1e-3] * 4
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in method.parameters()))
    assert float(total) <= 1e-3 * (1 + 1e-5)


def test_move_to_device_and_full_batch_graph_data():
    from torch_geometric.data import Data

    data = Data(x=make_data(16), edge_index=torch.tensor([[0, 1], [1, 0]]))
    batch = {"a": (torch.zeros(2), [data]), "b": "text", "c": 3}
    moved = move_to_device(batch, "cpu")
    assert moved["b"] == "text" and moved["c"] == 3 and moved["a"][1][0] is data

    class GraphToy(ToyMethod):
        def views(self, batch: Any) -> list[Tensor]:
            return super().views(batch.x)

    trainer = Trainer(2, progress=False)
    trainer.fit(GraphToy(), [data])                   # full-batch loader
    assert trainer.stats["steps"] == 2


def test_argument_validation(tmp_path):
    with pytest.raises(ValueError, match="epochs: expected an int >= 1, got 0"):
        Trainer(0)
    with pytest.raises(TypeError, match="epochs: expected an int, got float"):
        Trainer(2.0)
    with pytest.raises(ValueError, match="eval_every: set to 2 but no evaluator"):
        Trainer(3, eval_every=2)
    with pytest.raises(ValueError, match="checkpoint_every: set to 1 but out_dir is None"):
        Trainer(3, checkpoint_every=1)
    with pytest.raises(ValueError, match="amp: expected False, True, 'bf16' or 'fp16'"):
        Trainer(3, amp="fp8")
    with pytest.raises(ValueError, match="grad_clip: expected a positive finite float"):
        Trainer(3, grad_clip=0.0)
    with pytest.raises(TypeError, match="evaluator: expected a callable"):
        Trainer(3, evaluator=3)
    with pytest.raises(ValueError, match="seed: expected an int in"):
        Trainer(3, seed=-1)
    with pytest.warns(UserWarning, match="amp='bf16' is ignored on device cpu"):
        Trainer(1, amp="bf16", progress=False).fit(make_method(), [make_data(16)])
    trainer = Trainer(1, progress=False)
    with pytest.raises(TypeError, match="loader: expected a re-iterable .*one-shot iterator"):
        trainer.fit(make_method(), iter([make_data(16)]))
    with pytest.raises(ValueError, match="loader: expected at least one batch"):
        trainer.fit(make_method(), [])
    with pytest.raises(TypeError, match="method: expected a ContrastiveMethod"):
        trainer.fit("grace", [make_data(16)])

    class Detached(ToyMethod):
        def loss(self, projections: Any, batch: Any) -> Tensor:
            return super().loss(projections, batch).detach()

    with pytest.raises(ValueError, match="epoch 0 step 0: the loss does not require grad"):
        trainer.fit(Detached(), [make_data(16)])

    class VectorLoss(ToyMethod):
        def loss(self, projections: Any, batch: Any) -> Tensor:
            return projections[0].sum(dim=1)

    with pytest.raises(TypeError, match="expected a scalar loss tensor, got a tensor of shape"):
        trainer.fit(VectorLoss(), [make_data(16)])


class StopsAfterTwo(ToyMethod):
    """Stops early after its second epoch and keeps that in its saved state."""

    name = "stops"

    def on_epoch_end(self, epoch: int) -> None:
        super().on_epoch_end(epoch)
        if epoch == 1:
            self.stop_training = True

    def get_extra_state(self) -> dict:
        return {"stopped": bool(getattr(self, "stop_training", False))}

    def set_extra_state(self, state: dict) -> None:
        self.stop_training = bool(state["stopped"])


def test_early_stop_survives_resume_and_a_stale_flag_does_not(tmp_path):
    first = Trainer(5, seed=0, progress=False, out_dir=tmp_path)
    first.fit(make_method(StopsAfterTwo), make_loader(0))
    assert first.stats["epochs_run"] == 2
    again = Trainer(8, seed=0, progress=False, out_dir=tmp_path)
    with pytest.warns(RuntimeWarning, match="stopped early"):
        again.fit(make_method(StopsAfterTwo), make_loader(0), resume=True)
    assert again.stats["epochs_run"] == 0 and len(again.history) == 2
    # a flag left from an earlier fit (not restored from a checkpoint) does not stop a new one
    stale = make_method()
    stale.stop_training = True
    fresh = Trainer(3, seed=0, progress=False)
    fresh.fit(stale, make_loader(0))
    assert fresh.stats["epochs_run"] == 3


def test_cost_stats_cover_the_whole_run_on_resume(tmp_path):
    """A resume reports the run's costs, not only the epochs it added: nothing left to train
    keeps the saved per-epoch time (it used to be 0.0); more epochs average over all of them."""
    first = Trainer(2, seed=0, progress=False, out_dir=tmp_path)
    first.fit(make_method(), make_loader())
    saved = [r["time_s"] for r in first.history]
    assert first.stats["time_per_epoch_s"] == pytest.approx(sum(saved) / 2)
    assert first.stats["train_time_s"] == first.stats["total_time_s"]
    done = Trainer(2, seed=0, progress=False, out_dir=tmp_path)
    with pytest.warns(RuntimeWarning, match="nothing to train"):
        done.fit(make_method(), make_loader(), resume=True)
    assert done.stats["epochs_run"] == 0
    assert done.stats["time_per_epoch_s"] == pytest.approx(sum(saved) / 2)
    assert done.stats["train_time_s"] >= sum(saved)
    more = Trainer(4, seed=0, progress=False, out_dir=tmp_path)
    more.fit(make_method(), make_loader(), resume=True)
    times = [r["time_s"] for r in more.history]
    assert times[:2] == saved and more.stats["epochs_run"] == 2
    assert more.stats["time_per_epoch_s"] == pytest.approx(sum(times) / 4)
    assert more.stats["train_time_s"] == pytest.approx(sum(saved) + more.stats["total_time_s"])
