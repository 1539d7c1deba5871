"""`vop eval`: text-video retrieval metrics of a CLIP checkpoint, with or without a VoP adapter.

Example::

    vop eval --model openai/clip-vit-base-patch32 --adapter runs/vop-msrvtt/adapter \\
        --benchmark msrvtt --annotations-dir data/msrvtt --video-dir data/msrvtt/videos --output metrics.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

from .dataset_arguments import ArgumentError, add_dataset_arguments, check_dataset_arguments, load_records


DEFAULT_NUM_FRAMES = 12
# "name" or "namespace/name", as the Hub spells repository ids.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `vop eval` options."""
    parser.add_argument("--model", required=True, metavar="PATH_OR_ID", help="CLIP checkpoint (directory or Hub id)")
    parser.add_argument("--adapter", metavar="PATH_OR_ID", help="VoP adapter (directory or Hub id); none: zero-shot")
    add_dataset_arguments(parser)
    parser.add_argument("--cache", metavar="DIR", help="frame cache built by `vop prepare` with the same settings")
    parser.add_argument("--batch-size", type=int, default=16, help="videos per forward pass (default: 16)")
    parser.add_argument("--text-batch-size", type=int, default=256, help="captions per forward pass (default: 256)")
    parser.add_argument(
        "--chunk-size", type=int, default=1024, help="similarity rows computed at once (default: 1024)"
    )
    parser.add_argument("--dsl", action="store_true", help="also report dual-softmax (DSL) results, labelled as such")
    parser.add_argument("--dsl-temperature", type=float, default=100.0, help="DSL temperature (default: 100)")
    parser.add_argument(
        "--device", default="auto", help="torch device, e.g. cpu or cuda:0 (default: cuda if available)"
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        default="float32",
        help="model weights (default: float32)",
    )
    parser.add_argument(
        "--output", default="eval_metrics.json", metavar="FILE", help="where to write the metrics JSON"
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")


def _check_reference(option: str, value: str, config_file: str | None = None) -> None:
    """A model or adapter must be an existing directory, or look like a Hub id (downloaded when loaded)."""
    if os.path.exists(value):
        if not os.path.isdir(value):
            raise ArgumentError(f"{option} must be a directory or a Hub id; {value} is a file")
        if config_file and not os.path.isfile(os.path.join(value, config_file)):
            raise ArgumentError(f"{option}: {value} has no {config_file}")
        return
    if value.startswith((".", "/", "~")) or value.endswith("/") or not _HUB_ID.match(value):
        raise ArgumentError(f"{option}: directory not found: {value}")


def _check_arguments(args: argparse.Namespace) -> None:
    check_dataset_arguments(args)
    _check_reference("--model", args.model, "config.json")
    if args.adapter:
        _check_reference("--adapter", args.adapter, "adapter_config.json")
    if args.cache and not os.path.isfile(os.path.join(args.cache, "manifest.json")):
        raise ArgumentError(f"--cache: no frame cache at {args.cache} (build one with `vop prepare`)")
    for option, value in (
        ("--batch-size", args.batch_size),
        ("--text-batch-size", args.text_batch_size),
        ("--chunk-size", args.chunk_size),
    ):
        if value < 1:
            raise ArgumentError(f"{option} must be at least 1; got {value}")
    output_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(output_dir):
        raise ArgumentError(f"--output: directory {output_dir} does not exist")


def _load(option: str, value: str, load):
    # transformers reports a missing checkpoint with OSError, peft with ValueError, a checkpoint of another
    # geometry with ValueError or RuntimeError (size mismatch): all mean "this argument cannot be used".
    try:
        return load()
    except (OSError, ValueError, RuntimeError) as error:
        raise ArgumentError(f"{option}: cannot load {value!r} ({error})") from error


def _num_frames(args: argparse.Namespace, adapter_config: Any) -> int:
    """Frames per video: the adapter's own count when it has one (VoP^P and VoP^F tables are sized by it)."""
    adapter_frames = getattr(adapter_config, "num_frames", None)
    if adapter_frames is not None and args.num_frames is not None and args.num_frames != adapter_frames:
        raise ArgumentError(
            f"--num-frames {args.num_frames} differs from the adapter's num_frames={adapter_frames}; "
            "leave --num-frames out to use the adapter's"
        )
    return args.num_frames or adapter_frames or DEFAULT_NUM_FRAMES


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the metrics table, and write the metrics JSON."""
    try:
        _check_arguments(args)
        return _evaluate(args)
    except ArgumentError as error:
        print(f"vop eval: error: {error}", file=sys.stderr)
        return 2


def _evaluate(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoProcessor, CLIPModel

    import peft_vop  # noqa: F401  (registers the VoP method with peft)

    from ..data.dataset import VideoTextDataset
    from ..data.decoding import VideoDecodeError
    from ..data.preprocessing import FramePreprocessor
    from ..retrieval.evaluation import evaluate_retrieval

    adapter_config = None
    if args.adapter:
        from peft import PeftConfig

        adapter_config = _load("--adapter", args.adapter, lambda: PeftConfig.from_pretrained(args.adapter))
    num_frames = _num_frames(args, adapter_config)
    records = load_records(args)
    processor = _load("--model", args.model, lambda: AutoProcessor.from_pretrained(args.model))
    preprocessor = FramePreprocessor.from_image_processor(processor.image_processor)
    try:
        dataset = VideoTextDataset(
            records, preprocessor, num_frames=num_frames, on_error=args.on_error, cache=args.cache
        )
    except ValueError as error:  # e.g. a cache built with other settings
        raise ArgumentError(str(error)) from error

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    model = _load(
        "--model", args.model, lambda: CLIPModel.from_pretrained(args.model, dtype=getattr(torch, args.dtype))
    )
    max_length = min(processor.tokenizer.model_max_length, model.config.text_config.max_position_embeddings)
    if args.adapter:
        from .. import load_adapter

        model = _load("--adapter", args.adapter, lambda: load_adapter(model, args.adapter))
    model.to(device).eval()

    try:
        report = evaluate_retrieval(
            model,
            processor.tokenizer,
            dataset,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            text_batch_size=args.text_batch_size,
            max_length=max_length,
            chunk_size=args.chunk_size,
            dsl=args.dsl,
            dsl_temperature=args.dsl_temperature,
            progress=not args.no_progress,
        )
    except VideoDecodeError as error:
        print(f"vop eval: error: {error}\n(use --on-error skip or repair to go on past it)", file=sys.stderr)
        return 1

    print(report.format_table())
    summary = {
        "model": args.model,
        "adapter": args.adapter,
        "dataset": _describe_dataset(args),
        "num_frames": num_frames,
        "sampling": "uniform",
        "on_error": args.on_error,
        **report.to_dict(),
    }
    with open(args.output, "w", encoding="utf-8") as file:
        json.dump(summary, file, indent=2)
    print(f"Metrics written to {args.output}")
    return 0


def _describe_dataset(args: argparse.Namespace) -> dict[str, Any]:
    if args.annotations:
        return {"annotations": args.annotations, "split": args.split}
    if args.benchmark:
        return {"benchmark": args.benchmark, "split": args.split, "annotations_dir": args.annotations_dir}
    return {"hf_dataset": args.hf_dataset, "split": args.split}
