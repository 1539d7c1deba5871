"""Command-line options that name a video dataset, shared by `vop prepare` and `vop eval`.

The options build one [`~peft_vop.data.spec.DatasetSpec`] (the object `vop train` builds from its config), which
checks them once; see that class for the three ways to name a dataset.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..data.benchmark_readers import BENCHMARKS
from ..data.spec import ERROR_POLICIES
from .arguments import DEFAULT_NUM_FRAMES, spellings


if TYPE_CHECKING:
    from ..data.records import VideoRecord
    from ..data.spec import DatasetSpec


class ArgumentError(ValueError):
    """A command-line argument that cannot work, found before any heavy work starts."""


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that select a dataset and how its videos are decoded."""
    source = parser.add_argument_group("dataset (give exactly one of --annotations, --benchmark, --hf_dataset)")
    source.add_argument("--annotations", metavar="FILE", help="generic annotation file (.jsonl or .csv)")
    source.add_argument("--benchmark", choices=sorted(BENCHMARKS), help="a benchmark read from its own files")
    source.add_argument(*spellings("annotations_dir"), metavar="DIR", help="the benchmark's annotation files")
    source.add_argument(
        *spellings("video_dir"),
        metavar="DIR",
        help="the benchmark's videos, or the folder relative video paths of --hf_dataset start from",
    )
    source.add_argument(
        *spellings("hf_dataset"), metavar="PATH_OR_ID", help="a `datasets` dataset on disk, or a Hub id"
    )
    source.add_argument(*spellings("video_column"), default="video", help="video column of --hf_dataset")
    source.add_argument(
        *spellings("caption_column"),
        action="append",
        metavar="NAME",
        help="caption column of --hf_dataset; repeat for several (default: caption)",
    )
    source.add_argument(*spellings("id_column"), help="unique-id column of --hf_dataset (default: the video path)")
    benchmark_splits = "; ".join(f"{name}: {'/'.join(b.splits)}" for name, b in sorted(BENCHMARKS.items()))
    source.add_argument(
        "--split",
        help="split to use: train/val/test for --annotations and --hf_dataset; for --benchmark one of its splits "
        f"({benchmark_splits}; default: the benchmark's test split)",
    )
    frames = parser.add_argument_group("frames")
    frames.add_argument(
        *spellings("num_frames"),
        type=int,
        metavar="N",
        help=f"frames sampled per video (default: {DEFAULT_NUM_FRAMES})",
    )
    frames.add_argument(
        *spellings("on_error"),
        choices=ERROR_POLICIES,
        default="raise",
        help="unreadable videos: raise (stop, naming the file), repair (retry, then repeat the last good frame; "
        "videos with no readable frame are skipped), skip (leave the video out); counts are always reported",
    )
    frames.add_argument(
        *spellings("num_workers"), type=int, default=2, metavar="N", help="DataLoader worker processes"
    )


def dataset_spec(args: argparse.Namespace) -> DatasetSpec:
    """The [`~peft_vop.data.spec.DatasetSpec`] the arguments name (raises `ArgumentError` if they cannot work)."""
    from ..data.spec import DatasetSpec

    try:
        return DatasetSpec(
            annotations=args.annotations,
            benchmark=args.benchmark,
            annotations_dir=args.annotations_dir,
            video_dir=args.video_dir,
            hf_dataset=args.hf_dataset,
            video_column=args.video_column,
            caption_column=tuple(args.caption_column or ("caption",)),
            id_column=args.id_column,
        )
    except ValueError as error:
        raise ArgumentError(str(error)) from error


def check_dataset_arguments(args: argparse.Namespace) -> None:
    """Raise `ArgumentError` for a dataset selection that cannot work (missing files, wrong split...)."""
    spec = dataset_spec(args)
    if args.num_frames is not None and args.num_frames < 1:
        raise ArgumentError(f"--num_frames must be at least 1; got {args.num_frames}")
    if args.num_workers < 0:
        raise ArgumentError(f"--num_workers must be 0 or more; got {args.num_workers}")
    try:
        spec.check_files()
        spec.check_split(args.split)
    except (ValueError, FileNotFoundError) as error:
        raise ArgumentError(str(error)) from error


def dataset_source(args: argparse.Namespace) -> str:
    """How messages name the dataset the arguments select: the annotation file, benchmark directory or dataset."""
    if args.annotations:
        return args.annotations
    if args.benchmark:
        return f"{args.benchmark} in {args.annotations_dir}"
    return args.hf_dataset


def load_records(args: argparse.Namespace) -> Sequence[VideoRecord]:
    """Read the dataset selected by the arguments (call `check_dataset_arguments` first)."""
    try:
        return dataset_spec(args).read(args.split)
    except (ValueError, TypeError, OSError) as error:  # bad annotation content: the message names file and line
        raise ArgumentError(str(error)) from error
