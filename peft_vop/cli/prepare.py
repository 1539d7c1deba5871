"""`vop prepare`: decode the sampled frames of a dataset once, into a frame cache that later runs read.

Example::

    vop prepare --model_name_or_path openai/clip-vit-base-patch32 --benchmark msrvtt --annotations_dir data/msrvtt \\
        --video_dir data/msrvtt/videos --split test --output_dir cache/msrvtt
"""

from __future__ import annotations

import argparse
import os
import sys

from .._atomic import check_writable
from ..data.frame_sampling import SAMPLING_MODES
from .arguments import (
    DEFAULT_NUM_FRAMES,
    DEFAULT_SEED,
    add_model_argument,
    add_progress_argument,
    silence_progress_bars,
    spellings,
)
from .dataset_arguments import (
    ArgumentError,
    add_dataset_arguments,
    check_dataset_arguments,
    dataset_source,
    load_records,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `vop prepare` options."""
    add_model_argument(
        parser, "checkpoint (CLIP, MetaCLIP 2, SigLIP, SigLIP 2) whose image processor gives the resize and crop"
    )
    parser.add_argument(
        *spellings("output_dir", "--output"), required=True, metavar="DIR", help="cache folder (created if needed)"
    )
    add_dataset_arguments(parser)
    parser.add_argument(
        "--sampling",
        choices=SAMPLING_MODES,
        default="uniform",
        help="frame sampling: uniform (evaluation) or rand (one seeded random draw, for training)",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="seed of rand sampling (the same default as `vop train`)"
    )
    parser.add_argument(*spellings("shard_size_mb"), type=float, default=512, metavar="MB", help="size of each shard")
    parser.add_argument(
        *spellings("overwrite_output_dir", "--overwrite"),
        action="store_true",
        help="replace a cache built with other settings instead of refusing it",
    )
    add_progress_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Build or update the frame cache; print what was stored, reused, repaired and skipped."""
    if args.disable_tqdm:
        silence_progress_bars()
    from ..data.cache_builder import build_frame_cache
    from ..data.dataset import VideoTextDataset
    from ..data.decoding import VideoDecodeError
    from ..data.preprocessing import FramePreprocessor
    from ..model_names import check_model_name

    try:
        check_dataset_arguments(args)
        if args.shard_size_mb <= 0:
            raise ArgumentError(f"--shard_size_mb must be positive; got {args.shard_size_mb}")
        if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
            raise ArgumentError(f"--output_dir must be a folder; {args.output_dir} is a file")
        model = check_model_name(args.model_name_or_path, config_file=None)
        try:
            check_writable(args.output_dir)
        except ValueError as error:
            raise ArgumentError(f"--output_dir: {error}") from error
        try:
            preprocessor = FramePreprocessor.from_pretrained(model)
        except OSError as error:
            raise ArgumentError(
                f"--model_name_or_path: cannot load the image processor of {args.model_name_or_path!r} ({error})"
            ) from error
        records = load_records(args)
        dataset = VideoTextDataset(
            records,
            preprocessor,
            num_frames=args.num_frames or DEFAULT_NUM_FRAMES,
            sampling=args.sampling,
            seed=args.seed,
            on_error=args.on_error,
        )
        report = build_frame_cache(
            dataset,
            args.output_dir,
            num_workers=args.num_workers,
            shard_size_mb=args.shard_size_mb,
            overwrite=args.overwrite_output_dir,
            progress=not args.disable_tqdm,
        )
        if report.failed and not report.stored and not report.reused:
            name, reason = report.failed[0]
            raise ArgumentError(
                f"{dataset_source(args)}: none of its {len(report.failed)} videos could be decoded (first: {name}: "
                f"{reason}); check the video paths (and --video_dir)"
            )
    except (ArgumentError, ValueError, TypeError, OSError) as error:
        print(f"vop prepare: error: {error}", file=sys.stderr)
        return 2
    except VideoDecodeError as error:
        print(f"vop prepare: error: {error}\n(use --on_error skip or repair to go on past it)", file=sys.stderr)
        return 1
    print(
        f"Frame cache {args.output_dir}: {report.stored} videos decoded and stored, {report.reused} already cached, "
        f"{len(report.repaired)} with repeated frames, {len(report.failed)} could not be decoded."
    )
    for name, frames in report.repaired:
        print(f"  repaired: {name} ({frames} frames repeat the last good frame)")
    for name, reason in report.failed:
        print(f"  not cached: {name}: {reason}")
    return 0
