"""What a text-video dataset is made of: one `VideoRecord` per video, and readers for the generic format.

The generic annotation format is JSON Lines, one object per video::

    {"video": "clips/0001.mp4", "captions": ["a dog runs", "a puppy plays"], "split": "train", "id": "0001"}

`video` is a path relative to the annotation file's directory (or absolute); `id` is optional and defaults to the
`video` string. A CSV file with the columns `video,caption,split[,id]` is accepted too; several rows with the same
video give it several captions. Hugging Face `datasets` with a video column are wrapped by `HFVideoRecords`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, overload


SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class VideoRecord:
    """One video and the captions that describe it.

    Args:
        video (`str` or `bytes`):
            Path to the video file, or its encoded bytes.
        captions (`tuple[str, ...]`):
            Its captions; for paragraph retrieval (DiDeMo, ActivityNet) a single caption, the sentences joined.
        id (`str`):
            Unique identifier within a dataset (keys the frame cache).
        split (`str`, *optional*):
            `"train"`, `"val"` or `"test"`, when known.
    """

    video: str | bytes
    captions: tuple[str, ...]
    id: str
    split: str | None = None

    @property
    def name(self) -> str:
        """How the video is named in messages: its path, or its id for in-memory bytes."""
        return self.video if isinstance(self.video, str) else f"{self.id} (<{len(self.video)} bytes>)"

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the current content of the video: size and modification time of a file, or a hash of
        in-memory bytes. A frame cache entry is reused only while this is unchanged."""
        if isinstance(self.video, bytes):
            return {"blake2b": hashlib.blake2b(self.video, digest_size=16).hexdigest()}
        try:
            stat = os.stat(self.video)
        except OSError:
            return {"missing": True}
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def check_unique_ids(records: Iterable[VideoRecord], where: str | None = None) -> None:
    """Raise `ValueError` if two records share an id (ids key the frame cache and the retrieval ground truth).

    Args:
        records (`Iterable[VideoRecord]`):
            The records.
        where (`str`, *optional*):
            Where the records come from (an annotation file), named in the message.
    """
    seen: set[str] = set()
    duplicates: list[str] = []
    for record in records:
        if record.id in seen:
            duplicates.append(record.id)
        seen.add(record.id)
    if duplicates:
        prefix = f"{where}: v" if where else "V"
        raise ValueError(
            f"{prefix}ideo ids must be unique; these appear more than once: {duplicates[:5]}. Give each video its own "
            "`id` (or merge the rows of one video into one with several captions)."
        )


def _resolve(path: str, base_dir: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base_dir, path))


def _check_split(split: str | None, where: str, wanted: str | None = None) -> None:
    if split is not None and split not in SPLITS:
        raise ValueError(f"{where}: `split` must be one of {SPLITS}; got {split!r}.")
    if split is None and wanted is not None:
        raise ValueError(
            f"{where}: this video has no `split`, so it cannot be selected by split={wanted!r} (it would be left "
            f"out silently); give every video a split ({', '.join(SPLITS)}), or read the file without a split."
        )


def _check_caption(caption: Any, where: str) -> None:
    if not isinstance(caption, str):
        raise ValueError(f"{where}: every caption must be a string; got {caption!r}.")
    if not caption.strip():
        raise ValueError(f"{where}: a caption is empty or only whitespace ({caption!r}); write it or remove it.")


def _decode_utf8(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{path}, line {line}: not UTF-8 text (byte {data[error.start]:#04x}); save the file as UTF-8."
        ) from error


def read_annotations(path: str | os.PathLike, split: str | None = None) -> list[VideoRecord]:
    """Read an annotation file in the generic format (JSON Lines, or CSV).

    Args:
        path (`str` or `os.PathLike`):
            A `.jsonl` file (one JSON object per line: `video`, `captions`, `split`, optional `id`) or a `.csv`
            file (columns `video`, `caption`, `split`, optional `id`; one row per caption).
        split (`str`, *optional*):
            Keep only the videos of this split (`"train"`, `"val"` or `"test"`). Every video of the file must then
            have a split; one without is an error naming its line, never silently left out.

    Returns:
        `list[VideoRecord]` in file order, video paths resolved against the annotation file's directory.

    Raises:
        `ValueError`: naming the file, the line and the field: text that is not UTF-8, a line that is not a JSON
            object, a `video` or `id` that is not a string (ids may also be integers), an empty or whitespace-only
            caption, a missing split under `split`, or two videos with one id.

    Example:

    ```python
    >>> import json, os, tempfile
    >>> from peft_vop.data import read_annotations
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "annotations.jsonl"), "w") as file:
    ...     _ = file.write(json.dumps({"video": "a.mp4", "captions": ["a cat", "a kitten"], "split": "test"}) + "\\n")
    >>> records = read_annotations(os.path.join(folder, "annotations.jsonl"), split="test")
    >>> records[0].captions, records[0].id, records[0].video == os.path.join(folder, "a.mp4")
    (('a cat', 'a kitten'), 'a.mp4', True)
    ```
    """
    path = os.fspath(path)
    _check_split(split, "read_annotations")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Annotation file not found: {path}")
    base_dir = os.path.dirname(os.path.abspath(path))
    if path.endswith(".csv"):
        records = _read_csv(path, base_dir, split)
    elif path.endswith((".jsonl", ".json")):
        records = _read_jsonl(path, base_dir, split)
    else:
        raise ValueError(f"Annotation file {path} must end in .jsonl (or .json) or .csv.")
    check_unique_ids(records, where=path)
    return [record for record in records if split is None or record.split == split]


def _read_jsonl(path: str, base_dir: str, split: str | None) -> list[VideoRecord]:
    records = []
    with open(path, "rb") as file:
        text = _decode_utf8(file.read(), path)
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {line_number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: not valid JSON ({error.msg}).") from error
        if not isinstance(entry, dict) or "video" not in entry or "captions" not in entry:
            raise ValueError(f"{where}: each line must be an object with `video` and `captions`; got {line!r}.")
        video, captions = entry["video"], entry["captions"]
        if not isinstance(video, str) or not video:
            raise ValueError(f"{where}: `video` must be a path (a non-empty string); got {video!r}.")
        if not isinstance(captions, list):
            raise ValueError(f"{where}: `captions` must be a list of strings; got {captions!r}.")
        for caption in captions:
            _check_caption(caption, f"{where}, `captions`")
        video_id = entry.get("id", video)
        if isinstance(video_id, bool) or not isinstance(video_id, str | int) or video_id == "":
            raise ValueError(f"{where}: `id` must be a non-empty string or an integer; got {video_id!r}.")
        _check_split(entry.get("split"), where, split)
        records.append(
            VideoRecord(
                video=_resolve(video, base_dir), captions=tuple(captions), id=str(video_id), split=entry.get("split")
            )
        )
    return records


def _read_csv(path: str, base_dir: str, split_wanted: str | None) -> list[VideoRecord]:
    grouped: dict[tuple[str, str | None, str], list[str]] = {}
    with open(path, "rb") as file:
        text = _decode_utf8(file.read(), path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = {"video", "caption", "split"} - set(reader.fieldnames or ())
    if missing:
        raise ValueError(
            f"{path}: a CSV annotation file needs the columns video, caption, split (and optionally id); "
            f"missing {sorted(missing)}, found {reader.fieldnames}."
        )
    for row in reader:
        where = f"{path}, line {reader.line_num}"
        if not row["video"]:
            raise ValueError(f"{where}: `video` is empty; every row needs a video path.")
        _check_caption(row["caption"], f"{where}, `caption`")
        split = row["split"] or None
        _check_split(split, where, split_wanted)
        key = (row.get("id") or row["video"], split, row["video"])
        grouped.setdefault(key, []).append(row["caption"])
    return [
        VideoRecord(video=_resolve(video, base_dir), captions=tuple(captions), id=video_id, split=split)
        for (video_id, split, video), captions in grouped.items()
    ]


def write_annotations(records: Iterable[VideoRecord], path: str | os.PathLike) -> None:
    """Write records as a generic JSON Lines annotation file (paths made relative to the file's directory).

    Args:
        records (`Iterable[VideoRecord]`):
            Records whose `video` is a path.
        path (`str` or `os.PathLike`):
            Destination `.jsonl` file.
    """
    path = os.fspath(path)
    base_dir = os.path.dirname(os.path.abspath(path))
    with open(path, "w", encoding="utf-8") as file:
        for record in records:
            if not isinstance(record.video, str):
                raise ValueError(f"Record {record.id!r} holds video bytes; only paths can be written to JSON Lines.")
            entry = {"video": os.path.relpath(record.video, base_dir), "captions": list(record.captions)}
            entry.update(split=record.split, id=record.id)
            file.write(json.dumps(entry) + "\n")


class HFVideoRecords(Sequence[VideoRecord]):
    """A Hugging Face `datasets.Dataset` viewed as a sequence of `VideoRecord`, read row by row.

    The video column may hold paths (strings), encoded bytes, or the `{"path", "bytes"}` dictionaries of a
    `datasets.Video` feature (which is cast to `decode=False`, since frames are decoded here, with PyAV).

    Args:
        dataset (`datasets.Dataset`):
            The dataset (one split).
        video_column (`str`, *optional*, defaults to `"video"`):
            Column with the video.
        caption_column (`str` or `list[str]`, *optional*, defaults to `"caption"`):
            Column(s) with captions; each holds a string or a list of strings.
        id_column (`str`, *optional*):
            Column with unique ids; defaults to the path, or the row number for bytes.
        video_dir (`str`, *optional*):
            Directory that relative video paths are relative to.
        split (`str`, *optional*):
            Split name recorded on every record.

    Example:

    ```python
    >>> from datasets import Dataset
    >>> from peft_vop.data import HFVideoRecords
    >>> table = Dataset.from_dict({"video": ["/data/a.mp4"], "caption": [["a cat", "a kitten"]]})
    >>> HFVideoRecords(table)[0].captions
    ('a cat', 'a kitten')
    ```
    """

    def __init__(
        self,
        dataset: Any,
        video_column: str = "video",
        caption_column: str | Sequence[str] = "caption",
        id_column: str | None = None,
        video_dir: str | None = None,
        split: str | None = None,
    ):
        from datasets import Video

        caption_columns = [caption_column] if isinstance(caption_column, str) else list(caption_column)
        for argument, column in [("video_column", video_column), ("id_column", id_column)] + [
            ("caption_column", column) for column in caption_columns
        ]:
            if column is not None and column not in dataset.column_names:
                raise ValueError(
                    f"`{argument}`={column!r} is not a column of the dataset; its columns are {dataset.column_names}."
                )
        if isinstance(dataset.features[video_column], Video) and dataset.features[video_column].decode:
            dataset = dataset.cast_column(video_column, Video(decode=False))
        self.dataset = dataset
        self.video_column = video_column
        self.caption_columns = caption_columns
        self.id_column = id_column
        self.video_dir = video_dir
        self.split = split

    def __len__(self) -> int:
        return len(self.dataset)

    @overload
    def __getitem__(self, index: int) -> VideoRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[VideoRecord]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        row = self.dataset[index]
        video = row[self.video_column]
        if isinstance(video, dict):  # a `datasets.Video(decode=False)` value
            video = video["bytes"] if video.get("bytes") is not None else video["path"]
        if isinstance(video, str) and self.video_dir is not None:
            video = _resolve(video, self.video_dir)
        if not isinstance(video, str | bytes):
            raise TypeError(
                f"Row {index}: the video column {self.video_column!r} must hold a path, bytes or a "
                f"`datasets.Video(decode=False)` value; got {type(video).__name__}."
            )
        if self.id_column is not None:
            video_id = str(row[self.id_column])
        else:
            video_id = video if isinstance(video, str) else str(index)
        return VideoRecord(video=video, captions=self._captions(row, f"Row {index}"), id=video_id, split=self.split)

    def _captions(self, row: dict[str, Any], where: str = "a row") -> tuple[str, ...]:
        captions: list[str] = []
        for column in self.caption_columns:
            value = row[column]
            captions.extend([value] if isinstance(value, str) else list(value))
        for caption in captions:
            _check_caption(caption, f"{where} of the dataset, caption column(s) {self.caption_columns}")
        return tuple(captions)

    def all_captions(self) -> list[tuple[str, ...]]:
        """The captions of every row, read from the caption columns only (no video bytes are loaded)."""
        table = self.dataset.select_columns(self.caption_columns)
        return [self._captions(row, f"Row {index}") for index, row in enumerate(table)]
