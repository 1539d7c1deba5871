"""What `benchmarks/bench_tuner.py train` prints next to the step time ratio (the counted step FLOPs), and the pooled
ratios of several runs (`benchmarks/pool_steps.py`) that docs/benchmarks.md shows."""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_tuner  # noqa: E402
import pool_steps  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("family", ["clip", "siglip2"])
def test_a_vop_step_costs_the_input_gradient_floor_plus_its_prompts(family, monkeypatch):
    monkeypatch.setattr(bench_tuner, "FAMILY", family)
    counted = {
        mode: bench_tuner.counted_step_flops("b32", "cpu", mode, videos=1, frames=2)
        for mode in ("vop", "full", bench_tuner.FLOOR)
    }
    (vop_forward, vop), (full_forward, full), (floor_forward, floor) = (
        counted["vop"],
        counted["full"],
        counted[bench_tuner.FLOOR],
    )
    # The floor runs the frozen backbone's forward, and its backward skips the weight gradients: about one forward
    # less than full fine-tuning's (the patch embedding's weight gradient is the only one without an input gradient).
    assert floor_forward == full_forward
    assert floor < full
    assert (full - floor) / full_forward == pytest.approx(1.0, abs=0.01)
    # VoP adds its prompt tokens to the floor, in the forward and again in the backward, and nothing else.
    assert floor_forward < vop_forward < 1.1 * floor_forward
    assert floor < vop < full
    assert (vop - floor) / (vop_forward - floor_forward) == pytest.approx(2.0, abs=0.1)


def _write_run(path: Path, ratios: list[float], **fields) -> Path:
    path.write_text(json.dumps({**fields, "train": {"step_time_ratios": ratios}}))
    return path


def test_pooling_joins_the_pairs_of_every_run_of_a_family_and_geometry(tmp_path):
    first = _write_run(tmp_path / "a.json", [0.60, 0.70, 0.65], family="siglip2", geometry="b16")
    # Results written before the JSON had its own fields: family and geometry come from the setup line.
    second = _write_run(tmp_path / "b.json", [0.66, 0.90], setup="siglip2 B16 geometry, 2 videos x 12 frames, fp32")
    other = _write_run(tmp_path / "c.json", [0.50, 0.52], family="clip", geometry="b32")
    pooled = pool_steps.pool([first, second, other])
    assert set(pooled) == {("siglip2", "b16"), ("clip", "b32")}
    row = pooled["siglip2", "b16"]
    assert row["pairs"] == 5
    assert row["median"] == statistics.median([0.60, 0.70, 0.65, 0.66, 0.90]) == 0.66
    assert row["runs"] == [(0.65, 3), (0.78, 2)]
    low, high = row["interval"]
    assert 0.60 <= low <= row["median"] <= high <= 0.90
    table = pool_steps.table(pooled)
    assert "| clip | B32 | 0.510 (2) | 2 | 0.510 |" in table and table.rstrip().endswith("| median met |")


def test_the_bootstrap_interval_is_reproducible_and_narrows_with_more_pairs():
    values = [0.60, 0.62, 0.64, 0.66, 0.68, 0.70, 0.72]
    interval = pool_steps.bootstrap_median_interval(values)
    assert interval == pool_steps.bootstrap_median_interval(values)
    wide = interval[1] - interval[0]
    narrow = pool_steps.bootstrap_median_interval(values * 8)
    assert narrow[1] - narrow[0] < wide
    assert pool_steps.bootstrap_median_interval([0.64] * 5) == (0.64, 0.64)


def test_the_docs_table_is_what_pooling_the_stored_runs_prints():
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    section = page[page.index("#### Training step time") :]
    command = re.search(r"```bash\n(python benchmarks/pool_steps.py [^\n]+)\n```", section).group(1)
    assert command == "python benchmarks/pool_steps.py benchmarks/results/tuner_steps/*.json"
    printed = pool_steps.table(pool_steps.pool(sorted((ROOT / "benchmarks/results/tuner_steps").glob("*.json"))))
    documented = section[section.index("| family |") :].split("\n\n")[0]
    assert documented == printed
