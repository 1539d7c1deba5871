"""Atomic writes of files and whole directories: the one place where peft-vop puts bytes on disk safely.

Every writer in the package (adapters, checkpoints, frame caches, run configs, metrics) goes through this module, so
that a kill, a full disk or a crash at any instant leaves either the old content or the complete new content at the
final path, never a mix:

- a file is written to a hidden temporary sibling, flushed to disk (`fsync`), and renamed over the final path
  ([`write_file`], [`write_text`], [`write_json`]);
- a directory is built in a hidden staging sibling and swapped with the final directory in one step
  ([`replace_directory`]): on Linux with `renameat2(RENAME_EXCHANGE)`, elsewhere with two renames whose
  in-between state [`clean_up`] repairs.

Temporary names are `.NAME.KIND-OWNER` next to `NAME` (`KIND`: `tmp`, `saving`, `old` or `deleting`; `OWNER`: the
writing process id and a random suffix). [`clean_up`] removes those whose process is gone.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|saving|old|deleting)-(?P<owner>[A-Za-z0-9-]+)$")


def temporary_name(name: str, kind: str) -> str:
    """The hidden name of a temporary sibling of `name` owned by this process (`kind`: `tmp`, `saving`, ...)."""
    return f".{name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def write_file(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """
    Write `path` atomically: `write(temporary_path)` fills a hidden sibling, which is flushed and renamed over `path`.

    Args:
        path (`str` or `os.PathLike`): the final file.
        write (`Callable[[str], None]`): writes the complete content to the path it is given.
    """
    path = Path(path)
    temporary = path.with_name(temporary_name(path.name, "tmp"))
    try:
        write(str(temporary))
        # Some writers (safetensors) create files readable by their owner only: every file gets the mode that
        # `open()` gives a new file, so a cache or an adapter shared through a group or a volume is readable as a whole.
        os.chmod(temporary, _new_file_mode())
        fsync_file(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    fsync_directory(path.parent)


def _new_file_mode() -> int:
    """`0o666` less the process's umask, read without changing it where the system allows (no race with threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            mask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    write_file(path, lambda temporary: Path(temporary).write_bytes(data))


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    write_file(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, value: Any, indent: int | None = 2, **dump_options: Any) -> None:
    """Write `value` as JSON (with a final newline) to `path` atomically."""
    write_text(path, json.dumps(value, indent=indent, **dump_options) + "\n")


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a file's content to disk, so that a rename that publishes it also survives a power cut."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_directory(directory: str | os.PathLike) -> None:
    """Flush a directory's entries (new names, renames) to disk."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(directory: str | os.PathLike) -> None:
    """Flush every file and directory under `directory` to disk."""
    for root, _, files in os.walk(directory):
        for name in files:
            fsync_file(os.path.join(root, name))
        fsync_directory(root)


def check_writable(directory: str | os.PathLike) -> None:
    """
    Raise `ValueError` unless `directory` (created later if absent) and its parent accept new files, by creating and
    removing a probe in each: a directory is swapped into place through its parent. Call it before expensive work.

    Args:
        directory (`str` or `os.PathLike`): an output directory.
    """
    directory = Path(directory).absolute()
    existing = next(path for path in (directory, *directory.parents) if path.exists())
    probes = [existing] if existing != directory else [directory, directory.parent]
    for place in probes:
        if not place.is_dir():
            raise ValueError(f"Cannot write to {str(directory)!r}: {str(place)!r} is not a directory.")
        probe = place / f".vop-write-probe-{os.getpid()}"
        try:
            probe.mkdir()
            probe.rmdir()
        except OSError as error:
            raise ValueError(
                f"Cannot write to {str(directory)!r}: {str(place)!r} does not accept new files ({error.strerror}); "
                "choose a writable output directory."
            ) from error


@contextmanager
def replacing_directory(
    target: str | os.PathLike, keep_other_entries: bool = True, replaced: tuple[str, ...] = ()
) -> Iterator[Path]:
    """
    Build the new content of the directory `target` in a staging directory, then swap it in as a whole.

    Everything written under the yielded path appears at `target` at once when the block ends without an error;
    if the block raises (or the process dies), `target` keeps its old content and the staging directory is removed
    (by the `finally` here, or by the next [`clean_up`]).

    Args:
        target (`str` or `os.PathLike`): the directory to write (created if absent).
        keep_other_entries (`bool`, *optional*, defaults to `True`): entries of the old `target` that the block did
            not write (a run's `checkpoints/`, `logs/`, ...) are carried into the new one, as hard links where the
            file system allows (no data is copied), otherwise as copies.
        replaced (`tuple[str, ...]`, *optional*): names that belong to the old content even when the block does
            not write them (an adapter's weights in another format), so they are never carried over.

    Example:

    ```python
    >>> import os, tempfile
    >>> from peft_vop._atomic import replacing_directory
    >>> folder = os.path.join(tempfile.mkdtemp(), "adapter")
    >>> with replacing_directory(folder) as staging:
    ...     _ = (staging / "adapter_config.json").write_text("{}")
    >>> sorted(os.listdir(folder))
    ['adapter_config.json']
    ```
    """
    target = Path(target).absolute()
    if target.exists() and not target.is_dir():
        raise ValueError(f"{str(target)!r} must be a directory; it is a file.")
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_up(target.parent, only=target.name)
    staging = target.with_name(temporary_name(target.name, "saving"))
    staging.mkdir()
    try:
        yield staging
        if keep_other_entries and target.is_dir():
            _carry_over(target, staging, skip=set(replaced))
        fsync_tree(staging)
        working_directory = os.getcwd()
        replace_directory(staging, target)
        if Path(working_directory).is_relative_to(target):
            os.chdir(working_directory)  # the process stood in the old directory: enter the new one
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_directory(staging: str | os.PathLike, target: str | os.PathLike) -> None:
    """
    Put the complete directory `staging` at `target` in one step, and delete the old `target`.

    Args:
        staging (`str` or `os.PathLike`): the new content, a sibling of `target` (same file system).
        target (`str` or `os.PathLike`): the final path; absent, or a directory that is replaced.
    """
    staging, target = Path(staging), Path(target)
    if not target.exists():
        os.rename(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now the old content, under the staging name
    else:
        # No atomic exchange here: between these two renames `target` is absent, and `clean_up` puts the old
        # directory back if the process dies there.
        old = target.with_name(temporary_name(target.name, "old"))
        os.rename(target, old)
        os.rename(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    fsync_directory(target.parent)


def remove_directory(path: str | os.PathLike) -> None:
    """Delete a directory so that it disappears at once: renamed to a hidden name first, then deleted."""
    path = Path(path)
    if not path.exists():
        return
    doomed = path.with_name(temporary_name(path.name.lstrip("."), "deleting"))
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def clean_up(directory: str | os.PathLike, only: str | None = None, all_owners: bool = False) -> list[str]:
    """
    Remove the temporary files and directories that interrupted writes left in `directory`, and put back a
    directory that an interrupted non-atomic swap left absent.

    Args:
        directory (`str` or `os.PathLike`): where to look.
        only (`str`, *optional*): only the temporaries of this entry name.
        all_owners (`bool`, *optional*, defaults to `False`): also those of processes that are still running
            (safe only where no other process writes, e.g. a run's own `checkpoints/` at its start).

    Returns:
        `list[str]`: what was done, one line per entry, for messages.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    done = []
    for path in sorted(directory.iterdir()):
        match = _TEMPORARY.match(path.name)
        if match is None or (only is not None and match["name"] != only):
            continue
        if not all_owners and _owner_is_alive(match["owner"]):
            continue
        final = directory / match["name"]
        if match["kind"] == "old" and not final.exists():
            os.rename(path, final)
            done.append(f"restored {final.name} from an interrupted save")
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path.name}")
        else:
            path.unlink(missing_ok=True)
            done.append(f"removed {path.name}")
    return done


def _owner_is_alive(owner: str) -> bool:
    pid = owner.split("-", 1)[0]
    if not pid.isdigit() or int(pid) <= 0:
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _carry_over(source: Path, destination: Path, skip: set[str]) -> None:
    """Link (or copy) into `destination` every entry of `source` that `destination` does not have."""
    for entry in source.iterdir():
        if entry.name in skip or _TEMPORARY.match(entry.name) or (destination / entry.name).exists():
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, destination / entry.name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, destination / entry.name, follow_symlinks=False)


def _link_or_copy(source: str | os.PathLike, destination: str | os.PathLike, follow_symlinks: bool = True) -> None:
    if not os.path.islink(source):
        try:
            os.link(source, destination)
            return
        except OSError:
            pass
    shutil.copy2(source, destination, follow_symlinks=follow_symlinks)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _load_renameat2():
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux `renameat2(RENAME_EXCHANGE)`); `False` where that is not supported."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))
