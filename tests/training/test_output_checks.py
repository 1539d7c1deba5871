"""Checks at the start of `train`: output locations that cannot be written, and precision a CPU cannot give."""

from __future__ import annotations

import subprocess

import pytest
from helpers.tiny_run import TinyVideoCaptions, base_config, collate

from peft_vop.training import ConfigurationError, train


@pytest.fixture
def read_only_parent(tmp_path):
    """`parent/run`: a writable run directory inside a read-only directory (two mounts; root only)."""
    parent, writable = tmp_path / "parent", tmp_path / "writable"
    parent.mkdir()
    writable.mkdir()
    steps = [
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(parent)],
        ["mkdir", str(parent / "run")],
        ["mount", "-o", "remount,ro", str(parent)],
        ["mount", "--bind", str(writable), str(parent / "run")],
    ]
    done = []
    for step in steps:
        result = subprocess.run(step, capture_output=True)
        if result.returncode:
            for mounted in reversed(done):
                subprocess.run(["umount", mounted])
            pytest.skip(f"cannot set up a read-only directory here: {result.stderr.decode().strip()}")
        if step[0] == "mount" and "remount,ro" not in step:
            done.append(step[-1])
    yield parent
    for mounted in reversed(done):
        subprocess.run(["umount", mounted], check=True)


def test_a_run_directory_in_a_read_only_parent_fails_before_training(read_only_parent):
    config = base_config(read_only_parent, variant="vop_p", max_steps=1)
    with pytest.raises(ConfigurationError, match=f"{read_only_parent}' does not accept new files.*Read-only"):
        train(config, train_dataset=TinyVideoCaptions(), collate_fn=collate)
    assert list((read_only_parent / "run").iterdir()) == []  # nothing was written, not even the config


def test_a_run_directory_below_a_read_only_directory_fails_before_training(read_only_parent):
    config = base_config(read_only_parent / "new", variant="vop_p", max_steps=1)
    with pytest.raises(ConfigurationError, match="does not accept new files"):
        train(config, train_dataset=TinyVideoCaptions(), collate_fn=collate)


@pytest.fixture
def fresh_accelerator_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()  # the precision is fixed once per process otherwise
    yield
    AcceleratorState._reset_state()


def test_fp16_on_a_cpu_says_once_that_it_runs_fp32(tmp_path, capsys, fresh_accelerator_state):
    config = base_config(tmp_path, variant="vop_p", max_steps=2, mixed_precision="fp16")
    train(config, train_dataset=TinyVideoCaptions(), collate_fn=collate)
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("fp16 has no effect on a CPU: training runs in fp32") == 1
