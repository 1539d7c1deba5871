"""`vop index`: embed a folder of videos (or an annotation file) into a searchable index, incrementally.

Example::

    vop index my_videos/ --model_name_or_path openai/clip-vit-base-patch32 --adapter_name_or_path runs/vop \\
        --output_dir my_index
    vop index long_videos/ --model_name_or_path ... --window 10 --stride 5 --output_dir moments_index
    accelerate launch --multi_gpu --num_processes 4 -m peft_vop.cli.main index my_videos/ \\
        --model_name_or_path ... --output_dir my_index
"""

from __future__ import annotations

import argparse
import sys

from .arguments import add_model_argument, add_progress_argument, silence_progress_bars, spellings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `vop index` options."""
    parser.add_argument("source", metavar="SOURCE", help="folder of videos (searched recursively) or annotation file")
    add_model_argument(parser, "CLIP, MetaCLIP 2, SigLIP or SigLIP 2 checkpoint")
    parser.add_argument(
        *spellings("adapter_name_or_path", "--adapter"),
        dest="adapter_name_or_path",
        metavar="PATH_OR_ID",
        help="VoP adapter (folder or Hub id); without it, zero-shot CLIP",
    )
    parser.add_argument(
        *spellings("output_dir", "--output"),
        dest="output_dir",
        required=True,
        metavar="INDEX",
        help="index directory (created or updated)",
    )
    parser.add_argument(
        *spellings("num_frames"), type=int, metavar="N", help="frames per entry (default: the adapter's, else 12)"
    )
    parser.add_argument("--window", type=float, metavar="SECONDS", help="index windows of this length")
    parser.add_argument("--stride", type=float, metavar="SECONDS", help="seconds between windows (default: --window)")
    parser.add_argument("--split", choices=("train", "val", "test"), help="with an annotation file: only this split")
    parser.add_argument(*spellings("batch_size"), type=int, default=16, help="entries per forward pass")
    parser.add_argument(*spellings("num_workers"), type=int, default=0, metavar="N", help="data-loading workers")
    parser.add_argument(
        *spellings("on_error"),
        choices=("skip", "repair", "raise"),
        default="skip",
        help="unreadable videos: skip and report them, repeat good frames, or stop",
    )
    parser.add_argument("--device", help="torch device (default: the process's accelerator, else cpu)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32", help="model weights")
    parser.add_argument(
        *spellings("flush_every"), type=int, default=64, help="entries per saved chunk, the most an interruption loses"
    )
    parser.add_argument(
        *spellings("overwrite_output_dir", "--overwrite"),
        dest="overwrite_output_dir",
        action="store_true",
        help="replace an index built with other settings",
    )
    add_progress_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Build or update the index and print what was done."""
    from ..data.decoding import VideoDecodeError
    from ..search import VideoIndex

    if args.disable_tqdm:
        silence_progress_bars()
    try:
        index = VideoIndex.build(
            args.source,
            args.output_dir,
            model=args.model_name_or_path,
            adapter=args.adapter_name_or_path,
            num_frames=args.num_frames,
            window=args.window,
            stride=args.stride,
            split=args.split,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            device=args.device,
            dtype=args.dtype,
            on_error=args.on_error,
            overwrite=args.overwrite_output_dir,
            flush_every=args.flush_every,
            progress=not args.disable_tqdm,
        )
    except (ValueError, OSError) as error:
        print(f"vop index: error: {error}", file=sys.stderr)
        return 2
    except VideoDecodeError as error:
        print(f"vop index: error: {error}\n(use --on_error skip to go on past it)", file=sys.stderr)
        return 1
    if index is None:  # not the main process of a distributed build
        return 0
    print(f"Index {args.output_dir}: {len(index)} entries.")
    print(index.build_report.summary())
    return 0
