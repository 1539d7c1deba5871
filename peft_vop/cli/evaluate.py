"""`vop eval`: text-video retrieval metrics of a CLIP checkpoint, with or without a VoP adapter.

Example::

    vop eval --model_name_or_path openai/clip-vit-base-patch32 --adapter_name_or_path runs/vop-msrvtt \\
        --benchmark msrvtt --annotations_dir data/msrvtt --video_dir data/msrvtt/videos

writes `runs/vop-msrvtt/eval_metrics.json` (next to the adapter; `--output_dir` chooses another folder).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .._atomic import check_writable, write_json
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
    dataset_spec,
    load_records,
)


METRICS_NAME = "eval_metrics.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `vop eval` options."""
    add_model_argument(parser, "CLIP, MetaCLIP 2, SigLIP or SigLIP 2 checkpoint")
    parser.add_argument(
        *spellings("adapter_name_or_path", "--adapter"),
        dest="adapter_name_or_path",
        metavar="PATH_OR_ID",
        help="VoP adapter: a folder (a `vop train` output_dir or its best/) or a Hub id; without it, zero-shot",
    )
    add_dataset_arguments(parser)
    parser.add_argument(
        *spellings("frame_cache", "--cache"),
        dest="frame_cache",
        metavar="DIR",
        help="frame cache built by `vop prepare` with the same settings",
    )
    parser.add_argument(*spellings("batch_size"), type=int, default=16, help="videos per forward pass")
    parser.add_argument(*spellings("text_batch_size"), type=int, default=256, help="captions per forward pass")
    parser.add_argument(*spellings("chunk_size"), type=int, default=1024, help="similarity rows computed at once")
    parser.add_argument("--dsl", action="store_true", help="also report dual-softmax (DSL) results, labelled as such")
    parser.add_argument(*spellings("dsl_temperature"), type=float, default=100.0, help="DSL temperature")
    parser.add_argument("--device", default="auto", help="torch device, e.g. cpu or cuda:0 (auto: cuda if available)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32", help="model weights")
    parser.add_argument(
        *spellings("output_dir"),
        metavar="DIR",
        help=f"folder of {METRICS_NAME} (default: the adapter's folder; the current folder without a local adapter)",
    )
    # Earlier releases took the metrics file itself.
    parser.add_argument("--output", metavar="FILE", help=argparse.SUPPRESS)
    add_progress_argument(parser)


def metrics_path(args: argparse.Namespace) -> str:
    """Where the metrics go: `--output` (a file, earlier releases), `--output_dir`, the adapter's folder, or here."""
    if args.output:
        return args.output
    if args.output_dir:
        folder = args.output_dir
    elif args.adapter_name_or_path and os.path.isdir(args.adapter_name_or_path):
        folder = args.adapter_name_or_path
    else:
        folder = "."
    return os.path.join(folder, METRICS_NAME)


def _check_arguments(args: argparse.Namespace) -> None:
    from ..model_names import check_model_name

    check_dataset_arguments(args)
    try:
        args.model_path = check_model_name(args.model_name_or_path)
        if args.adapter_name_or_path:
            check_model_name(args.adapter_name_or_path, "--adapter_name_or_path", "adapter_config.json")
    except ValueError as error:
        raise ArgumentError(str(error)) from error
    if args.frame_cache and not os.path.isfile(os.path.join(args.frame_cache, "manifest.json")):
        raise ArgumentError(f"--frame_cache: no frame cache at {args.frame_cache} (build one with `vop prepare`)")
    for option, value in (
        ("--batch_size", args.batch_size),
        ("--text_batch_size", args.text_batch_size),
        ("--chunk_size", args.chunk_size),
    ):
        if value < 1:
            raise ArgumentError(f"{option} must be at least 1; got {value}")
    if args.output_dir and os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        raise ArgumentError(f"--output_dir must be a folder; {args.output_dir} is a file")
    option = "--output" if args.output else "--output_dir"
    output = metrics_path(args)
    if os.path.isdir(output):
        raise ArgumentError(
            f"{option}: {output} is a directory; give a file name, e.g. {os.path.join(output, METRICS_NAME)}, or "
            f"--output_dir {output}"
        )
    folder = os.path.dirname(os.path.abspath(output))
    if args.output and not os.path.isdir(folder):
        raise ArgumentError(f"--output: folder {folder} does not exist")
    try:
        check_writable(folder)
    except ValueError as error:
        raise ArgumentError(f"{option}: {error}") from error
    if args.adapter_name_or_path:
        _check_adapter_weights(args.adapter_name_or_path)


def _check_adapter_weights(adapter: str) -> None:
    """A local adapter's weights must be a complete safetensors file (reading the header checks its length)."""
    from safetensors import SafetensorError, safe_open

    weights = os.path.join(adapter, "adapter_model.safetensors")
    if not os.path.isfile(weights):
        return
    try:
        with safe_open(weights, framework="pt"):
            pass
    except (SafetensorError, OSError) as error:
        raise ArgumentError(
            f"--adapter_name_or_path: {weights} is truncated or corrupt ({error}); save or download the adapter again"
        ) from error


def _load(option: str, value: str, load):
    # transformers reports a missing checkpoint with OSError, peft with ValueError, a checkpoint of another
    # geometry with ValueError or RuntimeError (size mismatch), safetensors a truncated file with its own error:
    # all mean "this argument cannot be used".
    from safetensors import SafetensorError

    try:
        return load()
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        raise ArgumentError(f"{option}: cannot load {value!r} ({error})") from error


def _num_frames(args: argparse.Namespace, adapter_config: Any) -> int:
    """Frames per video: the adapter's own count when it has one (VoP^P and VoP^F tables are sized by it)."""
    adapter_frames = getattr(adapter_config, "num_frames", None)
    if adapter_frames is not None and args.num_frames is not None and args.num_frames != adapter_frames:
        raise ArgumentError(
            f"--num_frames {args.num_frames} differs from the adapter's num_frames={adapter_frames}; "
            "leave --num_frames out to use the adapter's"
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
    if args.disable_tqdm:
        silence_progress_bars()
    import torch
    from peft import PeftConfig
    from transformers import AutoTokenizer

    from .. import load_adapter  # importing the package registers the VoP method with peft
    from ..data.dataset import VideoTextDataset
    from ..data.decoding import VideoDecodeError
    from ..data.preprocessing import FramePreprocessor, caption_tokenizer
    from ..families import load_dual_encoder
    from ..loading import check_adapter_directory
    from ..retrieval.evaluation import evaluate_retrieval

    adapter = args.adapter_name_or_path
    adapter_config = None
    if adapter:

        def read_adapter_config():
            check_adapter_directory(adapter)  # no config, no weights, an unknown peft_type: a ValueError naming it
            return PeftConfig.from_pretrained(adapter)

        adapter_config = _load("--adapter_name_or_path", adapter, read_adapter_config)
    num_frames = _num_frames(args, adapter_config)
    source = dataset_source(args)
    records = load_records(args)
    if not any(record.captions for record in records):
        raise ArgumentError(
            f"{source}: none of the {len(records)} videos has a caption, so there is nothing to retrieve; "
            "give the videos captions"
        )
    preprocessor = _load(
        "--model_name_or_path", args.model_name_or_path, lambda: FramePreprocessor.from_pretrained(args.model_path)
    )
    tokenizer = _load(
        "--model_name_or_path",
        args.model_name_or_path,
        lambda: caption_tokenizer(AutoTokenizer.from_pretrained(args.model_path), args.model_path),
    )
    try:
        seed = DEFAULT_SEED
        if args.frame_cache:
            from ..data.cache import FrameCache

            seed = FrameCache(args.frame_cache).settings.get("seed", seed)  # uniform sampling ignores it
        dataset = VideoTextDataset(
            records, preprocessor, num_frames=num_frames, seed=seed, on_error=args.on_error, cache=args.frame_cache
        )
    except ValueError as error:  # e.g. a cache built with other settings
        raise ArgumentError(str(error)) from error

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    model = _load(
        "--model_name_or_path",
        args.model_name_or_path,
        lambda: load_dual_encoder(args.model_path, dtype=getattr(torch, args.dtype)),
    )
    max_length = min(tokenizer.model_max_length, model.config.text_config.max_position_embeddings)
    if adapter:
        model = _load("--adapter_name_or_path", adapter, lambda: load_adapter(model, adapter))
    model.to(device).eval()

    try:
        report = evaluate_retrieval(
            model,
            tokenizer,
            dataset,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            text_batch_size=args.text_batch_size,
            max_length=max_length,
            chunk_size=args.chunk_size,
            dsl=args.dsl,
            dsl_temperature=args.dsl_temperature,
            progress=not args.disable_tqdm,
        )
    except VideoDecodeError as error:
        print(f"vop eval: error: {error}\n(use --on_error skip or repair to go on past it)", file=sys.stderr)
        return 1
    except ValueError as error:  # e.g. every video skipped: nothing to evaluate
        raise ArgumentError(
            f"{source}: {error} Check the video paths (and --video_dir), or look at the skipped videos above"
        ) from error

    print(report.format_table())
    summary = {
        "model": args.model_name_or_path,
        "adapter": adapter,
        "dataset": {**dataset_spec(args).describe(), "split": args.split},
        "num_frames": num_frames,
        "sampling": "uniform",
        "on_error": args.on_error,
        **report.to_dict(),
    }
    output = metrics_path(args)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    write_json(output, summary)
    print(f"Metrics written to {output}")
    return 0
