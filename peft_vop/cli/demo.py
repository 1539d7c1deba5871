"""`vop demo`: the offline end-to-end run on the embedded default (synthetic world + shipped small CLIP).

Builds the synthetic world, evaluates the small CLIP zero-shot, trains a VoP adapter with `vop train`'s loop,
evaluates it, reloads it in a fresh process through `vop eval` and checks the metrics are the same, prints a
before/after table, and ends by indexing the test clips (`vop index`) zero-shot and with the adapter and searching them
(`vop search`) with a caption and its time-reversed opposite. Everything lands in one run directory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .arguments import DEFAULT_SEED, add_progress_argument, silence_progress_bars, spellings


STEPS = 7


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `vop demo` options."""
    from typing import get_args

    from ..training.config import DEFAULT_LEARNING_RATE, Variant

    parser.add_argument(*spellings("output_dir"), default="runs/demo", metavar="DIR", help="run folder")
    parser.add_argument("--variant", default="vop_f+p", choices=get_args(Variant), help="VoP variant to train")
    parser.add_argument(*spellings("num_train_epochs", "--epochs"), type=int, default=5, help="training epochs")
    parser.add_argument(
        *spellings("learning_rate"),
        type=float,
        default=DEFAULT_LEARNING_RATE,
        help="peak learning rate (vop train's default, chosen by a sweep on this world)",
    )
    parser.add_argument(*spellings("batch_size"), type=int, default=32, help="videos per step")
    parser.add_argument(*spellings("train_videos"), type=int, default=600, help="training clips of the world")
    parser.add_argument(*spellings("val_videos"), type=int, default=100, help="validation clips, in order pairs")
    parser.add_argument(*spellings("test_videos"), type=int, default=200, help="test clips, in order pairs")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the world and of training")
    parser.add_argument(*spellings("num_workers"), type=int, default=2, help="data-loading workers")
    parser.add_argument(
        *spellings("overwrite_output_dir", "--overwrite"),
        action="store_true",
        help="replace a finished demo in --output_dir",
    )
    add_progress_argument(parser)


def check_arguments(args: argparse.Namespace) -> str | None:
    """The first problem with the arguments, as an error message naming the flag, or `None`."""
    for name in ("num_train_epochs", "batch_size", "train_videos", "val_videos", "test_videos"):
        if getattr(args, name) < 1:
            return f"--{name} must be at least 1; got {getattr(args, name)}"
    for name in ("val_videos", "test_videos"):
        if getattr(args, name) % 2:
            return f"--{name} must be even (clips come in order pairs); got {getattr(args, name)}"
    if (Path(args.output_dir) / "results.json").exists() and not args.overwrite_output_dir:
        return f"{args.output_dir} holds a finished demo; pass --overwrite_output_dir or another --output_dir"
    return None


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns 0 when the reloaded adapter reproduces the trained adapter's metrics, 2 for bad flags."""
    started = time.perf_counter()
    problem = check_arguments(args)
    if problem is not None:
        print(f"vop demo: error: {problem}", file=sys.stderr)
        return 2
    run_dir = Path(args.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    progress = not args.disable_tqdm
    if not progress:
        silence_progress_bars()

    import torch
    from transformers import AutoProcessor, CLIPModel

    from ..data.dataset import VideoTextCollator, VideoTextDataset
    from ..data.preprocessing import FramePreprocessor
    from ..data.records import read_annotations
    from ..model_names import DEFAULT_MODEL_NAME, resolve_model_name
    from ..synthetic import generate_world
    from ..synthetic.experiment import embed_split, retrieval_summary
    from ..training import TrainingConfig, train

    torch.manual_seed(args.seed)
    _header(1, "Building the synthetic world")
    annotations = generate_world(
        run_dir / "world",
        seed=args.seed,
        num_train=args.train_videos,
        num_val=args.val_videos,
        num_test=args.test_videos,
    )
    print(f"  {annotations}")

    model_path = resolve_model_name(DEFAULT_MODEL_NAME)
    processor = AutoProcessor.from_pretrained(model_path)
    preprocessor = FramePreprocessor.from_image_processor(processor.image_processor)

    def evaluate(model) -> dict[str, Any]:
        embeddings = embed_split(
            model,
            processor.tokenizer,
            preprocessor,
            annotations,
            "test",
            num_workers=args.num_workers,
            progress=progress,
        )
        return retrieval_summary(embeddings)

    _header(2, "Zero-shot CLIP on the test split (frames mean-pooled)")
    zero_shot = evaluate(CLIPModel.from_pretrained(model_path))
    _write_json(run_dir / "zero_shot.json", zero_shot)
    print(_row("zero-shot", zero_shot))

    _header(3, f"Training a {args.variant} adapter ({plural(args.num_train_epochs, 'epoch')})")
    config = TrainingConfig(
        model_name_or_path=DEFAULT_MODEL_NAME,
        output_dir=str(run_dir / "adapter"),
        annotations=str(annotations),
        eval_split="val",
        variant=args.variant,
        num_frames=12,
        adapter_options=_adapter_options(args.variant, model_path),
        num_train_epochs=args.num_train_epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        num_workers=args.num_workers,
        overwrite_output_dir=True,
        disable_tqdm=not progress,
        learning_rate=args.learning_rate,
        random_crop=False,
        horizontal_flip=False,
    )
    # The world's captions name directions and positions ("moves left", "at the top"), which the paper's flip and
    # crop augmentation would contradict: train on whole, unflipped frames (still random frames and captions).
    train_records = read_annotations(annotations, split="train")
    train_dataset = VideoTextDataset(
        train_records,
        preprocessor,
        num_frames=12,
        sampling="rand",
        train=True,
        augment=config.augmentations,
        seed=args.seed,
    )
    result = train(
        config, train_dataset=train_dataset, collate_fn=VideoTextCollator(preprocessor, processor.tokenizer)
    )
    adapter_dir = Path(result.output_dir)
    print(f"  {plural(result.global_step, 'step')}; final adapter in {adapter_dir}")

    _header(4, "The trained adapter on the test split")
    from .. import load_adapter

    trained_model = load_adapter(CLIPModel.from_pretrained(model_path), adapter_dir)
    trained = evaluate(trained_model)
    _write_json(run_dir / "trained.json", trained)
    print(_row(args.variant, trained))

    _header(5, "Reloading the adapter in a fresh process (`vop eval`)")
    reload_path = run_dir / "reloaded.json"
    command = [
        sys.executable, "-m", "peft_vop.cli.main", "eval", "--model_name_or_path", DEFAULT_MODEL_NAME,
        "--adapter_name_or_path", str(adapter_dir), "--annotations", str(annotations), "--split", "test",
        "--num_workers", str(args.num_workers), "--output", str(reload_path), "--device", "cpu",
    ]  # fmt: skip
    if not progress:
        command.append("--disable_tqdm")
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    reloaded = json.loads(reload_path.read_text())
    same = all(reloaded["results"][0][direction] == trained[direction] for direction in ("t2v", "v2t"))
    print(f"  metrics after reload {'identical' if same else 'DIFFERENT'}: {reload_path}")

    _header(6, "Before and after")
    table = _table(args.variant, zero_shot, trained)
    print(table)
    if trained["t2v"]["R@1"] < zero_shot["t2v"]["R@1"]:
        print(
            f"\nWarning: the adapter retrieves worse than zero-shot CLIP (t2v R@1 {trained['t2v']['R@1']:.1f} < "
            f"{zero_shot['t2v']['R@1']:.1f}). A run this short at learning rate {config.learning_rate:g} can "
            "overshoot: try more --train_videos or --num_train_epochs, or a lower --learning_rate.",
            file=sys.stderr,
        )
    summary = {
        "variant": args.variant,
        "epochs": args.num_train_epochs,
        "learning_rate": config.learning_rate,
        "train_steps": result.global_step,
        "zero_shot": zero_shot,
        "trained": trained,
        "reload_identical": same,
        "seconds": round(seconds_since_start(started), 1),
    }
    _header(7, "Searching the test clips by text (`vop index`, `vop search`)")
    summary["search"] = _search_test_clips(run_dir, annotations, model_path, adapter_dir, args)
    (run_dir / "results.md").write_text(table + "\n")
    _write_json(run_dir / "results.json", summary)
    print(f"\nDone in {summary['seconds']:.0f} s. Everything is in {run_dir}/")
    return 0 if same else 1


def _search_test_clips(
    run_dir: Path, annotations: Path, model_path: str, adapter_dir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Index the test clips zero-shot and with the adapter, and search them with a caption and its time-reversed
    opposite: how often each model scores the right direction above its reversal, and one pair in detail."""
    import torch

    from ..data.records import read_annotations
    from ..search import VideoIndex
    from ..synthetic.experiment import read_order_partners

    records = read_annotations(annotations, split="test")
    partners = read_order_partners(annotations, records).tolist()
    captions = [record.captions[0] for record in records]
    indexes, right = {}, {}
    for name, adapter in (("zero-shot", None), (args.variant, str(adapter_dir))):
        index = VideoIndex.build(
            annotations,
            run_dir / ("index_zero_shot" if adapter is None else "index_adapter"),
            model=model_path,
            adapter=adapter,
            split="test",
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            overwrite=True,
            progress=not args.disable_tqdm,
        )
        row = {entry.id: position for position, entry in enumerate(index.entries)}
        scores = index.embed_text(captions) @ index.embeddings.T  # [T, V]
        # Caption t against its own clip and against that clip's time reversal: 1 a win, 0.5 a tie (as in the table).
        right[name] = [
            float(torch.sign(scores[t, row[records[t].id]] - scores[t, row[records[partner].id]]) + 1) / 2
            if partner >= 0
            else None
            for t, partner in enumerate(partners)
        ]
        indexes[name] = index
        print(f"  {name}: {len(index)} clips indexed in {index.directory}")
    paired = [t for t, partner in enumerate(partners) if partner >= 0]
    rates = {name: 100.0 * sum(wins[t] for t in paired) / len(paired) for name, wins in right.items()}
    print(
        f"  Its own clip above its time reversal (a tie counts half), over the {len(paired)} paired test captions: "
        + ", ".join(f"{name} {rate:.1f}%" for name, rate in rates.items())
    )
    # One pair in detail: the first whose two captions the adapter gets right and zero-shot does not (else the first).
    fresh = [t for t in paired if t < partners[t]]
    wanted = [t for t in fresh if right[args.variant][t] == right[args.variant][partners[t]] == 1]
    wanted = [t for t in wanted if not right["zero-shot"][t] == right["zero-shot"][partners[t]] == 1] or fresh
    first = wanted[0]
    print(
        f"  Example pair {records[first].id} / {records[partners[first]].id} (the first the adapter gets right both ways and zero-shot does not):"
    )
    example: dict[str, Any] = {}
    for t in (first, partners[first]):
        print(f"    {captions[t]!r} (clip {records[t].id}, reversal {records[partners[t]].id})")
        for name, index in indexes.items():
            hits = index.search(text=captions[t], k=len(index))
            rank = {hit.entry.id: hit.rank for hit in hits}
            own, reversal = rank[records[t].id], rank[records[partners[t]].id]
            top = "  ".join(f"{hit.rank}. {hit.entry.id} ({hit.score:+.3f})" for hit in hits[:3])
            print(f"      {name:<10} its clip ranks {own}, its reversal {reversal}; top 3: {top}")
            example.setdefault(captions[t], {})[name] = {"rank": own, "reversal_rank": reversal}
    return {"right_direction_percent": rates, "example": example}


def _adapter_options(variant: str, model_path: str) -> dict[str, Any]:
    # The paper splits ViT-B's 12 layers at K_s = 8; the small CLIP has fewer, so keep the same 2:1 proportion.
    if not variant.startswith("vop_f"):
        return {}
    from transformers import CLIPConfig

    layers = CLIPConfig.from_pretrained(model_path).vision_config.num_hidden_layers
    return {"intra_frame_layers": max(1, min(layers - 1, round(layers * 2 / 3)))}


def seconds_since_start(fallback_start: float) -> float:
    """Seconds since this process started (Linux: from /proc, so imports count too), else since `fallback_start`."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            return float(uptime.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - fallback_start


def plural(count: int, noun: str) -> str:
    """`1 epoch`, `2 epochs`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _header(step: int, text: str) -> None:
    print(f"\n[{step}/{STEPS}] {text}", flush=True)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    from .._atomic import write_json

    write_json(path, value)


def _row(name: str, summary: dict[str, Any]) -> str:
    t2v, v2t = summary["t2v"], summary["v2t"]
    pairs = summary.get("order_pairs", {})
    return (
        f"| {name} | {t2v['R@1']:.1f} | {t2v['R@5']:.1f} | {t2v['R@10']:.1f} | {t2v['MdR']:.1f} | {t2v['MnR']:.1f} | "
        f"{v2t['R@1']:.1f} | {v2t['R@5']:.1f} | {pairs.get('t2v', float('nan')):.1f} | "
        f"{pairs.get('v2t', float('nan')):.1f} |"
    )


def _table(variant: str, zero_shot: dict[str, Any], trained: dict[str, Any]) -> str:
    header = (
        "| model | t2v R@1 | R@5 | R@10 | MdR | MnR | v2t R@1 | R@5 | order pairs t2v % | order pairs v2t % |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([header, _row("zero-shot CLIP", zero_shot), _row(f"VoP ({variant})", trained)])
