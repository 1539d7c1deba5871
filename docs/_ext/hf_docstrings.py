"""Griffe extension for the API reference: read peft-vop's Hugging Face-style docstrings as Google-style ones.

The docstrings follow transformers' conventions, which mkdocstrings' Google parser reads almost, but not quite:

- an argument's type is written as prose, ``name (`int`, *optional*, defaults to 12):``. The Google parser would
  show that text verbatim, backticks and all, in the type column. Here it becomes a Python expression (``int``;
  ``str | os.PathLike`` for "`str` or `os.PathLike`") that mkdocstrings renders and cross-references like a
  signature annotation; the default already shows in the table's default column. A type that is not an expression
  ("`torch.Tensor` of shape `[B, F, D]`") keeps its words: the shape moves to the start of the description.
- ``[`TrainingConfig`]`` links to an object in transformers' doc-builder. Here it becomes a mkdocstrings
  cross-reference when the object is rendered in the API reference (exported by a public package's ``__all__``),
  and plain code otherwise, so the strict build never meets a reference it cannot resolve.

Only the text given to the docstring parser changes; the source files are untouched.
"""

from __future__ import annotations

import ast
import contextlib
import re
from typing import Any

import griffe


# Packages whose `__all__` the API reference renders (docs/api/*.md); only their exports are link targets.
RENDERED_PACKAGES = ("peft_vop", "peft_vop.data", "peft_vop.retrieval", "peft_vop.training", "peft_vop.synthetic")
PARAMETER_SECTIONS = {"args", "arguments", "parameters", "params", "attributes", "other parameters"}
SECTION_TITLE = re.compile(r"^(?P<title>[A-Z][A-Za-z ]*):\s*$")
PARAMETER_LINE = re.compile(r"^(?P<indent>\s+)(?P<name>\*{0,2}\w+) \(")
DOC_BUILDER_LINK = re.compile(r"\[`(?P<target>~?[A-Za-z_][\w.]*)`\](?![\[(])")


class HFDocstrings(griffe.Extension):
    """Rewrite Hugging Face-style argument types and links before mkdocstrings parses a docstring."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "peft_vop":
            return
        targets = _link_targets(loader)
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value, lambda name, obj=obj: _resolve(obj, name, targets))


def rewrite(text: str, resolve=lambda name: None) -> str:
    """The docstring `text` with argument types as expressions and doc-builder links as cross-references.

    `resolve(name)` returns the path a `[`name`]` link points to, or `None` to render it as code.
    """
    lines = text.splitlines()
    section = None
    for index, line in enumerate(lines):
        title = SECTION_TITLE.match(line)
        if title:
            section = title.group("title").lower()
            continue
        if section in PARAMETER_SECTIONS:
            lines[index] = _rewrite_parameter(line)
        elif section == "raises":
            # "`ValueError`: when ..." -> "ValueError: when ..."
            lines[index] = re.sub(r"^(\s+)`(\w[\w.]*)`:", r"\1\2:", line)
        elif section == "returns" and line.strip():
            lines[index] = _rewrite_returns(line)
            section = "returns (rest)"
    text = "\n".join(lines)

    def link(match: re.Match) -> str:
        target = match.group("target").lstrip("~")
        path = resolve(target)
        shown = target.rsplit(".", 1)[-1] if match.group("target").startswith("~") else target
        return f"[`{shown}`][{path}]" if path else f"`{shown}`"

    return DOC_BUILDER_LINK.sub(link, text)


def _rewrite_parameter(line: str) -> str:
    match = PARAMETER_LINE.match(line)
    if not match:
        return line
    start = match.end()  # just after "("
    depth, end = 1, start
    while end < len(line) and depth:
        depth += {"(": 1, ")": -1}.get(line[end], 0)
        end += 1
    if depth or not line[end:].startswith(":"):
        return line
    annotation, note = type_expression(line[start : end - 1])
    description = line[end + 1 :].strip()
    if note:
        description = f"{note}. {description}" if description else f"{note}."
    return f"{match.group('indent')}{match.group('name')} ({annotation}): {description}".rstrip()


def _rewrite_returns(line: str) -> str:
    # "`X` or `None`: what it is" -> "X | None: what it is" (the Google parser reads the part before the colon as
    # the type, with `returns_named_value: false`). Lines without a typed prefix stay descriptions.
    match = re.match(r"^(?P<indent>\s*)(?P<type>\[?`[^:]*?):\s(?P<description>.*)$", line)
    if not match:
        return line
    annotation, note = type_expression(match.group("type"))
    description = match.group("description")
    if note:
        description = f"{note}. {description}"
    return f"{match.group('indent')}{annotation}: {description}"


def type_expression(prose: str) -> tuple[str, str | None]:
    """`("`str` or `os.PathLike`, *optional*, defaults to 12")` -> `("str | os.PathLike", None)`.

    Returns the annotation to give the Google parser and, for types with a shape or dtype, a note for the
    description ("Shape `[B, D]`, `uint8`").
    """
    parts = [part.strip() for part in _split_top_level(prose)]
    kept = [part for part in parts if part and part != "*optional*" and not part.startswith("defaults to")]
    if not kept:
        return prose, None
    head, extra = re.sub(r"\[`([^`]+)`\]", r"`\1`", kept[0]), kept[1:]
    note = None
    shape = re.match(r"^(?P<type>.+?) of shape (?P<shape>`[^`]+`)(?: and dtype (?P<dtype>`[^`]+`))?$", head)
    if shape:
        head = shape.group("type")
        details = [shape.group("shape")] + ([shape.group("dtype")] if shape.group("dtype") else []) + extra
        note = "Shape " + ", ".join(details)
        extra = []
    # "`str`, `os.PathLike` or `bytes`": a union when every piece is one quoted name.
    pieces = [piece.strip() for part in [head, *extra] for piece in re.split(r"\bor\b", part)]
    if all(re.fullmatch(r"`[^`]+`", piece) for piece in pieces):
        candidate = " | ".join(piece.strip("`") for piece in pieces)
        if _is_expression(candidate):
            return candidate, note
    return ", ".join(kept).replace("`", ""), note


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets and backticks."""
    parts, depth, quoted, current = [], 0, False, []
    for char in text:
        if char == "`":
            quoted = not quoted
        elif not quoted and char in "([{":
            depth += 1
        elif not quoted and char in ")]}":
            depth -= 1
        if char == "," and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _is_expression(text: str) -> bool:
    try:
        ast.parse(text, mode="eval")
    except SyntaxError:
        return False
    return bool(text.strip())


def _objects(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


def _link_targets(loader: griffe.GriffeLoader) -> dict[str, str]:
    """Canonical path -> rendered path, for every object the API reference renders (and its direct members)."""
    targets: dict[str, str] = {}
    for package_path in RENDERED_PACKAGES:
        package = loader.modules_collection.get_member(package_path)
        for name in package.exports or ():
            if not isinstance(name, str) or name not in package.members:
                continue
            try:
                target = _final(package.members[name])
            except griffe.AliasResolutionError:
                continue
            rendered = f"{package_path}.{name}"
            targets.setdefault(target.path, rendered)
            for member_name in target.members:
                if not member_name.startswith("_"):
                    targets.setdefault(f"{target.path}.{member_name}", f"{rendered}.{member_name}")
    return targets


def _final(obj: griffe.Object | griffe.Alias) -> griffe.Object:
    return obj.final_target if obj.is_alias else obj


def _resolve(obj: griffe.Object, name: str, targets: dict[str, str]) -> str | None:
    head, _, rest = name.partition(".")
    scope = obj if obj.is_module or obj.is_class else obj.parent
    while scope is not None:
        try:
            path = scope.resolve(head)
        except (griffe.NameResolutionError, AttributeError):
            scope = scope.parent
            continue
        with contextlib.suppress(KeyError, griffe.AliasResolutionError, AttributeError, ValueError):
            path = _final(scope.modules_collection.get_member(path)).path
        full = f"{path}.{rest}" if rest else path
        return targets.get(full)
    return None
