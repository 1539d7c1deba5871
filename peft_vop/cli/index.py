"""`vop index`: embed a folder of videos (or an annotation file) into a searchable index, incrementally.

Example::

    vop index my_videos/ --model openai/clip-vit-base-patch32 --adapter runs/vop/adapter --output my_index
    vop index long_videos/ --model ... --window 10 --stride 5 --output moments_index
    accelerate launch --multi_gpu --num_processes 4 -m peft_vop.cli.main index my_videos/ --model ... --output my_index
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `vop index` options."""
    parser.add_argument("source", metavar="SOURCE", help="folder of videos (searched recursively) or annotation file")
    parser.add_argument("--model", required=True, metavar="PATH_OR_ID", help="CLIP checkpoint (directory or Hub id)")
    parser.add_argument("--adapter", metavar="PATH_OR_ID", help="VoP adapter (directory or Hub id); none: zero-shot")
    parser.add_argument("--output", required=True, metavar="INDEX", help="index directory (created or updated)")
    parser.add_argument("--num-frames", type=int, help="frames per entry (default: the adapter's, else 12)")
    parser.add_argument("--window", type=float, metavar="SECONDS", help="index windows of this length")
    parser.add_argument("--stride", type=float, metavar="SECONDS", help="seconds between windows (default: --window)")
    parser.add_argument("--split", choices=("train", "val", "test"), help="with an annotation file: only this split")
    parser.add_argument("--batch-size", type=int, default=16, help="entries per forward pass (default: 16)")
    parser.add_argument("--num-workers", type=int, default=0, help="data-loading workers (default: 0)")
    parser.add_argument(
        "--on-error",
        choices=("skip", "repair", "raise"),
        default="skip",
        help="unreadable videos: skip and report them (default), repeat good frames, or stop",
    )
    parser.add_argument("--device", help="torch device (default: the process's accelerator, else cpu)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32", help="model weights")
    parser.add_argument(
        "--flush-every", type=int, default=64, help="entries per saved chunk, the most an interruption loses (64)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an index built with other settings")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def run(args: argparse.Namespace) -> int:
    """Build or update the index and print what was done."""
    from ..data.decoding import VideoDecodeError
    from ..search import VideoIndex

    try:
        index = VideoIndex.build(
            args.source,
            args.output,
            model=args.model,
            adapter=args.adapter,
            num_frames=args.num_frames,
            window=args.window,
            stride=args.stride,
            split=args.split,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            device=args.device,
            dtype=args.dtype,
            on_error=args.on_error,
            overwrite=args.overwrite,
            flush_every=args.flush_every,
            progress=not args.no_progress,
        )
    except (ValueError, OSError) as error:
        print(f"vop index: error: {error}", file=sys.stderr)
        return 2
    except VideoDecodeError as error:
        print(f"vop index: error: {error}\n(use --on-error skip to go on past it)", file=sys.stderr)
        return 1
    if index is None:  # not the main process of a distributed build
        return 0
    print(f"Index {args.output}: {len(index)} entries.")
    print(index.build_report.summary())
    return 0
