"""Throughput of the video data pipeline: decoding, sampling and preprocessing 12 frames from 10-second clips.

Generates `--num-videos` clips (10 s at 30 fps, 320x240, H.264 with a keyframe every `--gop` frames, content that
moves so the encoder does real work) and measures, per video:

- **decode all frames**: decoding every frame in order (what a loader without seeking pays);
- **decoder only**: `VideoReader.read_frames` on the 12 uniformly sampled indices: seek + decode + RGB conversion,
  the floor for any pipeline that starts from the file;
- **pipeline**: `VideoTextDataset[i]` + the collator's normalisation: sampling, decoding, the image processor's
  resize (shortest side 224, bicubic), center crop and normalise, i.e. a model-ready `[12, 3, 224, 224]` clip;

then one epoch through a `DataLoader` (batch 8, `--workers` workers) without and with a frame cache built by
`build_frame_cache` (the build time is reported too). The image processor is `CLIPImageProcessor()` with its
defaults, the values of OpenAI's ViT-B/32 checkpoint; nothing is downloaded.

Last, side by side, the training data path from the cache (random resized crop + flip, batch 8):

- **per worker**: videos/s one loader worker delivers (one process, one torch thread, as in a worker): the
  per-sample CPU path (`VideoTextDataset(train=True)` crops, flips and resizes in float; the collator normalises)
  against the device path (`device_preprocessing=True`: the worker reads `uint8` frames and draws the crop box);
- **device step**: what `DeviceFramePreprocessor` then costs per video in the training step, on the CPU (one thread)
  and, when there is one, on the GPU, with the largest difference of its `pixel_values` from the CPU path's.

    python benchmarks/bench_data.py --num-videos 16 --workers 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter


def write_clip(path: Path, seconds: int, fps: int, width: int, height: int, gop: int, seed: int) -> None:
    """A clip with a drifting gradient background and a moving square (compressible, but not static)."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.thread_count = 1
        velocity = rng.uniform(1, 4, size=2)
        for index in range(seconds * fps):
            image = np.empty((height, width, 3), np.uint8)
            image[..., 0] = (columns + 2 * index) % 256
            image[..., 1] = (rows + index) % 256
            image[..., 2] = (columns + rows + seed * 40) % 256
            top = int(index * velocity[0]) % (height - 40)
            left = int(index * velocity[1]) % (width - 40)
            image[top : top + 40, left : left + 40] = 255 - image[top : top + 40, left : left + 40]
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def per_video_seconds(function, items, repeats: int) -> float:
    """Median over `repeats` passes of the mean time per item."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            function(item)
        times.append((time.perf_counter() - start) / len(items))
    return statistics.median(times)


def epoch_seconds(dataset, collator, workers: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=workers, collate_fn=collator)
    start = time.perf_counter()
    for batch in loader:
        assert batch["pixel_values"].shape[1:] == (12, 3, 224, 224)
    return time.perf_counter() - start


def per_batch_seconds(function, batches, repeats: int) -> float:
    """Median over `repeats` passes of the mean time per video of `function(batch)` over `batches` of 8 videos."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        videos = sum(function(batch) for batch in batches)
        times.append((time.perf_counter() - start) / videos)
    return statistics.median(times)


def training_path(records, preprocessor, cache: str, num_frames: int, repeats: int) -> list[tuple[str, float]]:
    """Per-video seconds of the per-sample CPU path and of the device path (worker part, device step)."""
    from peft_vop.data import DeviceFramePreprocessor, VideoTextCollator, VideoTextDataset

    options = {"num_frames": num_frames, "train": True, "cache": cache}
    per_sample = VideoTextDataset(records, preprocessor, **options)
    deferred = VideoTextDataset(records, preprocessor, **options, device_preprocessing=True)
    collator = VideoTextCollator(preprocessor)
    step = DeviceFramePreprocessor(preprocessor)
    batches = [list(range(start, min(start + 8, len(records)))) for start in range(0, len(records), 8)]

    def old(indices):
        batch = collator([per_sample[index] for index in indices])
        assert batch["pixel_values"].shape[1:] == (num_frames, 3, 224, 224)
        return len(indices)

    def new_worker(indices):
        collator([deferred[index] for index in indices])
        return len(indices)

    collated = [collator([deferred[index] for index in indices]) for indices in batches]
    rows = [
        ("per-sample CPU preprocessing (today's worker)", per_batch_seconds(old, batches, repeats)),
        ("uint8 + crop box (device path's worker)", per_batch_seconds(new_worker, batches, repeats)),
        (
            "device step on the CPU, 1 thread",
            per_batch_seconds(lambda b: len(step(b)["pixel_values"]), collated, repeats),
        ),
    ]
    expected = [collator([per_sample[index] for index in indices])["pixel_values"] for indices in batches]
    std = torch.tensor(preprocessor.image_std).view(3, 1, 1)  # pixel_values * std * 255 are grey levels

    def grey_levels(batches_):
        return max(
            ((step(batch)["pixel_values"].cpu() - reference) * std * 255).abs().max().item()
            for batch, reference in zip(batches_, expected)
        )

    rows.append(("max difference device step (CPU) vs per-sample path, grey levels", grey_levels(collated)))
    if torch.cuda.is_available():
        on_gpu = [
            {key: value.cuda() if torch.is_tensor(value) else value for key, value in batch.items()}
            for batch in collated
        ]

        def gpu_step(batch):
            videos = len(step(batch)["pixel_values"])
            torch.cuda.synchronize()
            return videos

        gpu_step(on_gpu[0])  # warm-up: kernels load on first use
        rows.append(("device step on the GPU", per_batch_seconds(gpu_step, on_gpu, repeats)))
        rows.append(("max difference device step (GPU) vs per-sample path, grey levels", grey_levels(on_gpu)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-videos", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--gop", type=int, default=60, help="keyframe interval in frames (default: 60, 2 s)")
    parser.add_argument("--num-frames", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the epoch timings")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from transformers import CLIPImageProcessor

    from peft_vop.data import (
        FramePreprocessor,
        VideoReader,
        VideoRecord,
        VideoTextCollator,
        VideoTextDataset,
        build_frame_cache,
        sample_frame_indices,
    )

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        started = time.perf_counter()
        paths = []
        for index in range(args.num_videos):
            paths.append(root / f"clip{index}.mp4")
            write_clip(paths[-1], args.seconds, args.fps, args.width, args.height, args.gop, index)
        print(f"wrote {args.num_videos} clips in {time.perf_counter() - started:.1f} s")

        total_frames = args.seconds * args.fps
        indices = sample_frame_indices(total_frames, args.num_frames)
        preprocessor = FramePreprocessor.from_image_processor(CLIPImageProcessor())
        records = [VideoRecord(str(path), (f"clip {i}",), f"clip{i}") for i, path in enumerate(paths)]
        dataset = VideoTextDataset(records, preprocessor, num_frames=args.num_frames)
        collator = VideoTextCollator(preprocessor)

        def decode_all(path):
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.codec_context.thread_count = 1
                reformatter = VideoReformatter()  # as VideoReader converts frames
                for frame in container.decode(stream):
                    reformatter.reformat(frame, format="rgb24").to_ndarray()

        decoded_counts = []

        def decoder_only(path):
            with VideoReader(path) as reader:
                reader.read_frames(indices)
                decoded_counts.append(reader.decoded_frames)

        def pipeline(index):
            collator([dataset[index]])

        rows = [
            ("decode all frames", per_video_seconds(decode_all, paths, args.repeats), total_frames),
            ("decoder only (12 sampled frames)", per_video_seconds(decoder_only, paths, args.repeats), None),
            (
                "pipeline (sample+decode+resize+crop+normalise)",
                per_video_seconds(pipeline, range(len(paths)), args.repeats),
                None,
            ),
        ]
        rows[1] = (*rows[1][:2], statistics.mean(decoded_counts))

        started = time.perf_counter()
        build_frame_cache(dataset, root / "cache", num_workers=args.workers, progress=False)
        build = time.perf_counter() - started
        uncached = epoch_seconds(dataset, collator, args.workers)
        cached_dataset = VideoTextDataset(records, preprocessor, num_frames=args.num_frames, cache=str(root / "cache"))
        cached = epoch_seconds(cached_dataset, collator, args.workers)
        training = training_path(records, preprocessor, str(root / "cache"), args.num_frames, args.repeats)

    print(
        f"\n{args.num_videos} clips of {args.seconds} s at {args.fps} fps, {args.width}x{args.height}, keyframe every "
        f"{args.gop} frames; {args.num_frames} frames sampled; one process, one torch thread"
    )
    print(f"{'per video':<50}{'ms/video':>10}{'videos/s':>10}{'frames decoded':>16}")
    for name, seconds, decoded in rows:
        decoded = "" if decoded is None else f"{decoded:.0f}"
        print(f"{name:<50}{seconds * 1000:>10.1f}{1 / seconds:>10.1f}{decoded:>16}")
    pipeline_seconds, decoder_seconds = rows[2][1], rows[1][1]
    print(f"preprocessing overhead over the decoder alone: {(pipeline_seconds / decoder_seconds - 1) * 100:.0f}%")
    epoch_title = f"epoch (DataLoader, batch 8, {args.workers} workers)"
    print(f"\n{epoch_title:<50}{'s':>10}{'videos/s':>10}")
    print(f"{'uncached (decode every video)':<50}{uncached:>10.2f}{args.num_videos / uncached:>10.1f}")
    print(f"{'cached (read the frame cache)':<50}{cached:>10.2f}{args.num_videos / cached:>10.1f}")
    print(f"{'building the cache (once)':<50}{build:>10.2f}{args.num_videos / build:>10.1f}")

    print("\ntraining data from the cache, per video, batch 8 (crop + flip + resize to 224 + normalise)")
    print(f"{'':<50}{'ms/video':>10}{'videos/s':>10}")
    timings = dict(training)
    for name, seconds in training:
        if name.startswith("max"):
            print(f"{name}: {seconds:.3g}")
        else:
            print(f"{name:<50}{seconds * 1000:>10.2f}{1 / seconds:>10.1f}")
    old = timings["per-sample CPU preprocessing (today's worker)"]
    worker = timings["uint8 + crop box (device path's worker)"]
    cpu_step = timings["device step on the CPU, 1 thread"]
    print(f"per worker, device path vs per-sample path: {old / worker:.1f}x the videos/s (target: 10x)")
    print(f"one process doing both on the CPU (worker part + device step): {old / (worker + cpu_step):.2f}x")
    if "device step on the GPU" in timings:
        gpu_step = timings["device step on the GPU"]
        print(f"worker part + device step on the GPU: {old / (worker + gpu_step):.1f}x the per-sample path")


if __name__ == "__main__":
    main()
