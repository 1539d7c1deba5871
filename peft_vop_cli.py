"""The `vop` command's entry point, outside the `peft_vop` package so that help answers without loading the tuner.

Importing any module of `peft_vop` first runs `peft_vop/__init__.py`, which registers VoP with peft and so imports
peft, transformers and torch (seconds). `vop --help`, `vop --version` and `vop COMMAND --help` only need the argument
definitions of `peft_vop.cli`, which import nothing heavy. For them, `peft_vop` and its sub-packages are entered
without running their `__init__` files; argparse prints and exits. Every other command line imports the package
normally and runs `peft_vop.cli.main.main`.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence


HELP_WORDS = frozenset({"-h", "--help", "--version"})
PACKAGE = "peft_vop"


class _BarePackages(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Creates the packages of `peft_vop` without executing their `__init__.py`; modules load as usual."""

    def find_spec(self, fullname, path, target=None):
        if fullname != PACKAGE and not fullname.startswith(PACKAGE + "."):
            return None
        # Ask the finders behind this one: an editable install finds `peft_vop` through its own finder, not the path.
        spec = next(
            (
                found
                for finder in sys.meta_path
                if finder is not self and hasattr(finder, "find_spec")
                for found in [finder.find_spec(fullname, path, target)]
                if found is not None
            ),
            None,
        )
        if spec is None or spec.submodule_search_locations is None:
            return spec  # a module: import it normally
        return _bare(spec, self)

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module):
        pass  # the `__init__.py` is not run


def _bare(spec: importlib.machinery.ModuleSpec, loader: _BarePackages) -> importlib.machinery.ModuleSpec:
    bare = importlib.machinery.ModuleSpec(spec.name, loader, origin=spec.origin, is_package=True)
    bare.submodule_search_locations = list(spec.submodule_search_locations)
    return bare


def _answer_help(argv: list[str]) -> None:
    """Print the help (or version) that `argv` asks for and exit; return if argparse would go on to run a command."""
    finder = _BarePackages()
    sys.meta_path.insert(0, finder)
    try:
        from peft_vop.cli.main import build_parser, requested_command

        build_parser(requested_command(argv)).parse_args(argv)  # exits after printing help or the version
    finally:
        sys.meta_path.remove(finder)
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]  # a real run imports the package properly


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `vop` command line and return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if (not argv or HELP_WORDS & set(argv)) and PACKAGE not in sys.modules:  # (loaded already: nothing to save)
        _answer_help(argv)
    from peft_vop.cli.main import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
