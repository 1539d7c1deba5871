"""Two CPU processes (gloo) with b videos each must give the loss and gradients of one process with 2b videos."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch


SCRIPT = Path(__file__).with_name("distributed_step.py")
REPO = Path(__file__).parents[2]


def run_step(output: Path, processes: int, global_batch: int) -> None:
    output.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        str(SCRIPT),
        str(output),
        str(global_batch),
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]


def test_two_processes_match_one_process_with_the_global_batch(tmp_path):
    run_step(tmp_path / "single", processes=1, global_batch=6)
    run_step(tmp_path / "pair", processes=2, global_batch=6)
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
