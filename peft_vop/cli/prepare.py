"""`vop prepare`: decode the sampled frames of a dataset once, into a frame cache that later runs read.

Example::

    vop prepare --model openai/clip-vit-base-patch32 --benchmark msrvtt --annotations-dir data/msrvtt \\
        --video-dir data/msrvtt/videos --split test --output cache/msrvtt
"""

from __future__ import annotations

import argparse
import os
import sys

from .._atomic import check_writable
from ..data.sampling import SAMPLING_MODES
from .dataset_arguments import (
    ArgumentError,
    add_dataset_arguments,
    check_dataset_arguments,
    dataset_source,
    load_records,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `vop prepare` options."""
    parser.add_argument(
        "--model",
        required=True,
        metavar="PATH_OR_ID",
        help="CLIP checkpoint whose image processor configuration gives the resize (local directory or Hub id)",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="cache directory (created if needed)")
    add_dataset_arguments(parser)
    parser.add_argument(
        "--sampling",
        choices=SAMPLING_MODES,
        default="uniform",
        help="frame sampling: uniform (evaluation) or rand (one seeded random draw, for training)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of rand sampling (default: 0)")
    parser.add_argument("--shard-size-mb", type=float, default=512, help="size of each shard file (default: 512)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a cache built with other settings instead of refusing it"
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def run(args: argparse.Namespace) -> int:
    """Build or update the frame cache; print what was stored, reused, repaired and skipped."""
    from ..data.cache import build_frame_cache
    from ..data.dataset import VideoTextDataset
    from ..data.decoding import VideoDecodeError
    from ..data.preprocessing import FramePreprocessor

    try:
        check_dataset_arguments(args)
        if args.shard_size_mb <= 0:
            raise ArgumentError(f"--shard-size-mb must be positive; got {args.shard_size_mb}")
        if os.path.exists(args.output) and not os.path.isdir(args.output):
            raise ArgumentError(f"--output must be a directory; {args.output} is a file")
        try:
            check_writable(args.output)
        except ValueError as error:
            raise ArgumentError(f"--output: {error}") from error
        try:
            preprocessor = FramePreprocessor.from_pretrained(args.model)
        except OSError as error:
            raise ArgumentError(f"--model: cannot load the image processor of {args.model!r} ({error})") from error
        records = load_records(args)
        dataset = VideoTextDataset(
            records,
            preprocessor,
            num_frames=args.num_frames or 12,
            sampling=args.sampling,
            seed=args.seed,
            on_error=args.on_error,
        )
        report = build_frame_cache(
            dataset,
            args.output,
            num_workers=args.num_workers,
            shard_size_mb=args.shard_size_mb,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        if report.failed and not report.stored and not report.reused:
            name, reason = report.failed[0]
            raise ArgumentError(
                f"{dataset_source(args)}: none of its {len(report.failed)} videos could be decoded (first: {name}: "
                f"{reason}); check the video paths (and --video-dir)"
            )
    except (ArgumentError, ValueError, TypeError, OSError) as error:
        print(f"vop prepare: error: {error}", file=sys.stderr)
        return 2
    except VideoDecodeError as error:
        print(f"vop prepare: error: {error}\n(use --on-error skip or repair to go on past it)", file=sys.stderr)
        return 1
    print(
        f"Frame cache {args.output}: {report.stored} videos decoded and stored, {report.reused} already cached, "
        f"{len(report.repaired)} with repeated frames, {len(report.failed)} could not be decoded."
    )
    for name, frames in report.repaired:
        print(f"  repaired: {name} ({frames} frames repeat the last good frame)")
    for name, reason in report.failed:
        print(f"  not cached: {name}: {reason}")
    return 0
