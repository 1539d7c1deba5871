"""Which dataset a command reads: one object, checked once, used by `vop prepare`, `vop eval` and `vop train`.

A dataset is named in one of three ways (`FLAG` is the command-line flag, `key` the training config key):

- `--annotations FILE`: a generic annotation file (`.jsonl` or `.csv`, see docs/data.md);
- `--benchmark NAME --annotations_dir DIR --video_dir DIR`: a benchmark read from its own annotation files;
- `--hf_dataset PATH_OR_ID`: a Hugging Face dataset (saved with `save_to_disk`, or a Hub id) with a video column.

This module imports only the standard library at import time, so that building a command's `--help` stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args


if TYPE_CHECKING:
    from .records import VideoRecord


# What to do with a video that cannot be decoded (`VideoTextDataset(on_error=...)`, `--on_error` of every command).
ErrorPolicy = Literal["raise", "repair", "skip"]
ERROR_POLICIES: tuple[str, ...] = get_args(ErrorPolicy)
SOURCES: tuple[str, ...] = ("annotations", "benchmark", "hf_dataset")
# The splits of the generic annotation format (peft_vop.data.records.SPLITS).
GENERIC_SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """
    A video-text dataset, as the `vop` commands and the training config name it.

    Building the object checks everything that needs no file: exactly one source, a known benchmark with both of its
    directories. [`DatasetSpec.read`] checks the files and reads one split.

    Args:
        annotations (`str`, *optional*):
            A generic annotation file (`.jsonl` or `.csv`).
        benchmark (`str`, *optional*):
            A benchmark name (`msrvtt`, `msvd`, `didemo`, `activitynet`, `lsmdc`), read from `annotations_dir` and
            `video_dir`.
        annotations_dir (`str`, *optional*):
            The benchmark's annotation directory.
        video_dir (`str`, *optional*):
            The benchmark's video directory, or the directory relative video paths of `hf_dataset` start from.
        hf_dataset (`str`, *optional*):
            A `datasets` dataset saved with `save_to_disk`, or a Hub id.
        video_column (`str`, defaults to `"video"`):
            Video column of `hf_dataset`.
        caption_column (`tuple[str, ...]`, defaults to `("caption",)`):
            Caption column(s) of `hf_dataset`.
        id_column (`str`, *optional*):
            Unique-id column of `hf_dataset` (default: the video path).
    """

    annotations: str | None = None
    benchmark: str | None = None
    annotations_dir: str | None = None
    video_dir: str | None = None
    hf_dataset: str | None = None
    video_column: str = "video"
    caption_column: tuple[str, ...] = ("caption",)
    id_column: str | None = None

    def __post_init__(self) -> None:
        given = [name for name in SOURCES if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                "Give exactly one dataset: --annotations (a generic annotation file), --benchmark (with "
                "--annotations_dir and --video_dir) or --hf_dataset"
                + (f"; got {', '.join('--' + name for name in given)}." if given else "; got none.")
            )
        if self.benchmark is not None:
            from .benchmark_readers import BENCHMARKS

            if self.benchmark not in BENCHMARKS:
                raise ValueError(f"--benchmark must be one of {sorted(BENCHMARKS)}; got {self.benchmark!r}.")
            for name in ("annotations_dir", "video_dir"):
                if not getattr(self, name):
                    raise ValueError(f"--benchmark {self.benchmark} needs --{name}.")

    @property
    def source(self) -> str:
        """Which of `annotations`, `benchmark`, `hf_dataset` names the data."""
        return next(name for name in SOURCES if getattr(self, name))

    def splits(self) -> tuple[str, ...] | None:
        """The accepted split names, or `None` when only the data knows them (`hf_dataset`)."""
        if self.annotations is not None:
            return GENERIC_SPLITS
        if self.benchmark is not None:
            from .benchmark_readers import BENCHMARKS

            return BENCHMARKS[self.benchmark].splits
        return None

    def check_split(self, split: str | None, flag: str = "--split") -> None:
        """Raise `ValueError` naming `flag` when `split` is not a split of this dataset."""
        splits = self.splits()
        if split is not None and splits is not None and split not in splits:
            where = f"--benchmark {self.benchmark}" if self.benchmark else "--annotations"
            raise ValueError(f"{flag} must be one of {', '.join(splits)} for {where}; got {split!r}.")

    def check_files(self) -> None:
        """Raise `FileNotFoundError` naming the flag whose file or directory does not exist."""
        if self.annotations is not None and not os.path.isfile(self.annotations):
            raise FileNotFoundError(f"--annotations: file not found: {self.annotations}")
        for name in ("annotations_dir", "video_dir"):
            directory = getattr(self, name)
            if directory and not os.path.isdir(directory):
                raise FileNotFoundError(f"--{name}: directory not found: {directory}")

    def describe(self) -> dict[str, str | None]:
        """What names the data, for the metrics and reports a command writes."""
        if self.annotations is not None:
            return {"annotations": self.annotations}
        if self.benchmark is not None:
            return {"benchmark": self.benchmark, "annotations_dir": self.annotations_dir}
        return {"hf_dataset": self.hf_dataset}

    def read(self, split: str | None, *, flag: str = "--split") -> Sequence[VideoRecord]:
        """
        Read one split (all videos when `split` is `None` for an annotation file; a benchmark's test split).

        Args:
            split (`str`, *optional*): the split.
            flag (`str`, defaults to `"--split"`): the option that gave `split`, named in errors.

        Returns:
            `Sequence[VideoRecord]`: the split's videos; never empty.
        """
        self.check_files()
        self.check_split(split, flag)
        if self.annotations is not None:
            from .records import read_annotations

            records: Sequence[VideoRecord] = read_annotations(self.annotations, split=split)
        elif self.benchmark is not None:
            from .benchmark_readers import read_benchmark

            records = read_benchmark(self.benchmark, self.annotations_dir, self.video_dir, split)
        else:
            records = self._read_hf(split, flag)
        if len(records) == 0:
            raise ValueError(f"The dataset has no videos{f' in split {split!r} ({flag})' if split else ''}.")
        return records

    def _read_hf(self, split: str | None, flag: str) -> Sequence[VideoRecord]:
        import datasets

        from .records import HFVideoRecords

        if os.path.isdir(self.hf_dataset):
            loaded = datasets.load_from_disk(self.hf_dataset)
        else:
            try:
                loaded = datasets.load_dataset(self.hf_dataset)
            except Exception as error:  # the Hub client raises many types; all mean "cannot get it"
                raise ValueError(
                    f"--hf_dataset {self.hf_dataset!r} is not a local dataset directory and could not be loaded "
                    f"from the Hub ({type(error).__name__}: {error})"
                ) from error
        if isinstance(loaded, datasets.DatasetDict):
            name = split or ("test" if "test" in loaded else None)
            if name not in loaded:
                raise ValueError(f"{flag} must be one of the dataset's splits {list(loaded)}; got {split!r}.")
            loaded = loaded[name]
        return HFVideoRecords(
            loaded,
            video_column=self.video_column,
            caption_column=list(self.caption_column),
            id_column=self.id_column,
            video_dir=self.video_dir,
            split=split,
        )
