"""benchmarks/graph_scale.py: the PamC-vs-exact column says which side needs more memory."""

from __future__ import annotations

from conftest import load_benchmark

bench = load_benchmark("graph_scale")
MiB = 2**20


def test_memory_ratio_direction_and_floor():
    assert bench._memory_ratio(480 * MiB, 100 * MiB) == "4.8x smaller"
    assert bench._memory_ratio(50 * MiB, 80 * MiB) == "1.6x larger"
    # a peak inside the data's own (about 0 over it) is not divided by
    assert bench._memory_ratio(0, 120 * MiB) == "larger (exact: within the data's own peak)"
    assert bench._memory_ratio(0, 0) == "1.0x smaller"


def test_table_compares_each_exact_variant_with_its_pamc_counterpart():
    rows = [dict(variant=v, graph="50000", num_nodes=50000, status="ok", time_per_epoch_s=t,
                 peak_rss_bytes=m + 400 * MiB, peak_over_data_bytes=m)
            for v, t, m in [("blockwise", 33.0, 1500 * MiB), ("pamc", 7.5, 1500 * MiB),
                            ("blockwise_loss", 24.0, 50 * MiB), ("pamc_loss", 0.06, 80 * MiB)]]
    rows.append(dict(variant="dense", graph="50000", num_nodes=50000, status="oom"))
    md = bench.table(rows)
    line = {ln.split(" | ")[2]: ln for ln in md.splitlines() if ln.startswith("| SBM")}
    assert line["blockwise"].endswith("| 4.4x faster, 1.0x smaller |")
    assert line["blockwise_loss"].endswith("| 400.0x faster, 1.6x larger |")
    assert line["dense"].endswith("| exact out of memory |")
