"""A tiny `train()` run in its own process, for test_resume.py; it can SIGKILL itself mid-run.

Usage: python resumable_run.py CONFIG.json [KILL_AFTER_BATCHES]

With KILL_AFTER_BATCHES=k the process sends itself SIGKILL while collating batch k+1, i.e. in the middle of the
training loop, with no chance to clean up (the same as `kill -9` or an out-of-memory kill).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path


sys.path[:0] = [str(Path(__file__).parents[1])]

from helpers.tiny_run import TinyVideoCaptions, collate  # noqa: E402

from peft_vop.training import TrainingConfig, train  # noqa: E402


def main() -> None:
    config = TrainingConfig.from_dict(json.loads(Path(sys.argv[1]).read_text()))
    kill_after = int(sys.argv[2]) if len(sys.argv) > 2 else None
    batches = 0

    def collate_or_die(items):
        nonlocal batches
        if kill_after is not None and batches == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        batches += 1
        return collate(items)

    train(config, train_dataset=TinyVideoCaptions(), collate_fn=collate_or_die)


if __name__ == "__main__":
    main()
