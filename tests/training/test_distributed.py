"""Two CPU processes (gloo) with b videos each must give the loss and gradients of one process with 2b videos."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


pytestmark = pytest.mark.slow


SCRIPT = Path(__file__).with_name("distributed_step.py")
REPO = Path(__file__).parents[2]


def torchrun(processes: int, *arguments: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    completed = subprocess.run([*command, *arguments], env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed


def run_step(output: Path, processes: int, global_batch: int, family: str = "clip") -> None:
    output.mkdir()
    torchrun(processes, str(SCRIPT), str(output), str(global_batch), family)


# CLIP gathers for the softmax loss; SigLIP for its pairwise sigmoid loss (with its frozen logit bias).
@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_two_processes_match_one_process_with_the_global_batch(tmp_path, family):
    run_step(tmp_path / "single", processes=1, global_batch=6, family=family)
    run_step(tmp_path / "pair", processes=2, global_batch=6, family=family)
    single = torch.load(tmp_path / "single" / "rank0.pt")
    ranks = [torch.load(tmp_path / "pair" / f"rank{rank}.pt") for rank in range(2)]

    for variant, expected in single.items():
        for rank, result in enumerate(ranks):
            got = result[variant]
            # Every process reports the loss of the whole global batch.
            torch.testing.assert_close(
                got["loss"], expected["loss"], rtol=1e-6, atol=1e-6, msg=f"{variant} rank {rank}"
            )
            assert got["gradients"].keys() == expected["gradients"].keys()
            for name, gradient in expected["gradients"].items():
                assert gradient.abs().sum() > 0, f"{variant}: {name} gets no gradient"
                # Float sums run in another order on 2 processes: agree to float32 noise relative to the largest entry.
                scale = gradient.abs().max().item()
                torch.testing.assert_close(
                    got["gradients"][name], gradient, rtol=1e-4, atol=1e-5 * scale, msg=f"{variant} rank {rank} {name}"
                )


def test_vop_train_on_two_processes_follows_the_single_process_run(tmp_path):
    from helpers.tiny_run import tiny_world, world_clip_dir
    from safetensors.torch import load_file

    arguments = [
        "-m",
        "peft_vop.cli.main",
        "train",
        f"--model-name-or-path={world_clip_dir()}",
        f"--annotations={tiny_world()}",
        "--variant=vop_c",
        "--num-frames=4",
        "--batch-size=4",
        "--num-epochs=2",
        "--learning-rate=0.01",
        "--adam-epsilon=1",
        "--num-workers=0",
        "--checkpoint-steps=3",
        "--report-to=tensorboard",
    ]
    pair = torchrun(2, *arguments, f"--output-dir={tmp_path / 'pair'}")
    torchrun(1, *arguments, f"--output-dir={tmp_path / 'single'}")

    assert pair.stdout.count("Adapter written to") == 1  # the main process reports, once
    checkpoint = tmp_path / "pair" / "checkpoints" / "step-00000003"
    assert {path.name for path in checkpoint.glob("random_states_*.pkl")} == {
        "random_states_0.pkl",
        "random_states_1.pkl",
    }
    assert len(list((tmp_path / "pair" / "logs").rglob("events.out.tfevents.*"))) == len(
        list((tmp_path / "single" / "logs").rglob("events.out.tfevents.*"))
    )
    # Same global batches and gathered negatives: the runs differ only in the order of float32 sums (the batch is
    # reduced inside one backward on one process, across gloo's all-reduce on two). The step test above bounds that
    # difference at |dg| <= 1e-5 * G per gradient tensor (G its largest entry). AdamW's direction m/(sqrt(v) + eps)
    # changes by at most 2 |dg| / eps for a change dg of the gradients, so with eps = 1 (set above; the default 1e-8
    # turns any sign flip of a near-zero gradient into a full step of difference) and G <= 1, each of the 4 steps
    # differs by at most lr * 2e-5 = 2e-7 per parameter, about 1e-6 over the run. 1e-5 leaves a factor of 10 for
    # the parameters' own feedback into later gradients. (Measured: 7.5e-9 with eps = 1; 8.8e-5 with eps = 1e-8.)
    pair_adapter = load_file(tmp_path / "pair" / "adapter_model.safetensors")
    single_adapter = load_file(tmp_path / "single" / "adapter_model.safetensors")
    assert pair_adapter.keys() == single_adapter.keys()
    differences = {name: (pair_adapter[name] - value).abs().max().item() for name, value in single_adapter.items()}
    largest = max(differences, key=differences.get)
    assert differences[largest] <= 1e-5, f"largest difference {differences[largest]:.3g} in {largest}: {differences}"
