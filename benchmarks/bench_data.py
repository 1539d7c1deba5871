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


if __name__ == "__main__":
    main()
