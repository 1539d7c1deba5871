"""The code examples of the documentation site (docs/**/*.md) work: they are read from the pages, not copied.

- ```python blocks run: the blocks of one page in order, in one fresh namespace, in a working directory of its own,
  offline (Hub access is switched off, so a block that needs it fails instead of downloading), under a time limit.
  All pages run in one child process, so torch and transformers are imported once. A traceback names the page and
  its line.
- A Python block that needs what a test cannot have is marked on the line before it with an HTML comment, which the
  site does not show: `<!-- docs-test: skip-hub -->` (the Hugging Face Hub or the network), `skip-gpu`, `skip-data`
  (a dataset or files the reader has and the test does not). Such a block must still compile.
- Shell blocks: every `vop ...` command, and the program that `accelerate launch -m peft_vop.cli.main ...`,
  `torchrun -m peft_vop.cli.main ...` or `python -m peft_vop.cli.main ...` starts, is parsed by the real `vop`
  parser (`peft_vop.cli.main.build_parser`), the launcher's own options by the launcher's parser, and `hf ...`
  (huggingface_hub's CLI) by its click parser; nothing runs.
  `python examples/X.py ...` and `python benchmarks/X.py ...` must name a script of the repository whose argument
  parser accepts the arguments (the script runs up to its argument parsing only).
- YAML and JSON blocks parse; a YAML mapping of `TrainingConfig` keys must be a valid `TrainingConfig`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml


REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<mode>[\w-]+)\s*-->\s*$")
SKIP_MODES = {"skip-hub", "skip-gpu", "skip-data"}
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<language>[\w+-]*)")
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
PAGE_TIMEOUT_S = 300


@dataclasses.dataclass
class Block:
    page: Path
    line: int  # 1-based line of the first line of code
    language: str
    code: str
    mode: str | None  # the docs-test marker before the block, if any

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def pages() -> list[Path]:
    return sorted(path for path in DOCS.rglob("*.md") if "_ext" not in path.parts)


def read_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, with the docs-test marker written on the line before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = opening.group("indent"), opening.group("fence")
        previous = next((line for line in reversed(lines[:index]) if line.strip()), "")
        marker = MARKER.match(previous)
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        body = [line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines[index + 1 : end]]
        blocks.append(
            Block(
                page=page,
                line=index + 2,
                language=opening.group("language").lower(),
                code="\n".join(body) + "\n",
                mode=marker.group("mode") if marker else None,
            )
        )
        index = end + 1
    return blocks


ALL_BLOCKS = [block for page in pages() for block in read_blocks(page)]
PYTHON_BLOCKS = [block for block in ALL_BLOCKS if block.language in ("python", "py")]
RUNNABLE_PAGES = sorted({block.page for block in PYTHON_BLOCKS if block.mode is None})


def test_markers_are_known():
    modes = {block.mode for block in ALL_BLOCKS if block.mode is not None}
    assert modes <= SKIP_MODES, f"unknown docs-test markers {modes - SKIP_MODES}; use one of {sorted(SKIP_MODES)}"


def test_the_site_has_examples():
    assert len(PYTHON_BLOCKS) >= 10
    assert len(RUNNABLE_PAGES) >= 5


# ---------------------------------------------------------------------------------------------------- Python

# Runs in one child process for all pages (importing torch and transformers once): each page in its own working
# directory, its blocks in order in one fresh namespace, under a per-page time limit. Blocks are compiled with the
# page's path and padded so that a traceback's line numbers are the page's. Results go to a JSON file, since the
# examples print to stdout.
RUNNER = textwrap.dedent(
    """
    import json, os, signal, sys, traceback

    pages, results_file, timeout = json.load(sys.stdin), sys.argv[1], int(sys.argv[2])

    def out_of_time(signum, frame):
        raise TimeoutError(f"the page's examples ran longer than {timeout} s")

    signal.signal(signal.SIGALRM, out_of_time)
    results = {}
    for page in pages:
        os.makedirs(page["directory"])
        os.chdir(page["directory"])
        namespace = {"__name__": "__main__"}
        signal.alarm(timeout)
        try:
            for block in page["blocks"]:
                exec(compile("\\n" * (block["line"] - 1) + block["code"], page["page"], "exec"), namespace)
            results[page["page"]] = None
        except BaseException:
            results[page["page"]] = traceback.format_exc()[-6000:]
        finally:
            signal.alarm(0)
        with open(results_file, "w") as file:  # after every page, so a crash still leaves the earlier results
            json.dump(results, file)
    """
)


def offline_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    )
    return env


def run_offline(runner: str, payload: Any, cwd: Path) -> Any:
    """Run `runner` (Python source) in a fresh offline interpreter with `payload` as JSON on stdin; its last stdout
    line, parsed as JSON, is the result."""
    result = subprocess.run(
        [sys.executable, "-c", runner],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=offline_environment(),
        timeout=PAGE_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def page_results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Run the Python examples of the selected pages; map each page to `None` (passed) or its traceback."""
    selected = {
        item.callspec.params["page"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_python_examples_run"
    }
    root = tmp_path_factory.mktemp("docs-examples")
    payload = [
        {
            "page": str(page),
            "directory": str(root / f"page-{index}"),
            "blocks": [
                {"line": block.line, "code": block.code}
                for block in PYTHON_BLOCKS
                if block.page == page and block.mode is None
            ],
        }
        for index, page in enumerate(RUNNABLE_PAGES)
        if page in selected
    ]
    results_file = root / "results.json"
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(results_file), str(PAGE_TIMEOUT_S)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=root,
        env=offline_environment(),
        timeout=PAGE_TIMEOUT_S * len(payload) + 60,
    )
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    crash = f"the example process ended with status {result.returncode}:\n{result.stderr[-6000:]}"
    return {str(page): results.get(str(page), crash) for page in selected}


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE_PAGES, ids=lambda page: str(page.relative_to(DOCS)))
def test_python_examples_run(page: Path, page_results: dict[str, str | None]):
    failure = page_results[str(page)]
    lines = [block.line for block in PYTHON_BLOCKS if block.page == page and block.mode is None]
    assert failure is None, (
        f"a Python example of {page.relative_to(REPO)} (blocks at lines {lines}) failed:\n{failure}"
    )


@pytest.mark.parametrize(
    "block", [block for block in PYTHON_BLOCKS if block.mode is not None], ids=lambda block: block.where
)
def test_marked_python_examples_compile(block: Block):
    compile(block.code, block.where, "exec")


# ---------------------------------------------------------------------------------------------------- shell

LAUNCHER_WRAPPERS = {"nice", "time", "nohup", "env"}


def shell_commands(code: str) -> list[list[str]]:
    """The simple commands of a shell block: continuation lines joined, comments dropped, split at `&&`, `|`, `;`.

    The variable of a `for NAME in VALUE ...; do` loop is replaced by its first value in the loop's commands.
    """
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for token in lexer:
            if token and set(token) <= set(";&|"):
                commands.append(current)
                current = []
            else:
                current.append(token)
        commands.append(current)
    variables: dict[str, str] = {}
    simple = []
    for command in commands:
        while command and command[0] in ("do", "then", "else", "done", "fi"):
            command = command[1:]
        if len(command) >= 4 and command[0] == "for" and command[2] == "in":
            variables[command[1]] = command[3]
            continue
        command = [
            re.sub(r"\$\{?(\w+)\}?", lambda match: variables.get(match.group(1), match.group(0)), token)
            for token in command
        ]
        if command:
            simple.append(_strip_wrappers(command))
    return [command for command in simple if command]


def _strip_wrappers(command: list[str]) -> list[str]:
    """Drop `VAR=value` prefixes and `nice -n 5`, `time` and similar wrappers."""
    while command:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", command[0]):
            command = command[1:]
        elif command[0] in LAUNCHER_WRAPPERS:
            command = command[1:]
            while command and command[0].startswith("-"):
                command = command[2:] if command[0] in ("-n",) else command[1:]
        else:
            break
    return command


def check_vop_arguments(arguments: list[str], where: str) -> None:
    from peft_vop.cli.main import build_parser

    try:
        build_parser().parse_args(arguments)
    except SystemExit as error:
        pytest.fail(f"{where}: `vop {shlex.join(arguments)}` does not parse (exit status {error.code})")


def check_hf_arguments(arguments: list[str], where: str) -> None:
    """Parse an `hf` (huggingface_hub) command line with the CLI's own click parser, down to its subcommand."""
    import click
    from huggingface_hub.cli.hf import app

    try:
        context = app.make_context("hf", list(arguments))
        while isinstance(context.command, click.Group):
            with warnings.catch_warnings():  # click 8.2 deprecates `protected_args`, where the subcommand still is
                warnings.simplefilter("ignore", DeprecationWarning)
                rest = [*context.protected_args, *context.args]
            if not rest:
                break
            name, command, rest = context.command.resolve_command(context, rest)
            context = command.make_context(name, rest, parent=context)
    except click.ClickException as error:
        pytest.fail(f"{where}: `hf {shlex.join(arguments)}` does not parse: {error.format_message()}")


def check_launcher(kind: str, arguments: list[str], where: str) -> tuple[str | None, list[str]]:
    """Parse a launcher's own options; return the script it starts (`None` for `-m peft_vop.cli.main`) and the
    arguments it passes on."""
    if kind == "accelerate":
        from accelerate.commands.launch import launch_command_parser

        parser = launch_command_parser()
    else:
        from torch.distributed.run import get_args_parser

        parser = get_args_parser()
    try:
        parsed = parser.parse_args(arguments)
    except SystemExit as error:
        pytest.fail(f"{where}: the {kind} options of `{shlex.join(arguments)}` do not parse (exit {error.code})")
    module = getattr(parsed, "module", False) or getattr(parsed, "m", False)
    if module:
        assert parsed.training_script == "peft_vop.cli.main", f"{where}: launches module {parsed.training_script}"
        return None, list(parsed.training_script_args)
    return parsed.training_script, list(parsed.training_script_args)


def check_command(command: list[str], where: str) -> tuple[str, str, list[str]] | None:
    """Check what can be checked in this process; return `(where, script, arguments)` for a repository script,
    whose arguments `test_documented_scripts_accept_their_arguments` checks."""
    program, arguments = command[0], command[1:]
    script = None
    if program == "vop":
        check_vop_arguments(arguments, where)
    elif program in ("accelerate", "torchrun") and (program == "torchrun" or arguments[:1] == ["launch"]):
        script, arguments = check_launcher(program, arguments[1:] if program == "accelerate" else arguments, where)
        if script is None:
            check_vop_arguments(arguments, where)
    elif program == "hf":
        check_hf_arguments(arguments, where)
    elif re.fullmatch(r"python[\d.]*", program):
        if arguments[:2] == ["-m", "peft_vop.cli.main"]:
            check_vop_arguments(arguments[2:], where)
        elif arguments and arguments[0].endswith(".py"):
            script, arguments = arguments[0], arguments[1:]
    if script is None:
        return None
    assert (REPO / script).is_file(), f"{where}: {script} is not a script of the repository"
    return where, str(REPO / script), arguments


SHELL_BLOCKS = [block for block in ALL_BLOCKS if block.language in SHELL_LANGUAGES]


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda block: block.where)
def test_shell_commands_parse(block: Block):
    for command in shell_commands(block.code):
        check_command(command, block.where)


# Runs every documented script up to the end of its outermost argument parsing, in one process: a script that parses
# its arguments stops right there; a wrong or unused flag makes argparse exit with 2. `parse_known_args` is what both
# `parse_args` and transformers' `HfArgumentParser.parse_args_into_dataclasses` call; sub-command parsers call it
# again inside, so only the outermost call stops the script.
SCRIPT_RUNNER = textwrap.dedent(
    """
    import argparse, json, runpy, sys
    original = argparse.ArgumentParser.parse_known_args
    depth = 0

    class Parsed(Exception):
        pass

    def parse_known_args(self, args=None, namespace=None):
        global depth
        depth += 1
        try:
            result = original(self, args, namespace)
        finally:
            depth -= 1
        if depth:
            return result
        if result[1]:
            self.error("unrecognized arguments: " + " ".join(result[1]))
        raise Parsed

    argparse.ArgumentParser.parse_known_args = parse_known_args
    failures = []
    for where, script, arguments in json.load(sys.stdin):
        sys.argv = [script, *arguments]
        try:
            runpy.run_path(script, run_name="__main__")
        except Parsed:
            continue
        except SystemExit as error:
            failures.append(f"{where}: {script} {' '.join(arguments)} exited with {error.code} while parsing")
            continue
        failures.append(f"{where}: {script} never parsed its arguments with argparse")
    print(json.dumps(failures))
    """
)


@pytest.mark.slow
def test_documented_scripts_accept_their_arguments(tmp_path: Path):
    calls = [
        call
        for block in SHELL_BLOCKS
        for command in shell_commands(block.code)
        if (call := check_command(command, block.where)) is not None
    ]
    if not calls:
        pytest.skip("no script is called on the site")
    failures = run_offline(SCRIPT_RUNNER, calls, tmp_path)
    assert not failures, "\n".join(failures)


def test_shell_command_splitting():
    code = textwrap.dedent(
        """\
        vop train --config a.yaml   # a comment
        accelerate launch --num_processes 8 \\
            -m peft_vop.cli.main train --config a.yaml && tensorboard --logdir runs
        PYTHONPATH=. nice -n 5 python examples/quickstart.py --steps 3
        for lr in 1e-4 1e-3; do
            vop train --learning-rate $lr --output-dir runs/${lr}
        done
        """
    )
    assert shell_commands(code) == [
        ["vop", "train", "--config", "a.yaml"],
        ["accelerate", "launch", "--num_processes", "8", "-m", "peft_vop.cli.main", "train", "--config", "a.yaml"],
        ["tensorboard", "--logdir", "runs"],
        ["python", "examples/quickstart.py", "--steps", "3"],
        ["vop", "train", "--learning-rate", "1e-4", "--output-dir", "runs/1e-4"],
    ]


def test_a_wrong_flag_fails():
    with pytest.raises(pytest.fail.Exception, match="does not parse"):
        check_command(["vop", "eval", "--no-such-flag"], "here")


# ---------------------------------------------------------------------------------------------------- data blocks


@pytest.mark.parametrize(
    "block", [block for block in ALL_BLOCKS if block.language in ("yaml", "yml")], ids=lambda block: block.where
)
def test_yaml_examples(block: Block):
    from peft_vop.training import TrainingConfig

    content = yaml.safe_load(block.code)
    fields = {field.name for field in dataclasses.fields(TrainingConfig)}
    if isinstance(content, dict) and "model_name_or_path" in content:
        unknown = set(content) - fields
        assert not unknown, f"{block.where}: keys that are not TrainingConfig fields: {sorted(unknown)}"
        TrainingConfig.from_dict(content)


@pytest.mark.parametrize(
    "block", [block for block in ALL_BLOCKS if block.language in ("json", "jsonl")], ids=lambda block: block.where
)
def test_json_examples(block: Block):
    try:
        json.loads(block.code)
    except json.JSONDecodeError:
        for line in block.code.splitlines():  # JSON Lines
            if line.strip():
                json.loads(line)


# ---------------------------------------------------------------------------------------------------- docstrings

# The API reference (docs/api/*.md) renders the docstrings of the objects its `::: identifier` lines name, examples
# included; those examples run too, with doctest where they are written as `>>>` sessions, so their printed output
# is checked. Known failures are listed with the reason; one that passes again only warns, so that its entry can go.
KNOWN_DOCSTRING_FAILURES: dict[str, str] = {}

DOCSTRING_RUNNER = textwrap.dedent(
    """
    import doctest, importlib, inspect, json, re, sys

    def resolve(identifier):
        parts = identifier.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for name in parts[cut:]:
                obj = getattr(obj, name)
            return obj
        raise ImportError(identifier)

    def documented(identifier, obj):
        yield identifier, obj
        if inspect.ismodule(obj):
            for name in getattr(obj, "__all__", ()):
                yield from documented(f"{identifier}.{name}", getattr(obj, name))
        elif inspect.isclass(obj):
            for name, member in vars(obj).items():
                if not name.startswith("_"):
                    member = getattr(member, "__func__", getattr(member, "fget", member))
                    if callable(member):
                        yield f"{identifier}.{name}", member

    FENCE = re.compile(r"```(?:py|python)[ \\t]*\\n(.*?)```", re.S)
    seen, failures, count = set(), {}, 0
    for identifier in json.load(sys.stdin):
        for name, obj in documented(identifier, resolve(identifier)):
            if id(obj) in seen or not (inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj)):
                continue
            seen.add(id(obj))
            for code in FENCE.findall(inspect.getdoc(obj) or ""):
                count += 1
                output = []
                test = doctest.DocTestParser().get_doctest(code, {"__name__": "__main__"}, name, None, 0)
                if test.examples:
                    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
                    if runner.run(test, out=output.append).failed:
                        failures[name] = "".join(output)[-3000:]
                else:
                    try:
                        exec(compile(code, name, "exec"), {"__name__": "__main__"})
                    except Exception as error:
                        failures[name] = f"{type(error).__name__}: {error}"
    print(json.dumps({"count": count, "failures": failures}))
    """
)


def api_identifiers() -> list[str]:
    identifiers = []
    for page in sorted((DOCS / "api").glob("*.md")):
        identifiers += re.findall(r"^::: ([\w.]+)", page.read_text(encoding="utf-8"), re.MULTILINE)
    return identifiers


@pytest.mark.slow
def test_docstring_examples_run(tmp_path: Path):
    identifiers = api_identifiers()
    assert "peft_vop.VoPConfig" in identifiers
    report = run_offline(DOCSTRING_RUNNER, identifiers, tmp_path)
    assert report["count"] >= 5, "the API reference renders fewer docstring examples than expected"
    failures = report["failures"]
    for name in sorted(set(KNOWN_DOCSTRING_FAILURES) - set(failures)):
        warnings.warn(
            f"the docstring example of {name} passes now; remove it from KNOWN_DOCSTRING_FAILURES", stacklevel=1
        )
    unexpected = {name: text for name, text in failures.items() if name not in KNOWN_DOCSTRING_FAILURES}
    assert not unexpected, "docstring examples failed:\n" + "\n".join(f"--- {n}\n{t}" for n, t in unexpected.items())
