"""Search your videos: index build throughput against `vop eval`'s encoding, exact and FAISS query latency.

1. **Build throughput**: `--videos` generated clips (`bench_data.write_clip`, `--seconds` s at 30 fps, 320x240) are
   encoded by `vop eval`'s path (`VideoTextDataset` -> `DataLoader` -> `encode_videos`) and indexed by
   `VideoIndex.build` (the same path, plus scanning, probing each file's duration, chunk saves and the atomic index
   write), alternately `--repeats` times in one run; videos/s of each and their ratio (build / eval) are reported.
   The model is the shipped small CLIP (decoding dominates) unless `--model` names another.
2. **Exact search**: latency of one text-sized query (and of a batch of 64) against N random unit vectors (E = 512)
   for N in `--sizes`, with the memory the embeddings take and the process's peak RSS growth while searching.
3. **FAISS** (`faiss-cpu`, IVF-Flat, `nlist = sqrt(N)`): build time, latency and recall@10 against the exact result
   at the largest N for each `--nprobe`, and the index's memory.

    python benchmarks/bench_search.py --videos 48 --workers 2 --sizes 10000 100000 1000000 --output search.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).parent))
from bench_data import write_clip


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_throughput(args: argparse.Namespace) -> dict:
    from torch.utils.data import DataLoader

    from peft_vop.data import VideoTextCollator, VideoTextDataset
    from peft_vop.retrieval import encode_videos
    from peft_vop.search import VideoIndex, collect_videos, load_model
    from peft_vop.synthetic import default_model_path

    model = args.model or str(default_model_path())
    folder = Path(tempfile.mkdtemp(prefix="bench_search_"))
    for number in range(args.videos):
        write_clip(folder / f"clip{number:04d}.mp4", args.seconds, 30, 320, 240, gop=30, seed=number)
    loaded = load_model(model, num_frames=12, device=args.device)
    eval_seconds, build_seconds = [], []
    for repeat in range(args.repeats):
        started = time.perf_counter()
        dataset = VideoTextDataset(collect_videos(folder), loaded.preprocessor, num_frames=12)
        loader = DataLoader(
            dataset,
            batch_size=args.batch_size,
            num_workers=args.workers,
            collate_fn=VideoTextCollator(loaded.preprocessor),
        )
        encoded = encode_videos(loaded.model, loader, progress=False)
        eval_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        index = VideoIndex.build(
            folder,
            folder.parent / f"{folder.name}_index{repeat}",
            model=model,
            num_frames=12,
            batch_size=args.batch_size,
            num_workers=args.workers,
            device=args.device,
            progress=False,
        )
        build_seconds.append(time.perf_counter() - started)
        assert torch.equal(index.embeddings, encoded.embeddings)
    eval_rate = args.videos / statistics.median(eval_seconds)
    build_rate = args.videos / statistics.median(build_seconds)
    return {
        "videos": args.videos,
        "seconds_per_video": args.seconds,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "eval_encode_seconds": eval_seconds,
        "index_build_seconds": build_seconds,
        "eval_videos_per_s": round(eval_rate, 2),
        "index_videos_per_s": round(build_rate, 2),
        "ratio": round(build_rate / eval_rate, 3),
        "identical_embeddings": True,
    }


def random_unit(count: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for start in range(0, count, 100_000):  # in slices, so the peak is the result, not twice it
        rows.append(
            torch.nn.functional.normalize(torch.randn(min(100_000, count - start), dim, generator=generator), dim=1)
        )
    return torch.cat(rows)


def timed(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def search_latency(args: argparse.Namespace) -> dict:
    from peft_vop.search import ExactBackend, FaissBackend

    results: dict = {"exact": [], "faiss": []}
    queries = random_unit(100, 512, seed=1)
    embeddings = None
    for size in args.sizes:
        del embeddings
        embeddings = random_unit(size, 512, seed=0)
        backend = ExactBackend(embeddings)
        before = peak_rss_mb()
        one = timed(lambda b=backend: b.search(queries[:1], 10), args.queries)
        batch = timed(lambda b=backend: b.search(queries[:64], 10), max(3, args.queries // 5))
        results["exact"].append(
            {
                "n": size,
                "ms_per_query": round(one * 1e3, 2),
                "ms_per_batch_of_64": round(batch * 1e3, 2),
                "embeddings_mb": round(embeddings.numel() * 4 / 2**20, 1),
                "peak_rss_growth_while_searching_mb": round(peak_rss_mb() - before, 1),
            }
        )
        print(json.dumps(results["exact"][-1]), flush=True)
    if args.no_faiss:
        return results
    _, exact_rows = ExactBackend(embeddings).search(queries, 10)
    before = peak_rss_mb()
    started = time.perf_counter()
    faiss_backend = FaissBackend(embeddings, nprobe=1)
    build = time.perf_counter() - started
    import faiss

    index_mb = len(faiss.serialize_index(faiss_backend.index)) / 2**20
    for nprobe in args.nprobe:
        faiss_backend.index.nprobe = nprobe
        _, rows = faiss_backend.search(queries, 10)
        recall = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(rows, exact_rows)) / rows.numel()
        one = timed(lambda: faiss_backend.search(queries[:1], 10), args.queries)
        results["faiss"].append(
            {
                "n": embeddings.shape[0],
                "nlist": faiss_backend.index.nlist,
                "nprobe": nprobe,
                "ms_per_query": round(one * 1e3, 3),
                "recall_at_10": round(recall, 3),
                "build_seconds": round(build, 1),
                "index_mb": round(index_mb, 1),
                "peak_rss_growth_building_mb": round(peak_rss_mb() - before, 1),
            }
        )
        print(json.dumps(results["faiss"][-1]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--seconds", type=int, default=4, help="length of each generated clip")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="alternating eval/build runs")
    parser.add_argument("--model", help="CLIP checkpoint (default: the shipped small CLIP)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=20, help="timed repeats per latency")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--no-faiss", action="store_true")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--output", help="write the results as JSON")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = {"torch_threads": torch.get_num_threads()}
    if not args.skip_build:
        results["build"] = build_throughput(args)
        print(json.dumps(results["build"]), flush=True)
    results.update(search_latency(args))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
