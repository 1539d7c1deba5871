"""The training-step ratio of several `bench_tuner.py train` runs pooled, per family and geometry.

On a shared host one run's median of per-pair ratios (VoP step / full fine-tuning step, interleaved) moves by more
than its own quartiles suggest, because the host's state drifts over hours. Pooling the pairs of runs made at
different times gives the estimate to hold against a target, with a bootstrap interval of its median (pairs
resampled with replacement, seeded, so the table is reproducible).

Usage:
    python benchmarks/bench_tuner.py train --family siglip2 --geometry b16 --repeats 15 --output siglip2_1.json
    python benchmarks/pool_steps.py benchmarks/results/tuner_steps/*.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path


TARGET = 0.68  # step time VoP / full fine-tuning, every family (issue 11)


def pair_ratios(first: list[float], second: list[float]) -> list[float]:
    """Ratio of each interleaved pair of times."""
    return [a / b for a, b in zip(first, second, strict=True)]


def quartiles(values: list[float]) -> list[float]:
    """First and third quartile of `values`: how far the per-pair ratios spread on a noisy host."""
    if len(values) < 2:
        return [values[0], values[0]]
    first, _, third = statistics.quantiles(values, n=4, method="inclusive")
    return [first, third]


def run_key(results: dict) -> tuple[str, str]:
    """(family, geometry) of a `bench_tuner.py` result: its own fields, or the first words of its setup line."""
    if "family" in results:
        return results["family"], results["geometry"]
    family, geometry = results["setup"].split()[:2]
    return family, geometry.lower()


def bootstrap_median_interval(values: list[float], resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the median of `values` resampled with replacement."""
    generator = random.Random(seed)
    medians = sorted(statistics.median(generator.choices(values, k=len(values))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def pool(paths: list[Path]) -> dict[tuple[str, str], dict]:
    """Per (family, geometry): every run's median and pair count, and the pooled pairs' median, quartiles and
    bootstrap interval."""
    runs: dict[tuple[str, str], list[list[float]]] = {}
    for path in sorted(paths):
        results = json.loads(path.read_text())
        runs.setdefault(run_key(results), []).append(results["train"]["step_time_ratios"])
    pooled = {}
    for key, ratio_lists in runs.items():
        pairs = [ratio for ratios in ratio_lists for ratio in ratios]
        pooled[key] = {
            "runs": [(statistics.median(ratios), len(ratios)) for ratios in ratio_lists],
            "pairs": len(pairs),
            "median": statistics.median(pairs),
            "quartiles": quartiles(pairs),
            "interval": bootstrap_median_interval(pairs),
        }
    return pooled


def table(pooled: dict[tuple[str, str], dict]) -> str:
    lines = [
        "| family | geometry | each run: median (pairs) | pooled pairs | pooled median | quartiles | "
        f"95% bootstrap interval of the median | target <= {TARGET} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (family, geometry), row in sorted(pooled.items()):
        runs = ", ".join(f"{median:.3f} ({count})" for median, count in row["runs"])
        low, high = row["interval"]
        met = "met" if high <= TARGET else ("median met" if row["median"] <= TARGET else "not met")
        lines.append(
            f"| {family} | {geometry.upper()} | {runs} | {row['pairs']} | {row['median']:.3f} | "
            f"{row['quartiles'][0]:.3f}-{row['quartiles'][1]:.3f} | {low:.3f}-{high:.3f} | {met} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path, help="JSON files written by `bench_tuner.py train --output`")
    args = parser.parse_args()
    print(table(pool(args.results)))


if __name__ == "__main__":
    main()
