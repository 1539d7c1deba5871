"""The `vop` command line: one naming convention with hidden earlier spellings, fast help, shared defaults, hints."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import get_args

import pytest

from peft_vop.cli import dataset_arguments, demo
from peft_vop.cli.arguments import DEFAULT_NUM_FRAMES, DEFAULT_SEED
from peft_vop.cli.main import COMMANDS, build_parser, main
from peft_vop.training.config import TrainingConfig, Variant


REPO = Path(__file__).parents[2]
HEAVY = ("torch", "peft", "accelerate", "datasets", "av")


def parse(*argv: str):
    return build_parser(argv[0]).parse_args(list(argv))


def help_text(command: str) -> str:
    return build_parser(command)._subparsers._group_actions[0].choices[command].format_help()


def run_front_door(
    *argv: str, env: dict[str, str] | None = None, installed_from: Path | None = None
) -> subprocess.CompletedProcess:
    """`vop ARGV` through the console script's entry point, reporting at exit which top-level modules were loaded.

    With `installed_from`, the command runs in that folder and finds peft-vop only as installed (as a user's shell
    does: an editable install finds the package through its own import hook, not through the path); otherwise the
    repository is put on `PYTHONPATH`.
    """
    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('MODULES', sorted({m.split('.')[0] for m in sys.modules}), "
        "sorted(m for m in sys.modules if m.startswith('transformers.models')), file=sys.stderr))\n"
        "import peft_vop_cli\n"
        f"sys.exit(peft_vop_cli.main({list(argv)!r}))\n"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if installed_from is not None:
        environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**environment, **(env or {})},
        cwd=installed_from,
    )


def loaded_modules(completed: subprocess.CompletedProcess) -> tuple[set[str], list[str]]:
    line = next(line for line in completed.stderr.splitlines() if line.startswith("MODULES"))
    top, models = line.removeprefix("MODULES ").split("] [")
    return set(eval(top + "]")), eval("[" + models)


@pytest.mark.parametrize("installed", [False, True], ids=["repository", "installed"])
@pytest.mark.parametrize("argv", [["--help"], ["--version"], *[[name, "--help"] for name in COMMANDS]])
def test_help_and_version_answer_without_torch_or_peft(argv, installed, tmp_path):
    completed = run_front_door(*argv, installed_from=tmp_path if installed else None)
    assert completed.returncode == 0, completed.stderr
    top, models = loaded_modules(completed)
    assert not set(HEAVY) & top, f"vop {' '.join(argv)} imported {sorted(set(HEAVY) & top)}"
    assert not models  # no model code of transformers
    if argv[0] != "train":  # `vop train --help` reads the flags off the dataclass with transformers' HfArgumentParser
        assert "transformers" not in top
    if argv == ["--version"]:
        assert completed.stdout.startswith("peft-vop ")


def test_the_front_door_runs_commands_with_the_package_loaded(tmp_path):
    completed = run_front_door("demo", "--output_dir", str(tmp_path), "--val_videos", "3")
    assert completed.returncode == 2
    assert "--val_videos must be even" in completed.stderr


def test_train_help_shows_defaults_and_required_options_only_under_their_names():
    text = help_text("train")
    assert "--model_name_or_path" in text and "Required: here or in --config." in text
    assert "(default: 0.01)" in text and "(default: 42)" in text and "(default: vop)" in text
    assert "--num_train_epochs" in text and "--no_horizontal_flip" in text and "--no_random_crop" in text
    assert "'none' for null" not in text
    for hidden in ("--model-name-or-path", "--num-epochs", "--num_epochs", "--adapter-option", "--adam-betas"):
        assert hidden not in text


@pytest.mark.parametrize("command", ["prepare", "eval", "demo"])
def test_other_commands_list_options_under_one_name(command):
    text = help_text(command)
    assert "--disable_tqdm" in text and "--no-progress" not in text
    for hidden in ("--model ", "--output ", "--num-workers", "--epochs", "--overwrite ", "--cache "):
        assert hidden not in text


def test_earlier_spellings_parse_to_the_new_names():
    args = parse("prepare", "--model", "m", "--output", "o", "--annotations", "a", "--num-frames", "4",
                 "--overwrite", "--no-progress", "--on-error", "skip")  # fmt: skip
    assert (args.model_name_or_path, args.output_dir, args.num_frames) == ("m", "o", 4)
    assert args.overwrite_output_dir and args.disable_tqdm and args.on_error == "skip"
    args = parse("eval", "--model", "m", "--adapter", "a", "--cache", "c", "--batch-size", "3", "--no-progress")
    assert (args.model_name_or_path, args.adapter_name_or_path, args.frame_cache, args.batch_size) == (
        "m",
        "a",
        "c",
        3,
    )
    args = parse("demo", "--output-dir", "d", "--epochs", "2", "--train-videos", "8", "--overwrite")
    assert (args.output_dir, args.num_train_epochs, args.train_videos, args.overwrite_output_dir) == ("d", 2, 8, True)


def test_train_flags_and_earlier_spellings_reach_the_config(tmp_path):
    from peft_vop.cli.train import resolve_config

    config_file = tmp_path / "train.json"
    config_file.write_text(json.dumps({"output_dir": "out", "annotations": "a.jsonl", "num_epochs": 7, "seed": 3}))
    new = resolve_config(
        parse("train", "--config", str(config_file), "--model_name_or_path", "default", "--learning_rate", "0.5",
              "--adapter_options", "{text_prompt_length: 2}", "--no_horizontal_flip", "--eval_split", "none")
    )  # fmt: skip
    assert (new.model_name_or_path, new.learning_rate, new.num_train_epochs, new.seed) == ("default", 0.5, 7, 3)
    assert new.adapter_options == {"text_prompt_length": 2} and new.augmentations == ("crop",)
    assert new.eval_split is None
    old = resolve_config(
        parse("train", "--config", str(config_file), "--model-name-or-path", "default", "--num-epochs", "2",
              "--adapter-option", "text_prompt_length=2", "--adam-betas", "0.8", "0.9", "--no-horizontal-flip")
    )  # fmt: skip
    assert old.num_train_epochs == 2 and old.adapter_options == {"text_prompt_length": 2}
    assert old.adam_betas == (0.8, 0.9) and old.augmentations == ("crop",)


def test_a_missing_required_option_names_its_flag(tmp_path, capsys):
    assert main(["train", "--annotations", "a.jsonl", "--output_dir", str(tmp_path / "run")]) == 2
    assert "`model_name_or_path` is required (--model_name_or_path" in capsys.readouterr().err


def test_defaults_agree_across_commands():
    prepare = parse("prepare", "--model", "m", "--output", "o")
    demo_args = parse("demo")
    config = TrainingConfig(model_name_or_path="m", output_dir="o", annotations="a")
    assert prepare.seed == demo_args.seed == config.seed == DEFAULT_SEED
    assert config.num_frames == DEFAULT_NUM_FRAMES
    evaluate = parse("eval", "--model", "m")
    choices = {
        name: next(a for a in build_parser(name)._subparsers._group_actions[0].choices[name]._actions
                   if a.dest == "on_error").choices
        for name in ("prepare", "eval", "train")
    }  # fmt: skip
    assert len({tuple(c) for c in choices.values()}) == 1, choices
    assert evaluate.on_error == prepare.on_error == config.on_error == "raise"


def test_names_spelled_out_for_fast_help_match_the_library():
    import peft_vop
    from peft_vop.data import ERROR_POLICIES

    assert get_args(Variant) == tuple(peft_vop.VARIANTS)
    assert dataset_arguments.ERROR_POLICIES == ERROR_POLICIES


def test_demo_refuses_bad_flags_with_status_2(tmp_path, capsys):
    assert main(["demo", "--output_dir", str(tmp_path), "--num_train_epochs", "0"]) == 2
    assert "--num_train_epochs must be at least 1" in capsys.readouterr().err
    assert demo.plural(1, "epoch") == "1 epoch" and demo.plural(2, "epoch") == "2 epochs"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the probe is closed


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE=1 forbids downloading"),
        ({"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}, "Hub cannot be reached"),
    ],
)
@pytest.mark.parametrize("command", ["prepare", "train"])
def test_an_unreachable_model_id_fails_fast_with_a_hint(tmp_path, env, expected, command):
    annotations = tmp_path / "a.jsonl"
    annotations.write_text("")
    model = "peft-vop-tests/no-such-clip"
    argv = [
        command,
        "--model_name_or_path",
        model,
        "--annotations",
        str(annotations),
        "--output_dir",
        str(tmp_path / "o"),
    ]
    started = time.perf_counter()
    completed = run_front_door(*argv, env={"HF_HOME": str(tmp_path / "hf"), **env})
    assert completed.returncode == 2, completed.stderr
    assert time.perf_counter() - started < 120  # one refused connection, not minutes of retries
    error = completed.stderr
    assert model in error and expected in error and "--model_name_or_path default" in error


def test_portable_name_of_the_shipped_model():
    from peft_vop.model_names import portable_model_name, resolve_model_name
    from peft_vop.synthetic import default_model_path

    assert resolve_model_name("default") == str(default_model_path())
    assert portable_model_name(default_model_path()) == portable_model_name("default") == "default"
    assert portable_model_name("openai/clip-vit-base-patch32") == "openai/clip-vit-base-patch32"
