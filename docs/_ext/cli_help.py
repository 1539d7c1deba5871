"""MkDocs hook: replace `<!-- vop-help: COMMAND -->` with the `--help` text of `vop COMMAND`, at build time.

The command-line reference is then always the parser's own text. A marker for a command the `vop` parser does not
have fails the build (strict or not), so a renamed or removed command cannot leave a stale page behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import re

from mkdocs.exceptions import PluginError


MARKER = re.compile(r"^<!-- vop-help:(?P<command>[^>]*)-->$", re.MULTILINE)
HELP_WIDTH = "100"  # argparse wraps at $COLUMNS; fixed so the page does not depend on the terminal


def help_text(command: str) -> str:
    """`vop [COMMAND] --help`, as the user would see it."""
    from peft_vop.cli.main import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        output = io.StringIO()
        with contextlib.redirect_stdout(output), contextlib.suppress(SystemExit):
            build_parser().parse_args([*command.split(), "--help"])
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    text = output.getvalue().rstrip()
    if not text.startswith("usage:"):
        raise PluginError(f"`vop {command} --help` printed no usage text; is `{command}` a vop command?")
    return text


def on_page_markdown(markdown: str, page, config, files) -> str:
    def replace(match: re.Match) -> str:
        command = match.group("command").strip()
        return f"```text\n{help_text(command)}\n```"

    return MARKER.sub(replace, markdown)
