"""Throughput, data wait and peak memory of `vop train` against the bare model step, at ViT-B/32 geometry.

Both parts use the same randomly initialised ViT-B/32 CLIP (`CLIPConfig()` defaults, nothing downloaded) with the
same VoP adapter, batch size and frame count, each in a fresh process so that peak memory is its own:

- **bare step**: one pre-collated batch held in memory; per step `VideoTextEncoder` forward, symmetric loss,
  backward, gradient clipping, AdamW step. No accelerate, no data loading, no logging.
- **vop train**: the `vop train` command (through `peft_vop.cli.main`) on synthetic-world clips read from a frame
  cache built by `vop prepare`, with per-step logging (TensorBoard unless `--report-to none`) and the progress bar;
  its loader workers hand over `uint8` frames and the step crops, resizes, flips and normalises them on the device.
  `vop train` reports the part of its training time it waited for data; that fraction is printed too.

`--device cuda --mixed-precision bf16` runs both on the GPU (the bare step under bf16 autocast, synchronised every
step, as `vop train`'s per-step logging synchronises); `--device cpu` hides any GPU from both.

Step time is the interval between consecutive optimizer steps (a global `Optimizer` step hook), after warm-up steps,
so model loading and the final save are outside it. The overhead of the loop (data loading, accelerate, logging) is
`vop train` step time / bare step time - 1.

    python benchmarks/bench_train.py --batch-size 4 --steps 6 --warmup 2
    python benchmarks/bench_train.py --device cuda --mixed-precision bf16 --batch-size 32 --steps 20 --warmup 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def build_assets(directory: Path, num_videos: int, num_frames: int, seed: int) -> dict[str, str]:
    """A ViT-B/32 CLIP directory (random weights, a tokenizer, CLIP's image processor), videos and a frame cache."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from peft_vop.cli.main import main as vop
    from peft_vop.synthetic import generate_world
    from peft_vop.synthetic.tokenizer import build_world_tokenizer

    model_dir = directory / "clip-vit-b32-random"
    torch.manual_seed(0)
    CLIPModel(CLIPConfig()).save_pretrained(model_dir)
    build_world_tokenizer(model_max_length=77).save_pretrained(model_dir)  # ids fit CLIP's 49408-token table
    CLIPImageProcessor().save_pretrained(model_dir)  # 224 px, bicubic, CLIP mean/std
    annotations = generate_world(directory / "world", num_train=num_videos, num_val=0, num_test=0, image_size=64)
    cache = directory / "train-cache"
    status = vop(
        [
            "prepare",
            "--model",
            str(model_dir),
            "--annotations",
            str(annotations),
            "--split",
            "train",
            "--num-frames",
            str(num_frames),
            "--sampling",
            "rand",
            "--seed",
            str(seed),
            "--output",
            str(cache),
            "--no-progress",
        ]
    )
    if status != 0:
        raise RuntimeError("vop prepare failed")
    return {"model": str(model_dir), "annotations": str(annotations), "cache": str(cache)}


def record_steps() -> dict[str, list[float]]:
    """
    Timestamps, from now on in this process, of every optimizer step (`end`) and of the start of every forward
    pass of the `VideoTextEncoder` (`start`): `end - start` is the model step, `start - previous end` everything
    else (waiting for data, the loop's bookkeeping, logging).
    """
    from torch.nn.modules.module import register_module_forward_pre_hook
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from peft_vop.training import VideoTextEncoder

    stamps: dict[str, list[float]] = {"start": [], "end": []}
    register_optimizer_step_post_hook(lambda *_: stamps["end"].append(time.perf_counter()))

    def on_forward(module, inputs):
        if isinstance(module, VideoTextEncoder):
            stamps["start"].append(time.perf_counter())

    register_module_forward_pre_hook(on_forward)
    return stamps


def bare_step(args: argparse.Namespace, assets: dict[str, str]) -> dict[str, list[float]]:
    """Time the model step alone on one pre-collated batch."""
    import torch
    from peft import get_peft_model
    from transformers import CLIPModel

    from peft_vop.training import TrainingConfig, VideoTextEncoder, symmetric_contrastive_loss
    from peft_vop.training.train_data import build_train_data, device_step

    config = TrainingConfig(
        model_name_or_path=assets["model"],
        annotations=assets["annotations"],
        output_dir="unused",
        variant=args.variant,
        num_frames=args.num_frames,
        seed=args.seed,
    )
    dataset, collate = build_train_data(config)
    batch = collate([dataset[index] for index in range(args.batch_size)])
    batch = {key: value.to(args.device) if torch.is_tensor(value) else value for key, value in batch.items()}
    batch = device_step(collate)(batch)
    batch = {key: batch[key] for key in ("input_ids", "attention_mask", "pixel_values")}
    model = get_peft_model(CLIPModel.from_pretrained(assets["model"]), config.adapter_config()).to(args.device)
    encoder = VideoTextEncoder(model).train()
    trainable = [parameter for parameter in encoder.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.2)
    logit_scale = encoder.logit_scale.detach()
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.mixed_precision == "bf16")
    stamps = record_steps()
    for _ in range(args.warmup + args.steps + 1):
        with autocast:
            video_embeds, text_embeds = encoder(**batch)
            loss = symmetric_contrastive_loss(text_embeds, video_embeds, logit_scale)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if args.device == "cuda":
            torch.cuda.synchronize()
    return stamps


def interleaved(args: argparse.Namespace, assets: dict[str, str]) -> None:
    """
    For hosts shared with other work, where two processes run minutes apart see different loads: in one process,
    alternate a bare step on a fixed batch with one step of the loop's own pieces (the prepared, seeded loader with
    `vop train`'s default workers, `contrastive_step`, clipping, AdamW and the schedule), and report the medians of
    wall-clock and process CPU time of each, and of fetching the loop's batch.
    """
    import torch
    from accelerate import Accelerator, DataLoaderConfiguration
    from peft import get_peft_model
    from torch.utils.data import DataLoader
    from transformers import CLIPModel, get_cosine_schedule_with_warmup

    from peft_vop.training import TrainingConfig, VideoTextEncoder, contrastive_step, symmetric_contrastive_loss
    from peft_vop.training.samplers import EpochShuffleSampler, SeededSamples
    from peft_vop.training.train_data import build_train_data, choose_loader_settings, device_step

    config = TrainingConfig(
        model_name_or_path=assets["model"],
        annotations=assets["annotations"],
        output_dir="unused",
        frame_cache=assets["cache"],
        variant=args.variant,
        num_frames=args.num_frames,
        seed=args.seed,
        num_workers=args.num_workers,
    )
    dataset, collate = build_train_data(config)
    prepare_batch = device_step(collate)
    fixed = prepare_batch(collate([dataset[index] for index in range(args.batch_size)]))
    fixed = {key: fixed[key] for key in ("input_ids", "attention_mask", "pixel_values")}
    encoder = VideoTextEncoder(get_peft_model(CLIPModel.from_pretrained(assets["model"]), config.adapter_config()))
    encoder.train()
    trainable = [parameter for parameter in encoder.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.2)
    scheduler = get_cosine_schedule_with_warmup(optimizer, 1, 1000)
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(split_batches=True))
    loader = DataLoader(
        SeededSamples(dataset, args.seed),
        batch_size=args.batch_size,
        sampler=EpochShuffleSampler(len(dataset), args.seed),
        drop_last=True,
        collate_fn=collate,
        **choose_loader_settings(args.num_workers, use_cpu=True, cached=True).loader_kwargs(),
    )
    prepared, optimizer, loader, scheduler = accelerator.prepare(encoder, optimizer, loader, scheduler)
    logit_scale = encoder.logit_scale.detach()
    batches = iter(loader)

    def bare() -> None:
        video_embeds, text_embeds = encoder(**fixed)
        symmetric_contrastive_loss(text_embeds, video_embeds, logit_scale).backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.optimizer.step()
        optimizer.optimizer.zero_grad()

    def loop_step(batch) -> None:
        with accelerator.accumulate(prepared):
            contrastive_step(accelerator, prepared, batch, logit_scale)
            accelerator.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()

    times: dict[str, list[tuple[float, float]]] = {"bare": [], "fetch": [], "loop step": []}
    clock = lambda: (time.perf_counter(), time.process_time())  # noqa: E731
    for repetition in range(args.warmup + args.steps):
        marks = [clock()]
        bare()
        marks.append(clock())
        batch = next(batches)
        marks.append(clock())
        loop_step(prepare_batch(batch))
        marks.append(clock())
        if repetition >= args.warmup:
            for name, start, end in zip(times, marks, marks[1:]):
                times[name].append((end[0] - start[0], end[1] - start[1]))
    medians = {
        name: [statistics.median(value[i] for value in values) for i in (0, 1)] for name, values in times.items()
    }
    bare_wall, bare_cpu = medians["bare"]
    print(
        f"interleaved, {args.steps} repetitions after {args.warmup}, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads, {loader.num_workers} loader workers (median wall s / CPU s):"
    )
    for name, (wall, cpu) in medians.items():
        print(
            f"  {name:<10} {wall:8.3f} / {cpu:8.3f}   ({100 * wall / bare_wall:5.1f}% / {100 * cpu / bare_cpu:5.1f}% of bare)"
        )
    overhead = [(fetch[0] + step[0]) / bare[0] - 1 for bare, fetch, step in zip(*times.values())]
    print(
        f"  loop overhead, median over repetitions of (fetch + loop step) / bare - 1: {100 * statistics.median(overhead):+.1f}%"
    )


def vop_train(args: argparse.Namespace, assets: dict[str, str], output_dir: str) -> dict[str, list[float]]:
    """Time `vop train` itself (the CLI entry point, in this process)."""
    from peft_vop.cli.main import main as vop

    stamps = record_steps()
    steps = args.warmup + args.steps + 1
    status = vop(
        [
            "train",
            "--model-name-or-path",
            assets["model"],
            "--annotations",
            assets["annotations"],
            "--frame-cache",
            assets["cache"],
            "--output-dir",
            output_dir,
            "--variant",
            args.variant,
            "--num-frames",
            str(args.num_frames),
            "--batch-size",
            str(args.batch_size),
            "--max-steps",
            str(steps),
            "--eval-split",
            "none",
            "--logging-steps",
            "1",
            "--report-to",
            args.report_to,
            "--mixed-precision",
            args.mixed_precision,
            *(["--num-workers", str(args.num_workers)] if args.num_workers is not None else []),
            "--seed",
            str(args.seed),
            "--checkpoint-steps",
            "none",
            "--overwrite-output-dir",
        ]
    )
    if status != 0:
        raise RuntimeError("vop train failed")
    return stamps


def child(args: argparse.Namespace) -> None:
    assets = json.loads(Path(args.assets).read_text())
    if args.part == "bare":
        stamps = bare_step(args, assets)
    else:
        stamps = vop_train(args, assets, str(Path(args.assets).parent / "run"))
        sys.stdout.flush()
    ends, starts = stamps["end"], stamps["start"]
    steps = range(args.warmup + 1, len(ends))  # step k runs from end[k-1] to end[k]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    result = {
        "part": args.part,
        "step_seconds": [ends[k] - ends[k - 1] for k in steps],
        "model_seconds": [ends[k] - starts[k] for k in steps],
        "outside_seconds": [starts[k] - ends[k - 1] for k in steps],
        "peak_rss_mib": peak_mib,
    }
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=4, help="videos per step (default: 4)")
    parser.add_argument("--num-frames", type=int, default=12)
    parser.add_argument("--steps", type=int, default=6, help="timed steps (default: 6)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    parser.add_argument("--variant", default="vop")
    parser.add_argument(
        "--num-workers", type=int, help="data-loading workers of vop train (default: vop train's own choice)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternate bare/train this many times, report medians (noisy hosts)"
    )
    parser.add_argument(
        "--interleaved",
        action="store_true",
        help="instead: alternate bare and loop steps in one process (noisy hosts)",
    )
    parser.add_argument(
        "--num-videos", type=int, help="videos to generate (default: enough for one epoch of all the steps)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--mixed-precision", choices=("no", "bf16"), default="no")
    parser.add_argument("--report-to", default="tensorboard", help="vop train's tracker (default: tensorboard)")
    parser.add_argument("--output", help="also write the results as JSON here")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--part", choices=("bare", "train"), help=argparse.SUPPRESS)
    parser.add_argument("--assets", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part is not None:
        child(args)
        return

    import torch

    with tempfile.TemporaryDirectory(prefix="bench-train-") as directory:
        started = time.perf_counter()
        num_videos = args.num_videos or args.batch_size * (args.warmup + args.steps + 2)
        assets = build_assets(Path(directory), num_videos, args.num_frames, args.seed)
        assets_file = Path(directory) / "assets.json"
        assets_file.write_text(json.dumps(assets))
        print(f"assets ready in {time.perf_counter() - started:.0f} s ({num_videos} videos cached)", file=sys.stderr)
        if args.interleaved:
            interleaved(args, assets)
            return
        forwarded = [
            f"--{name.replace('_', '-')}={getattr(args, name)}"
            for name in (
                "batch_size",
                "num_frames",
                "steps",
                "warmup",
                "variant",
                "num_workers",
                "seed",
                "device",
                "mixed_precision",
                "report_to",
            )
            if getattr(args, name) is not None
        ]
        # Steps of all rounds are pooled per part; alternating the parts spreads a busy host's load over both.
        results: dict[str, dict] = {}
        waits: list[float] = []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        if args.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""  # vop train would otherwise take a GPU
        for _ in range(args.rounds):
            for part in ("bare", "train"):
                completed = subprocess.run(
                    [sys.executable, __file__, f"--part={part}", f"--assets={assets_file}", *forwarded],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if completed.returncode != 0:
                    raise RuntimeError(f"{part} failed:\n{completed.stderr[-3000:]}")
                measured = json.loads(completed.stdout.strip().splitlines()[-1])
                waits += [float(value) for value in re.findall(r"waited for data ([\d.]+)%", completed.stdout)]
                pooled = results.setdefault(part, {"peak_rss_mib": 0.0})
                pooled["peak_rss_mib"] = max(pooled["peak_rss_mib"], measured["peak_rss_mib"])
                for key in ("step_seconds", "model_seconds", "outside_seconds"):
                    pooled.setdefault(key, []).extend(measured[key])

    bare, loop = (statistics.median(results[part]["step_seconds"]) for part in ("bare", "train"))
    where = f"CPU ({torch.get_num_threads()} threads)" if args.device == "cpu" else torch.cuda.get_device_name()
    print(
        f"ViT-B/32 (CLIPConfig() defaults, random init), variant {args.variant}, {args.num_frames} frames, batch "
        f"{args.batch_size}, {where}, mixed precision {args.mixed_precision}, median of {args.rounds} x {args.steps} steps "
        f"after {args.warmup} warm-up each; vop train with a frame cache, "
        f"{'its default' if args.num_workers is None else args.num_workers} loader workers, logging every step"
    )
    header = f"| {'':<31} | {'s/step':>7} | {'videos/s':>8} | {'in model step':>13} | {'outside it':>10} | {'peak RSS MiB':>12} |"
    print(header)
    print("|---|---:|---:|---:|---:|---:|")
    for part, name, seconds in (("bare", "bare model step", bare), ("train", "vop train (loop + data + logs)", loop)):
        inside = statistics.median(results[part]["model_seconds"])
        outside = statistics.median(results[part]["outside_seconds"])
        print(
            f"| {name:<31} | {seconds:>7.3f} | {args.batch_size / seconds:>8.2f} | {inside:>13.3f} | {outside:>10.3f} | "
            f"{results[part]['peak_rss_mib']:>12.0f} |"
        )
    print(f"loop overhead over the bare step: {100 * (loop / bare - 1):+.1f}% (target: under 10%)")
    target = 5 if args.device == "cpu" else 10
    print(
        f"vop train waited for data {', '.join(f'{value:.1f}%' for value in waits)} of its training time "
        f"(as it reports it; target: at most {target}%)"
    )
    for part in ("bare", "train"):
        print(f"{part} step times (s): {', '.join(f'{value:.3f}' for value in results[part]['step_seconds'])}")
    if args.output:
        summary = {"arguments": vars(args), "bare_seconds": bare, "train_seconds": loop, "data_wait_percent": waits}
        Path(args.output).write_text(json.dumps({**summary, "parts": results}, indent=2))


if __name__ == "__main__":
    main()
