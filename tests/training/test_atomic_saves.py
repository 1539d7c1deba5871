"""Adapters and checkpoints under kills, full disks and interrupted swaps: complete old or complete new, never a mix."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.clip import tiny_clip
from helpers.tiny_run import base_config
from peft import get_peft_model

import peft_vop
from peft_vop import _atomic
from peft_vop.training import TrainingConfig
from peft_vop.training.checkpointing import (
    CONFIG_NAME,
    STATE_NAME,
    TrainerState,
    check_output_dir,
    latest_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)


SCRIPT = Path(__file__).with_name("killed_saves.py")
REPO = Path(__file__).parents[2]


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_an_adapter_resave_killed_at_every_step_leaves_the_old_or_the_new_adapter(tmp_path):
    completed = run_script("adapter", str(tmp_path / "work"))
    assert completed.returncode == 0, completed.stderr[-3000:]
    kill_points = int(completed.stdout.split("kill points:")[1])
    assert kill_points >= 5  # staging, peft's files, the swap, the cleanup


@pytest.mark.slow
def test_a_checkpoint_resave_killed_at_every_step_keeps_the_newest_complete_checkpoint(tmp_path):
    completed = run_script("checkpoint", str(tmp_path / "work"))
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert int(completed.stdout.split("kill points:")[1]) >= 10


def _vop(length: int):
    return get_peft_model(tiny_clip(), peft_vop.VoPConfig(variant="vop", num_frames=4, text_prompt_length=length))


def test_a_save_cleans_up_what_killed_saves_left(tmp_path):
    target = tmp_path / "adapter"
    _vop(4).save_pretrained(target)
    dead = 2**22 + 12345  # above the default pid_max: no such process
    for kind in ("saving", "old", "tmp"):
        (tmp_path / f".adapter.{kind}-{dead}-abcd1234").mkdir()
    (tmp_path / f".other.saving-{dead}-abcd1234").mkdir()  # another directory's temporary is not ours to remove
    _vop(8).save_pretrained(target)
    assert sorted(path.name for path in tmp_path.iterdir()) == [f".other.saving-{dead}-abcd1234", "adapter"]
    assert json.loads((target / "adapter_config.json").read_text())["text_prompt_length"] == 8


def test_an_interrupted_two_rename_swap_is_repaired(tmp_path, monkeypatch):
    # Where renameat2(RENAME_EXCHANGE) is missing, the swap takes two renames; a death between them leaves the old
    # directory aside under `.NAME.old-PID-*`, and the next save (or start) puts it back.
    target = tmp_path / "adapter"
    _vop(4).save_pretrained(target)
    monkeypatch.setattr(_atomic, "_exchange", lambda first, second: False)
    os.rename(target, tmp_path / f".adapter.old-{2**22 + 1}-abcd1234")  # the state after the first rename
    assert _atomic.clean_up(tmp_path) == ["restored adapter from an interrupted save"]
    assert json.loads((target / "adapter_config.json").read_text())["text_prompt_length"] == 4
    _vop(8).save_pretrained(target)  # the fallback swap itself works
    assert json.loads((target / "adapter_config.json").read_text())["text_prompt_length"] == 8
    assert [path.name for path in tmp_path.iterdir()] == ["adapter"]


def test_saving_into_a_run_directory_keeps_its_other_entries(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "step-00000001").mkdir(parents=True)
    (run / "checkpoints" / "step-00000001" / STATE_NAME).write_text("{}")
    (run / CONFIG_NAME).write_text("{}")
    _vop(4).save_pretrained(run)
    (run / "adapter_model.bin").write_bytes(b"weights of an older save in the other format")
    _vop(8).save_pretrained(run)
    names = sorted(path.name for path in run.iterdir())
    assert names == ["README.md", "adapter_config.json", "adapter_model.safetensors", "checkpoints", CONFIG_NAME]
    assert (run / "checkpoints" / "step-00000001" / STATE_NAME).read_text() == "{}"


def test_a_write_error_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    _atomic.write_json(path, {"step": 1})

    def disk_full(temporary: str) -> None:
        Path(temporary).write_text('{"step": ')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError, match="No space left"):
        _atomic.write_file(path, disk_full)
    assert json.loads(path.read_text()) == {"step": 1}
    assert [entry.name for entry in tmp_path.iterdir()] == ["state.json"]


@pytest.fixture
def small_filesystem(tmp_path):
    """A 1 MiB tmpfs (root only; skipped where mounting is not allowed)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def fill(directory: Path, leave: int) -> None:
    """Fill the file system of `directory` until about `leave` bytes are free."""
    stat = os.statvfs(directory)
    free = stat.f_bavail * stat.f_frsize
    with open(directory / "filler", "wb") as file:
        file.write(b"\0" * max(free - leave, 0))


def test_a_full_disk_during_an_adapter_save_keeps_the_old_adapter(small_filesystem):
    target = small_filesystem / "adapter"
    _vop(4).save_pretrained(target)
    before = {path.name: path.read_bytes() for path in target.iterdir()}
    fill(small_filesystem, leave=8 * 1024)  # the card fits, the weights of the new adapter do not
    big = get_peft_model(
        tiny_clip(), peft_vop.VoPConfig(variant="vop_p", num_frames=4, text_prompt_length=8, vision_prompt_length=64)
    )
    with pytest.raises(Exception, match="No space left|os error 28"):
        big.save_pretrained(target)
    assert {path.name: path.read_bytes() for path in target.iterdir()} == before
    assert sorted(path.name for path in small_filesystem.iterdir()) == ["adapter", "filler"]


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_checkpoint(small_filesystem):
    from accelerate import Accelerator

    from peft_vop.training.checkpointing import register_adapter_hooks
    from peft_vop.training.contrastive import VideoTextEncoder

    accelerator = Accelerator(cpu=True)
    encoder = VideoTextEncoder(get_peft_model(tiny_clip(), peft_vop.VoPConfig(variant="vop_p", num_frames=4)))
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad])
    encoder, optimizer = accelerator.prepare(encoder, optimizer)
    register_adapter_hooks(accelerator)
    run = small_filesystem / "run"
    save_checkpoint(accelerator, run, TrainerState(global_step=1), keep=1)
    before = sorted(str(path.relative_to(run)) for path in run.rglob("*"))
    fill(small_filesystem, leave=16 * 1024)
    with pytest.raises(Exception, match="No space left|os error 28"):
        save_checkpoint(accelerator, run, TrainerState(global_step=2), keep=1)
    assert sorted(str(path.relative_to(run)) for path in run.rglob("*")) == before
    assert latest_checkpoint(run).name == "step-00000001"


def test_a_checkpoint_set_aside_by_an_interrupted_resave_is_resumed_and_announced(tmp_path, capsys):
    # The state peft-vop 0.1 left when killed between the two renames of a re-save: both copies complete, aside.
    config = base_config(tmp_path, variant="vop_p")
    run = Path(config.output_dir)
    run.mkdir()
    config.save(run / CONFIG_NAME)
    for name in (".tmp-old-step-00000004", ".tmp-step-00000004", "step-00000002"):
        (run / "checkpoints" / name).mkdir(parents=True)
        TrainerState(global_step=int(name[-8:])).save(run / "checkpoints" / name)
    resumed = TrainingConfig(**{**config.to_dict(), "resume_from_checkpoint": "latest"})
    assert check_output_dir(resumed) == run / "checkpoints" / "step-00000004"
    assert "restored step-00000004" in capsys.readouterr().out
    remove_stale_temporaries(run)
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]


def test_a_fresh_start_says_why_although_checkpoints_exist(tmp_path, capsys):
    config = base_config(tmp_path, variant="vop_p")
    run = Path(config.output_dir)
    (run / "checkpoints" / "step-00000003").mkdir(parents=True)  # half-deleted: no trainer state
    config.save(run / CONFIG_NAME)
    resumed = TrainingConfig(**{**config.to_dict(), "resume_from_checkpoint": "latest"})
    assert check_output_dir(resumed) is None
    out = capsys.readouterr().out
    assert "Starting from step 0" in out and "no complete checkpoint" in out and "step-00000003" in out

    overwritten = TrainingConfig(**{**config.to_dict(), "overwrite_output_dir": True})
    (run / "checkpoints" / "step-00000003" / STATE_NAME).write_text("{}")
    assert check_output_dir(overwritten) is None
    assert "1 checkpoint(s) of the earlier run" in capsys.readouterr().out


def test_an_output_directory_that_cannot_be_written_fails_at_start(tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    config = base_config(tmp_path, variant="vop_p")
    with pytest.raises(ValueError, match="not a directory"):
        check_output_dir(TrainingConfig(**{**config.to_dict(), "output_dir": str(blocked / "run")}))


def test_saving_into_the_working_directory_keeps_the_process_in_it(tmp_path, monkeypatch):
    (tmp_path / "adapter").mkdir()
    monkeypatch.chdir(tmp_path / "adapter")
    _vop(4).save_pretrained(".")
    _vop(8).save_pretrained(".")
    assert Path.cwd() == tmp_path / "adapter" and os.path.samefile(".", tmp_path / "adapter")
    assert json.loads(Path("adapter_config.json").read_text())["text_prompt_length"] == 8
