"""Kill a save at every file-system step and check what is left: used by test_atomic_saves.py.

Usage: python killed_saves.py adapter|checkpoint DIRECTORY

A forked child repeats one save with a trap on every call that changes the file system (mkdir, rename, replace,
link, unlink, rmdir, and the atomic directory exchange): the N-th such call sends the child SIGKILL, for N = 1, 2, ...
until a save completes. After each kill the parent checks the directory, then the next child saves again over what
the killed one left. Prints one line `kill points: N` at the end; any broken state raises (exit status 1).

- `adapter`: two VoP adapters of different shapes (text prompts of length 4 and 8) are saved alternately into one
  directory; after every kill it must hold, byte for byte, the complete old or the complete new adapter.
- `checkpoint`: a run's step-2 checkpoint is saved again (a re-save after resuming) and step 3 is saved with
  `keep=1` (pruning); after every kill, every `step-N` is complete and the newest complete checkpoint is step 2 or 3.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path


sys.path[:0] = [str(Path(__file__).parents[1])]

import torch  # noqa: E402


torch.set_num_threads(1)
MUTATIONS = ("mkdir", "rename", "replace", "link", "unlink", "remove", "rmdir")


def trap_after(limit: int) -> None:
    """SIGKILL this process at its `limit`-th file-system change."""
    count = 0

    def wrap(original):
        def trapped(*args, **kwargs):
            nonlocal count
            count += 1
            if count == limit:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)

        return trapped

    for name in MUTATIONS:
        setattr(os, name, wrap(getattr(os, name)))
    try:
        from peft_vop import _atomic
    except ImportError:  # peft-vop before the module existed, to show what the tests catch
        return
    _atomic._exchange = wrap(_atomic._exchange)


def killed_at(limit: int, save, *args) -> bool:
    """Run `save(*args)` in a forked child killed at its `limit`-th change; `True` if it was killed."""
    pid = os.fork()
    if pid == 0:
        try:
            trap_after(limit)
            save(*args)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0
    return False


def adapter_files(directory: Path) -> tuple[bytes, bytes]:
    return tuple((directory / name).read_bytes() for name in ("adapter_config.json", "adapter_model.safetensors"))


def check_adapters(directory: Path) -> int:
    from helpers.clip import tiny_clip
    from peft import get_peft_model

    import peft_vop

    models = [
        get_peft_model(tiny_clip(), peft_vop.VoPConfig(variant="vop", num_frames=4, text_prompt_length=length))
        for length in (4, 8)
    ]
    references = []
    for index, model in enumerate(models):
        reference = directory.parent / f"reference-{index}"
        model.save_pretrained(reference)
        references.append(adapter_files(reference))
    target = directory / "adapter"
    models[0].save_pretrained(target)
    limit = 0
    while True:
        limit += 1
        current = references.index(adapter_files(target))  # raises if the directory is neither adapter
        if not killed_at(limit, models[1 - current].save_pretrained, target):
            break
        assert adapter_files(target) in references, f"kill point {limit}: the adapter directory is mixed"
    assert references.index(adapter_files(target)) == 1 - current
    leftovers = [path.name for path in directory.iterdir() if path.name.startswith(".")]
    assert not leftovers, f"temporary folders left after a complete save: {leftovers}"
    # Loads with peft, as the newest adapter.
    from peft import PeftModel

    loaded = PeftModel.from_pretrained(tiny_clip(), target)
    assert loaded.peft_config["default"].text_prompt_length == (4, 8)[1 - current]
    return limit - 1


def check_checkpoints(directory: Path) -> int:
    from accelerate import Accelerator
    from helpers.clip import tiny_clip
    from peft import get_peft_model

    import peft_vop
    from peft_vop.training.checkpointing import (
        STATE_NAME,
        TrainerState,
        latest_checkpoint,
        register_adapter_hooks,
        remove_stale_temporaries,
        save_checkpoint,
    )
    from peft_vop.training.contrastive import VideoTextEncoder

    accelerator = Accelerator(cpu=True)
    encoder = VideoTextEncoder(get_peft_model(tiny_clip(), peft_vop.VoPConfig(variant="vop_p", num_frames=4)))
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad])
    encoder, optimizer = accelerator.prepare(encoder, optimizer)
    register_adapter_hooks(accelerator)
    run = directory / "run"
    for step in (1, 2):
        save_checkpoint(accelerator, run, TrainerState(global_step=step), keep=None)
    complete = sorted(path.name for path in (run / "checkpoints" / "step-00000002").rglob("*"))
    checked = 0
    for step, keep in ((2, None), (3, 1)):
        limit = 0
        while True:
            limit += 1
            if not killed_at(limit, save_checkpoint, accelerator, run, TrainerState(global_step=step), keep):
                break
            checked += 1
            for checkpoint in (run / "checkpoints").glob("step-*"):
                files = sorted(path.name for path in checkpoint.rglob("*"))
                assert files == complete, f"kill point {limit}: {checkpoint.name} is incomplete: {files}"
            remove_stale_temporaries(run)  # what the next start does
            latest = latest_checkpoint(run)
            assert latest is not None and latest.name in ("step-00000002", "step-00000003"), (limit, latest)
            assert TrainerState.load(latest).global_step == int(latest.name[5:])
            assert (latest / STATE_NAME).is_file()
    names = sorted(path.name for path in (run / "checkpoints").iterdir())
    assert names == ["step-00000003"], names
    return checked


def main() -> None:
    mode, directory = sys.argv[1], Path(sys.argv[2])
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    count = check_adapters(directory) if mode == "adapter" else check_checkpoints(directory)
    print(f"kill points: {count}")


if __name__ == "__main__":
    main()
