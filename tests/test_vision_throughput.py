"""benchmarks/vision_throughput.py: the in-process measurement on CPU, tiny settings.

Runs each variant for 1 warm-up + 1 timed step with batch 8 (small CNN; ResNet-18 for the main
row) and checks positive throughput; the torchvision rows must run when torchvision is installed
and report ``skipped: torchvision not installed`` when it is not (forced with monkeypatch).
"""

from __future__ import annotations

import math
import sys

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def vt():
    module = load_benchmark("vision_throughput")
    yield module
    sys.modules.pop(module.__name__, None)


def _cfg(vt, **kw):
    base = dict(device="cpu", batch_size=8, warmup=1, steps=1, augment_steps=1,
                backbone="small_cnn", num_images=32, workers=0, threads=1)
    return vt.BenchConfig(**{**base, **kw})


def _check_ok(r, variant, batch=8):
    assert r["variant"] == variant and r["status"] == "ok", r
    assert r["images_per_s"] > 0 and r["views_per_s"] == pytest.approx(2 * r["images_per_s"])
    assert r["epoch_s"] == pytest.approx(50_000 / r["images_per_s"])
    assert r["step_ms"] == pytest.approx(1e3 * batch / r["images_per_s"])


def test_ours_resnet18_step(vt):
    r = vt.measure("ours", _cfg(vt, backbone="resnet18"))
    _check_ok(r, "ours")
    assert math.isfinite(r["final_loss"])


@pytest.mark.parametrize("variant", ["backbone_only", "augment_only_ours"])
def test_other_rows(vt, variant):
    _check_ok(vt.measure(variant, _cfg(vt)), variant)


@pytest.mark.parametrize("variant", ["torchvision_dataloader", "augment_only_torchvision"])
def test_torchvision_rows(vt, variant, monkeypatch):
    cfg = _cfg(vt)
    if vt._import_torchvision() is not None:
        _check_ok(vt.measure(variant, cfg), variant)
    monkeypatch.setattr(vt, "_import_torchvision", lambda: None)
    r = vt.measure(variant, cfg)
    assert r == {"variant": variant, "status": "skipped", "reason": "torchvision not installed"}


def test_markdown_says_cpu(vt):
    cfg = _cfg(vt)
    results = [vt.measure("augment_only_ours", cfg),
               dict(variant="torchvision_dataloader", status="skipped",
                    reason="torchvision not installed")]
    doc = dict(config=vt.dataclasses.asdict(cfg), env=vt.environment(cfg), results=results,
               command="python benchmarks/vision_throughput.py --device cpu", notes=[])
    md = vt.markdown(doc)
    assert "CPU run, no GPU lent; batch 8" in md
    assert "skipped: torchvision not installed" in md
    assert "< 3 s per 50,000-image epoch" in md


@pytest.mark.parametrize("kw, name", [(dict(batch_size=1), "batch_size"), (dict(amp="fp8"), "amp"),
                                      (dict(steps=0), "steps"), (dict(workers=-1), "workers"),
                                      (dict(augment_steps=0), "augment_steps"),
                                      (dict(num_images=4), "num_images"),
                                      (dict(backbone="vit"), "backbone"),
                                      (dict(data="imagenet"), "data")])
def test_bad_arguments(vt, kw, name):
    with pytest.raises(ValueError, match=name):
        _cfg(vt, **kw)
    with pytest.raises(ValueError, match="variant"):
        vt.measure("nope", _cfg(vt))
