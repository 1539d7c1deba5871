"""Learning-rate sweep of the VoP recipe on the synthetic world: how the default learning rate was chosen.

For each variant and learning rate, `peft_vop.training.train` runs the paper's recipe (AdamW, weight decay 0.2,
cosine schedule with 10% warm-up, clipping at 1.0, 12 frames, batch 32) on the world's training split with the small
CLIP shipped with peft-vop, evaluating on the validation split after every epoch. The table reports the best
validation text-to-video R@1 and R@1+R@5+R@10 of both directions (rsum) over the epochs, and the final training loss.

    python benchmarks/lr_sweep.py --world /tmp/vop-world --output /tmp/lr-sweep.json

Frame caches are built with `vop prepare` first, so each run reads decoded frames.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


DEFAULT_RATES = (1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


def prepare_caches(model: str, annotations: Path, directory: Path, seed: int, workers: int) -> tuple[str, str]:
    from peft_vop.cli.main import main as vop

    common = ["--model", model, "--annotations", str(annotations), "--num-workers", str(workers), "--no-progress"]
    train_cache, val_cache = directory / "cache-train", directory / "cache-val"
    for split, cache, sampling in (
        ("train", train_cache, ["--sampling", "rand", "--seed", str(seed)]),
        ("val", val_cache, []),
    ):
        if vop(["prepare", *common, "--split", split, *sampling, "--output", str(cache)]) != 0:
            raise RuntimeError(f"vop prepare failed for split {split}")
    return str(train_cache), str(val_cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", required=True, help="folder of the synthetic world (generated if missing)")
    parser.add_argument("--model", help="CLIP checkpoint (default: the small CLIP shipped with peft-vop)")
    parser.add_argument("--variants", nargs="+", default=["vop"])
    parser.add_argument("--rates", nargs="+", type=float, default=list(DEFAULT_RATES))
    parser.add_argument(
        "--intra-frame-layers", type=int, default=2, help="K_s of the VoP^F variants (the small CLIP has 4 layers)"
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--mixed-precision", default=None)
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()

    from peft_vop.synthetic import default_model_path, generate_world
    from peft_vop.training import TrainingConfig, train

    model = args.model or str(default_model_path())
    annotations = generate_world(args.world)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lr-sweep-") as directory:
        train_cache, val_cache = prepare_caches(model, annotations, Path(directory), args.seed, args.num_workers)
        for variant in args.variants:
            for rate in args.rates:
                started = time.perf_counter()
                config = TrainingConfig(
                    model_name_or_path=model,
                    annotations=str(annotations),
                    output_dir=f"{directory}/{variant}-{rate:g}",
                    variant=variant,
                    adapter_options={"intra_frame_layers": args.intra_frame_layers} if "_f" in variant else {},
                    learning_rate=rate,
                    num_train_epochs=args.epochs,
                    batch_size=args.batch_size,
                    frame_cache=train_cache,
                    eval_frame_cache=val_cache,
                    metric_for_best_model="rsum",
                    checkpoint_steps=None,
                    num_workers=args.num_workers,
                    seed=args.seed,
                    mixed_precision=args.mixed_precision,
                    logging_steps=10,
                )
                result = train(config)
                history = result.eval_history
                rows.append(
                    {
                        "variant": variant,
                        "learning_rate": rate,
                        "best_t2v_R@1": max(entry["t2v/R@1"] for entry in history),
                        "best_rsum": max(entry["rsum"] for entry in history),
                        "final_rsum": history[-1]["rsum"],
                        "final_train_loss": result.train_loss,
                        "seconds": time.perf_counter() - started,
                        "history": history,
                    }
                )
                print(json.dumps({key: value for key, value in rows[-1].items() if key != "history"}), flush=True)

    print("\n| variant | lr | best val t2v R@1 | best val rsum | final val rsum | final train loss |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['variant']} | {row['learning_rate']:g} | {row['best_t2v_R@1']:.1f} | {row['best_rsum']:.1f} | "
            f"{row['final_rsum']:.1f} | {row['final_train_loss']:.3f} |"
        )
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
