"""`benchmarks/bench_synthetic.py` on a small world: every method trains and is evaluated, reruns resume, reports."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from transformers import CLIPModel


sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_synthetic as bench

from peft_vop.synthetic import default_model_path


pytestmark = pytest.mark.slow


SMALL = ["--epochs", "1", "--batch-size", "8", "--train-videos", "16", "--val-videos", "4", "--test-videos", "8"]
METHODS = ["zero-shot", "full", "lora", "vision-only", "vop_f+p"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench")
    assert bench.main(["--output-dir", str(output), *SMALL, "--methods", *METHODS, "--no-progress"]) == 0
    return output


def test_every_method_is_trained_and_evaluated_on_the_test_split(finished):
    runs = json.loads((finished / "results.json").read_text())["runs"]
    by_method = {run["method"]: run for run in runs}
    assert sorted(by_method) == sorted(METHODS) and len(runs) == len(METHODS)
    clip = CLIPModel.from_pretrained(default_model_path())
    width = clip.config.vision_config.hidden_size
    layers = clip.config.vision_config.num_hidden_layers
    assert by_method["zero-shot"]["trainable"] == 0 and "learning_rate" not in by_method["zero-shot"]
    assert by_method["full"]["trainable"] == sum(p.numel() for p in clip.parameters()) - 1  # all but the temperature
    assert by_method["vision-only"]["trainable"] == layers * 8 * width
    assert 0 < by_method["lora"]["trainable"] < by_method["full"]["trainable"]
    for run in runs:
        test = run["test"]
        assert (
            set(test) >= {"t2v", "v2t", "order_pairs"} and test["order_pairs"]["pairs"] == 8
        )  # every test clip has its partner
        assert set(test["t2v"]) >= {"R@1", "R@5", "R@10", "MdR", "MnR"}
        if run["method"] != "zero-shot":
            assert (
                run["final_train_loss"] > 0
                and run["learning_rate"] == bench.LEARNING_RATES[bench.FAMILIES[run["method"]]]
            )


def test_a_rerun_keeps_finished_runs(finished):
    before = (finished / "results.json").read_text()
    assert bench.main(["--output-dir", str(finished), *SMALL, "--methods", *METHODS, "--no-progress"]) == 0
    assert json.loads((finished / "results.json").read_text())["runs"] == json.loads(before)["runs"]


def test_reports_have_a_row_and_two_bars_per_method(finished):
    table = (finished / "results.md").read_text()
    for method in METHODS:
        assert f"| `{method}` |" in table
    svg = ET.parse(finished / "results.svg").getroot()
    bars = [
        element for element in svg.iter("{http://www.w3.org/2000/svg}rect") if element.find("{*}title") is not None
    ]
    assert len(bars) == 2 * len(METHODS)
    assert bench.main(["--report", str(finished)]) == 0
    assert (finished / "results.md").read_text() == table


def test_bad_learning_rate_overrides_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--output-dir", str(tmp_path), "--learning-rate", "adapters=1e-3"])
    assert "FAMILY=LR" in capsys.readouterr().err
