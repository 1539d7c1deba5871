"""Speed and memory of VoP next to CLIP, measured side by side in one run.

Three measurements, all at a real geometry of a backbone family (`--family`: CLIP, MetaCLIP 2, SigLIP, SigLIP 2) with
random weights (nothing is downloaded), B videos x F frames:

- `encode`: video-batch encoding time with VoP / without (the untouched CLIP encoding the same frames), next to the
  analytic FLOP ratios: of what peft-vop runs (prompts skip the MLP, see `flops.py`) and of prompts through the whole
  layer (58 vs 50 tokens at B/32, the issue's reference point); interleaved repetitions, median of per-pair ratios.
- `train`: one training step (forward, symmetric contrastive loss, backward, AdamW) with prompt tuning / with full
  fine-tuning; and the peak memory above the loaded model of each, every step in a fresh process (on the CPU, the
  peak of live tensors: see `peak_memory` and `--cpu_allocator`). Next to the time ratio, the FLOPs of each step's
  forward and backward as torch's `FlopCounterMode` counts them, and those of the input-gradient floor: the frozen
  backbone backpropagating to the input of its first layer, the least arithmetic any method that trains something
  at every layer's input (as deep prompts do) must run.
- `variants`: the same step time and peak memory for every VoP variant, next to plain VoP and full fine-tuning,
  with the analytic FLOP ratio of each variant over plain VoP.

Usage:
    python benchmarks/bench_tuner.py encode train --geometry b32 --repeats 7
    python benchmarks/bench_tuner.py encode train --family siglip2 --geometry b16
    python benchmarks/bench_tuner.py variants --geometry b16 --device cuda --output results.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from peft import get_peft_model
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    CLIPConfig,
    CLIPModel,
    MetaClip2Config,
    MetaClip2Model,
    Siglip2Config,
    Siglip2Model,
    SiglipConfig,
    SiglipModel,
)

import peft_vop


sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops import text_flops, vision_flops
from pool_steps import pair_ratios, quartiles


# At 224 px; SigLIP 2 (NaFlex) takes the same 14 x 14 (B/16) or 7 x 7 (B/32) patches as a sequence.
GEOMETRIES = {"b32": {"patch_size": 32}, "b16": {"patch_size": 16}}
FAMILIES = {
    "clip": (CLIPConfig, CLIPModel),
    "metaclip_2": (MetaClip2Config, MetaClip2Model),
    "siglip": (SiglipConfig, SiglipModel),
    "siglip2": (Siglip2Config, Siglip2Model),
}
FAMILY = "clip"  # set from --family
TEXT_LENGTH = 32
VARIANT_OPTIONS = {name: {"variant": name} for name in peft_vop.VARIANTS}


def clip_config(geometry: str):
    """The config of the benchmarked family at `geometry` (transformers' defaults otherwise: base width and depth)."""
    config_class, _ = FAMILIES[FAMILY]
    vision = dict(GEOMETRIES[geometry])
    if FAMILY == "siglip2":
        vision["num_patches"] = (224 // vision["patch_size"]) ** 2
    return config_class(vision_config=vision)


CHECKPOINTED = "vop+checkpointing"  # plain VoP with gradient checkpointing (`vop train --gradient_checkpointing`)
FLOOR = "input-gradient floor"  # the frozen backbone with gradients to every layer's input, no prompts


def build(geometry: str, device: str, mode: str, frames: int):
    """A model of the family for `mode`: "full" (every weight trains), a VoP variant name, or `CHECKPOINTED`."""
    torch.manual_seed(0)
    clip = FAMILIES[FAMILY][1](clip_config(geometry)).to(device)
    if mode == "full":
        return clip.train()
    config = peft_vop.VoPConfig(num_frames=frames, **VARIANT_OPTIONS["vop" if mode == CHECKPOINTED else mode])
    model = get_peft_model(clip, config).train()
    if mode == CHECKPOINTED:  # as `vop train --gradient_checkpointing` sets it
        clip.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def batch(geometry: str, device: str, videos: int, frames: int):
    generator = torch.Generator().manual_seed(0)
    config = clip_config(geometry)
    if FAMILY == "siglip2":
        patches, patch = config.vision_config.num_patches, config.vision_config.patch_size
        side = int(patches**0.5)
        vision = {
            "pixel_values": torch.randn(videos, frames, patches, 3 * patch * patch, generator=generator),
            "pixel_attention_mask": torch.ones(videos, frames, patches, dtype=torch.long),
            "spatial_shapes": torch.tensor([side, side]).expand(videos, frames, 2).contiguous(),
        }
    else:
        size = config.vision_config.image_size
        vision = {"pixel_values": torch.randn(videos, frames, 3, size, size, generator=generator)}
    vocabulary = config.text_config.vocab_size
    input_ids = torch.randint(0, min(vocabulary - 3, 49405), (videos, TEXT_LENGTH), generator=generator)
    if FAMILY in ("clip", "metaclip_2"):
        input_ids[:, 0], input_ids[:, -1] = 49406, 49407
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), **vision}
    return {k: v.to(device) for k, v in inputs.items()}


def full_finetuning_loss(clip, inputs: dict) -> torch.Tensor:
    """The family's own contrastive loss (as VoP's), computed by the plain model on frames with mean pooling."""
    videos, frames = inputs["pixel_values"].shape[:2]
    vision = {k: v.flatten(0, 1) for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    frame_embeds = clip.get_image_features(**vision).pooler_output
    video_embeds = peft_vop.mean_pool_frames(frame_embeds.view(videos, frames, -1))
    text = clip.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).pooler_output
    logits = torch.nn.functional.normalize(text, dim=-1) @ video_embeds.T * clip.logit_scale.exp()
    if FAMILY in ("siglip", "siglip2"):
        signs = 2 * torch.eye(videos, device=logits.device) - 1
        return -torch.nn.functional.logsigmoid(signs * (logits + clip.logit_bias)).sum(dim=-1).mean()
    labels = torch.arange(videos, device=logits.device)
    return (
        torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.T, labels)
    ) / 2


def make_step(model, mode: str, inputs: dict):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.2)

    def step() -> None:
        loss = full_finetuning_loss(model, inputs) if mode == "full" else model(**inputs, return_loss=True).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def counted_step_flops(geometry: str, device: str, mode: str, videos: int, frames: int) -> tuple[int, int]:
    """FLOPs of one training step of `mode` ("vop", "full" or `FLOOR`): of its forward, and of forward and backward
    together (matmuls, attention, convolutions), as torch's `FlopCounterMode` counts what runs. Exact, and the same
    on every device."""
    model = build(geometry, device, "full" if mode == FLOOR else mode, frames)
    inputs = batch(geometry, device, videos, frames)
    if mode == FLOOR:
        model.requires_grad_(False)

        def needs_grad(module, args, output):  # the embeddings' output becomes a leaf that asks for its gradient
            return output.detach().requires_grad_(True)

        for tower in (model.vision_model, model.text_model):
            tower.embeddings.register_forward_hook(needs_grad)
    with FlopCounterMode(display=False) as counter:
        loss = model(**inputs, return_loss=True).loss if mode == "vop" else full_finetuning_loss(model, inputs)
        forward = counter.get_total_flops()
        loss.backward()
    return forward, counter.get_total_flops()


def timed(function, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def paired_ratio(first, second, device: str, repeats: int) -> tuple[float, float, float, list[float]]:
    """Median of first/second over interleaved repetitions (after one warm-up of each), the median times and the
    quartiles of the per-pair ratios."""
    first()
    second()
    pairs = []
    for repeat in range(repeats):
        order = (first, second) if repeat % 2 == 0 else (second, first)
        times = {id(f): timed(f, device) for f in order}
        pairs.append((times[id(first)], times[id(second)]))
    firsts, seconds = [a for a, _ in pairs], [b for _, b in pairs]
    ratios = pair_ratios(firsts, seconds)
    return statistics.median(ratios), statistics.median(firsts), statistics.median(seconds), quartiles(ratios)


def flop_ratio(
    geometry: str,
    videos: int,
    frames: int,
    mode: str,
    reference: str | None,
    with_text: bool,
    prompt_mlp: bool = False,
) -> float:
    config = clip_config(geometry)

    def total(name: str | None) -> int:
        vop = None if name is None else peft_vop.VoPConfig(num_frames=frames, **VARIANT_OPTIONS[name])
        flops = vision_flops(config.vision_config, videos, frames, vop, prompt_mlp)
        if with_text:
            flops += text_flops(config.text_config, videos, TEXT_LENGTH, vop, prompt_mlp)
        return flops

    return total(mode) / total(reference)


# ---------------------------------------------------------------------------------------------------- measurements
def measure_encode(args) -> dict:
    model = build(args.geometry, args.device, "vop", args.frames).eval()
    clip = build(args.geometry, args.device, "full", args.frames).eval()  # the same weights, untouched
    inputs = batch(args.geometry, args.device, args.videos, args.frames)
    videos = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    frames = {k: v.flatten(0, 1) for k, v in videos.items()}

    @torch.no_grad()
    def with_vop():
        model.get_image_features(**videos)

    @torch.no_grad()
    def without():
        frame_embeds = clip.get_image_features(**frames).pooler_output
        peft_vop.mean_pool_frames(frame_embeds.view(args.videos, args.frames, -1))

    ratio, vop_time, base_time, spread = paired_ratio(with_vop, without, args.device, args.repeats)
    flops = flop_ratio(args.geometry, args.videos, args.frames, "vop", None, with_text=False)
    whole_layer = flop_ratio(args.geometry, args.videos, args.frames, "vop", None, with_text=False, prompt_mlp=True)
    return {
        "vop_seconds": vop_time,
        "clip_seconds": base_time,
        "time_ratio": ratio,
        "time_ratio_quartiles": spread,
        "flop_ratio": flops,
        "ratio_over_flops": ratio / flops,
        "whole_layer_flop_ratio": whole_layer,
        "ratio_over_whole_layer_flops": ratio / whole_layer,
    }


def measure_step_time(args, modes: list[str]) -> dict[str, float]:
    """Step time of every mode, interleaved, each as the median ratio to plain VoP times VoP's median time."""
    inputs = batch(args.geometry, args.device, args.videos, args.frames)
    steps = {}
    for mode in modes:
        model = build(args.geometry, args.device, mode, args.frames)
        steps[mode] = (model, make_step(model, mode, inputs))
    for _, step in steps.values():
        step()  # warm-up: allocates optimizer states
    times = {mode: [] for mode in modes}
    for repeat in range(args.repeats):
        order = modes if repeat % 2 == 0 else list(reversed(modes))
        for mode in order:
            times[mode].append(timed(steps[mode][1], args.device))
    return times


def peak_memory(args, mode: str) -> float:
    """Peak memory above the loaded model, in MiB, of two training steps of `mode`.

    On CUDA the caching allocator's own peak counter (bytes held by live tensors) is exact, so the model is built
    here and freed afterwards; on the CPU each mode runs in a fresh process and the peak resident set size is read
    from /proc. There glibc's malloc would keep freed blocks of up to 32 MiB on its heap (its mmap threshold grows to
    the largest block freed) and count them as resident, inflating the figure by whatever the allocation order left
    behind; with `MALLOC_MMAP_THRESHOLD_` fixed at 64 KiB (the `--cpu_allocator returning` default) every tensor is
    its own mapping, returned when freed, so the peak is that of live tensors, as CUDA's counter measures it.
    """
    if args.device == "cuda":
        return _measure_memory(args, mode)
    command = [sys.executable, __file__, "_memory", "--mode", mode, "--geometry", args.geometry, "--family", FAMILY]
    command += ["--device", args.device, "--videos", str(args.videos), "--frames", str(args.frames)]
    environment = dict(os.environ)
    if args.cpu_allocator == "returning":
        environment["MALLOC_MMAP_THRESHOLD_"] = str(64 * 1024)
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    return float(result.stdout.strip().splitlines()[-1])


def _memory_child(args) -> None:
    print(_measure_memory(args, args.mode))


def _measure_memory(args, mode: str) -> float:
    model = build(args.geometry, args.device, mode, args.frames)
    inputs = batch(args.geometry, args.device, args.videos, args.frames)
    step = make_step(model, mode, inputs)
    if args.device == "cuda":
        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - baseline
        del model, step, inputs
        torch.cuda.empty_cache()
        return peak / 2**20
    baseline = _rss_kib()
    with open("/proc/self/clear_refs", "w") as handle:  # resets VmHWM, the peak resident set size
        handle.write("5")
    step()
    step()
    return (_peak_rss_kib() - baseline) / 1024


def _rss_kib() -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _peak_rss_kib() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def measure_train(args) -> dict:
    modes = ["vop", "full"] + ([CHECKPOINTED] if args.gradient_checkpointing else [])
    times = measure_step_time(args, modes)
    ratios = pair_ratios(times["vop"], times["full"])
    memory = {mode: peak_memory(args, mode) for mode in modes}
    flops = {
        mode: counted_step_flops(args.geometry, args.device, mode, args.videos, args.frames)[1]
        for mode in ("vop", "full", FLOOR)
    }
    results = {
        "vop_step_seconds": statistics.median(times["vop"]),
        "full_step_seconds": statistics.median(times["full"]),
        "step_time_ratio": statistics.median(ratios),
        "step_time_ratio_quartiles": quartiles(ratios),
        "step_time_ratios": ratios,
        "vop_peak_mib": memory["vop"],
        "full_peak_mib": memory["full"],
        "peak_memory_ratio": memory["vop"] / memory["full"],
        "vop_step_gflop": flops["vop"] / 1e9,
        "full_step_gflop": flops["full"] / 1e9,
        "floor_step_gflop": flops[FLOOR] / 1e9,
        "step_flop_ratio": flops["vop"] / flops["full"],
        "floor_flop_ratio": flops[FLOOR] / flops["full"],
    }
    if args.gradient_checkpointing:
        results["checkpointed_step_seconds"] = statistics.median(times[CHECKPOINTED])
        results["checkpointed_step_time_ratio"] = statistics.median(pair_ratios(times[CHECKPOINTED], times["full"]))
        results["checkpointed_peak_mib"] = memory[CHECKPOINTED]
        results["checkpointed_peak_memory_ratio"] = memory[CHECKPOINTED] / memory["full"]
    return results


def measure_variants(args) -> dict:
    modes = list(peft_vop.VARIANTS) + ["full"]
    times = measure_step_time(args, modes)
    rows = {}
    for mode in modes:
        rows[mode] = {
            "step_seconds": statistics.median(times[mode]),
            "step_ratio_to_vop": statistics.median(pair_ratios(times[mode], times["vop"])),
            "peak_mib": peak_memory(args, mode),
            "flop_ratio_to_vop": None
            if mode == "full"
            else flop_ratio(args.geometry, args.videos, args.frames, mode, "vop", with_text=True),
        }
    return rows


def _spread(quartile_pair: list[float]) -> str:
    return f"per-pair quartiles {quartile_pair[0]:.3f}-{quartile_pair[1]:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="+", choices=["encode", "train", "variants", "_memory"])
    parser.add_argument("--family", choices=sorted(FAMILIES), default="clip", help="backbone family (default: clip)")
    parser.add_argument("--geometry", choices=sorted(GEOMETRIES), default="b32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--cpu_allocator",
        choices=["returning", "default"],
        default="returning",
        help="CPU peak memory: 'returning' gives freed tensors back at once (MALLOC_MMAP_THRESHOLD_=65536), so the "
        "peak counts live tensors as CUDA's counter does; 'default' keeps glibc's own settings (default: returning)",
    )
    parser.add_argument(
        "--gradient_checkpointing",
        action="store_true",
        help="`train` also measures plain VoP with gradient checkpointing (as `vop train --gradient_checkpointing`)",
    )
    parser.add_argument("--mode", default="vop", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    global FAMILY
    FAMILY = args.family
    if args.what == ["_memory"]:
        _memory_child(args)
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    header = (
        f"{args.family} {args.geometry.upper()} geometry, {args.videos} videos x {args.frames} frames, fp32, "
        f"{device_name}"
    )
    if args.device == "cpu":
        header += f", CPU allocator for peak memory: {args.cpu_allocator}"
    results = {
        "setup": header,
        "family": args.family,
        "geometry": args.geometry,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
    }
    print(f"# {header}\n")
    if "encode" in args.what:
        encode = results["encode"] = measure_encode(args)
        print(
            "| video encoding | VoP s | CLIP s | VoP/CLIP time | FLOP ratio, what runs | time / it | "
            "FLOP ratio, prompts through whole layers | time / it (target <= 1.05) |"
        )
        print("|---|---|---|---|---|---|---|---|")
        print(
            f"| median of {args.repeats} pairs | {encode['vop_seconds']:.4f} | {encode['clip_seconds']:.4f} | "
            f"{encode['time_ratio']:.3f} ({_spread(encode['time_ratio_quartiles'])}) | {encode['flop_ratio']:.3f} | "
            f"{encode['ratio_over_flops']:.3f} | "
            f"{encode['whole_layer_flop_ratio']:.3f} | {encode['ratio_over_whole_layer_flops']:.3f} |\n"
        )
    if "train" in args.what:
        train = results["train"] = measure_train(args)
        print("| training step | VoP | full fine-tuning | VoP / full (target) |")
        print("|---|---|---|---|")
        print(
            f"| time (s) | {train['vop_step_seconds']:.3f} | {train['full_step_seconds']:.3f} | "
            f"{train['step_time_ratio']:.3f} (<= 0.68; {_spread(train['step_time_ratio_quartiles'])}) |"
        )
        print(
            f"| peak memory above model (MiB) | {train['vop_peak_mib']:.0f} | {train['full_peak_mib']:.0f} | "
            f"{train['peak_memory_ratio']:.3f} (<= 0.40) |"
        )
        print(
            f"| counted GFLOP, forward + backward | {train['vop_step_gflop']:.1f} | {train['full_step_gflop']:.1f} | "
            f"{train['step_flop_ratio']:.3f} (input-gradient floor: {train['floor_step_gflop']:.1f} GFLOP, "
            f"{train['floor_flop_ratio']:.3f}) |"
        )
        if args.gradient_checkpointing:
            print(
                f"| with gradient checkpointing: time (s) | {train['checkpointed_step_seconds']:.3f} | "
                f"{train['full_step_seconds']:.3f} | {train['checkpointed_step_time_ratio']:.3f} |"
            )
            print(
                f"| with gradient checkpointing: peak memory (MiB) | {train['checkpointed_peak_mib']:.0f} | "
                f"{train['full_peak_mib']:.0f} | {train['checkpointed_peak_memory_ratio']:.3f} |"
            )
        print()
    if "variants" in args.what:
        rows = results["variants"] = measure_variants(args)
        print("| mode | step s | step / vop | analytic FLOPs / vop | peak MiB above model |")
        print("|---|---|---|---|---|")
        for mode, row in rows.items():
            flops = "—" if row["flop_ratio_to_vop"] is None else f"{row['flop_ratio_to_vop']:.3f}"
            print(
                f"| {mode} | {row['step_seconds']:.3f} | {row['step_ratio_to_vop']:.3f} | {flops} | "
                f"{row['peak_mib']:.0f} |"
            )
        print()
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
