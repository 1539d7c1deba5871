"""Command-line options that name a video dataset, shared by `vop prepare` and `vop eval`.

A dataset is given in one of three ways:

- `--annotations FILE`: a generic annotation file (`.jsonl` or `.csv`, see docs/data.md);
- `--benchmark NAME --annotations-dir DIR --video-dir DIR`: a benchmark's own annotation files;
- `--hf-dataset PATH_OR_ID`: a Hugging Face dataset (saved with `save_to_disk`, or a Hub id) with a video column.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from ..data.benchmarks import BENCHMARKS, read_benchmark
from ..data.dataset import ERROR_POLICIES
from ..data.records import SPLITS, HFVideoRecords, VideoRecord, read_annotations


class ArgumentError(ValueError):
    """A command-line argument that cannot work, found before any heavy work starts."""


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that select a dataset and how its videos are decoded."""
    source = parser.add_argument_group("dataset (give exactly one of --annotations, --benchmark, --hf-dataset)")
    source.add_argument("--annotations", metavar="FILE", help="generic annotation file (.jsonl or .csv)")
    source.add_argument("--benchmark", choices=sorted(BENCHMARKS), help="a benchmark read from its own files")
    source.add_argument("--annotations-dir", metavar="DIR", help="directory of the benchmark's annotation files")
    source.add_argument(
        "--video-dir",
        metavar="DIR",
        help="directory of the videos (benchmarks), or that relative paths of --hf-dataset are relative to",
    )
    source.add_argument("--hf-dataset", metavar="PATH_OR_ID", help="a `datasets` dataset saved to disk, or a Hub id")
    source.add_argument("--video-column", default="video", help="video column of --hf-dataset (default: video)")
    source.add_argument(
        "--caption-column",
        action="append",
        metavar="NAME",
        help="caption column of --hf-dataset; repeat for several (default: caption)",
    )
    source.add_argument("--id-column", help="unique-id column of --hf-dataset (default: the video path)")
    benchmark_splits = "; ".join(f"{name}: {'/'.join(b.splits)}" for name, b in sorted(BENCHMARKS.items()))
    source.add_argument(
        "--split",
        help="split to use: train/val/test for --annotations and --hf-dataset; for --benchmark one of its splits "
        f"({benchmark_splits}; default: the benchmark's test split)",
    )
    frames = parser.add_argument_group("frames")
    frames.add_argument("--num-frames", type=int, help="frames sampled per video (default: 12)")
    frames.add_argument(
        "--on-error",
        choices=ERROR_POLICIES,
        default="raise",
        help="unreadable videos: raise (stop, naming the file), repair (retry, then repeat the last good frame; "
        "videos with no readable frame are skipped), skip (leave the video out); counts are always reported",
    )
    frames.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes (default: 2)")


def check_dataset_arguments(args: argparse.Namespace) -> None:
    """Raise `ArgumentError` for a dataset selection that cannot work (missing files, wrong split...)."""
    given = [name for name in ("annotations", "benchmark", "hf_dataset") if getattr(args, name)]
    if len(given) != 1:
        raise ArgumentError(
            "give exactly one of --annotations, --benchmark, --hf-dataset"
            + (f" (got {', '.join('--' + name.replace('_', '-') for name in given)})" if given else "")
        )
    if args.num_frames is not None and args.num_frames < 1:
        raise ArgumentError(f"--num-frames must be at least 1; got {args.num_frames}")
    if args.num_workers < 0:
        raise ArgumentError(f"--num-workers must be 0 or more; got {args.num_workers}")
    if args.annotations:
        if not os.path.isfile(args.annotations):
            raise ArgumentError(f"--annotations: file not found: {args.annotations}")
        if args.split is not None and args.split not in SPLITS:
            raise ArgumentError(f"--split must be one of {', '.join(SPLITS)} for --annotations; got {args.split!r}")
    elif args.benchmark:
        benchmark = BENCHMARKS[args.benchmark]
        for option, value in (("--annotations-dir", args.annotations_dir), ("--video-dir", args.video_dir)):
            if not value:
                raise ArgumentError(f"--benchmark {args.benchmark} needs {option}")
            if not os.path.isdir(value):
                raise ArgumentError(f"{option}: directory not found: {value}")
        if args.split is not None and args.split not in benchmark.splits:
            raise ArgumentError(
                f"--split for {args.benchmark} must be one of {', '.join(benchmark.splits)}; got {args.split!r}"
            )
    else:
        if args.video_dir and not os.path.isdir(args.video_dir):
            raise ArgumentError(f"--video-dir: directory not found: {args.video_dir}")


def dataset_source(args: argparse.Namespace) -> str:
    """How messages name the dataset the arguments select: the annotation file, benchmark directory or dataset."""
    if args.annotations:
        return args.annotations
    if args.benchmark:
        return f"{args.benchmark} in {args.annotations_dir}"
    return args.hf_dataset


def load_records(args: argparse.Namespace) -> Sequence[VideoRecord]:
    """Read the dataset selected by the arguments (call `check_dataset_arguments` first)."""
    if args.annotations:
        records: Sequence[VideoRecord] = read_annotations(args.annotations, split=args.split)
    elif args.benchmark:
        records = read_benchmark(args.benchmark, args.annotations_dir, args.video_dir, args.split)
    else:
        records = _load_hf_records(args)
    if len(records) == 0:
        raise ArgumentError(f"the dataset has no videos{f' in split {args.split!r}' if args.split else ''}")
    return records


def _load_hf_records(args: argparse.Namespace) -> HFVideoRecords:
    import datasets

    if os.path.isdir(args.hf_dataset):
        loaded = datasets.load_from_disk(args.hf_dataset)
    else:
        try:
            loaded = datasets.load_dataset(args.hf_dataset)
        except Exception as error:  # the Hub client raises many types; all mean "cannot get it"
            raise ArgumentError(
                f"--hf-dataset {args.hf_dataset!r} is not a local dataset directory and could not be loaded from "
                f"the Hub ({type(error).__name__}: {error})"
            ) from error
    if isinstance(loaded, datasets.DatasetDict):
        split = args.split or ("test" if "test" in loaded else None)
        if split not in loaded:
            raise ArgumentError(f"--split must be one of the dataset's splits {list(loaded)}; got {args.split!r}")
        loaded = loaded[split]
    try:
        return HFVideoRecords(
            loaded,
            video_column=args.video_column,
            caption_column=args.caption_column or "caption",
            id_column=args.id_column,
            video_dir=args.video_dir,
            split=args.split,
        )
    except ValueError as error:
        raise ArgumentError(str(error)) from error
