"""Train a VoP adapter with the Hugging Face `Trainer` instead of `vop train`.

For users whose pipeline already runs on `transformers.Trainer`. Three settings make it work with a VoP model:

- `remove_unused_columns=False`: a `PeftModel`'s `forward(*args, **kwargs)` names no columns, so the Trainer would
  otherwise drop every field of the batch;
- the collator adds `return_loss=True`, so the model computes CLIP's symmetric contrastive loss itself (the
  Trainer uses the loss the model returns);
- `label_names=[]`: the batch carries no labels, the positives are the diagonal of the similarity matrix.

What `vop train` does and the `Trainer` does not: on several GPUs the Trainer's loss sees only the videos of its own
GPU as negatives (no all-gather), and its evaluation reports the loss, not retrieval metrics (run
`peft_vop.retrieval.evaluate_retrieval`, as at the end of this script, or `vop eval`).

Run it offline on the synthetic world and the small CLIP shipped with peft-vop:

    python examples/hf_trainer.py --world /tmp/vop-world --output-dir /tmp/vop-trainer

or on your own data: `--annotations data.jsonl --model openai/clip-vit-base-patch32`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from peft import get_peft_model
from transformers import AutoTokenizer, CLIPModel, Trainer, TrainingArguments

import peft_vop
from peft_vop.data import FramePreprocessor, VideoTextCollator, VideoTextDataset, read_annotations
from peft_vop.retrieval import evaluate_retrieval
from peft_vop.training import DEFAULT_LEARNING_RATE  # measured for `vop train`, see docs/training.md


class TrainerCollator:
    """`VideoTextCollator` for the `Trainer`: model inputs only, and `return_loss=True`."""

    def __init__(self, collator: VideoTextCollator) -> None:
        self.collator = collator

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(items)
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "pixel_values": batch["pixel_values"],  # [B, F, 3, H, W]
            "return_loss": True,
        }


def build_trainer(
    model_name_or_path: str,
    annotations: str,
    output_dir: str,
    *,
    variant: str = "vop",
    num_frames: int = 12,
    batch_size: int = 32,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    num_epochs: float = 5,
    max_steps: int = -1,
    num_workers: int = 2,
    seed: int = 42,
    use_cpu: bool = False,
) -> tuple[Trainer, VideoTextDataset, Any]:
    """
    A `Trainer` set up with the VoP recipe (AdamW, weight decay 0.2, cosine schedule with 10% warm-up,
    gradient-norm clipping at 1.0) on the `train` split of a generic annotation file.

    Returns:
        `tuple`: the trainer, the `val` split as an evaluation dataset, and the tokenizer.
    """
    preprocessor = FramePreprocessor.from_pretrained(model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    train_dataset = VideoTextDataset(
        read_annotations(annotations, split="train"),
        preprocessor,
        num_frames=num_frames,
        sampling="rand",
        train=True,
        seed=seed,
    )
    eval_dataset = VideoTextDataset(read_annotations(annotations, split="val"), preprocessor, num_frames=num_frames)

    model = get_peft_model(
        CLIPModel.from_pretrained(model_name_or_path), peft_vop.VoPConfig(variant=variant, num_frames=num_frames)
    )
    arguments = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=0.2,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,  # a float below 1 is a ratio of the total steps
        max_grad_norm=1.0,
        num_train_epochs=num_epochs,
        max_steps=max_steps,
        dataloader_drop_last=True,  # a contrastive batch of 1 has no negatives
        dataloader_num_workers=num_workers,
        remove_unused_columns=False,
        label_names=[],
        prediction_loss_only=True,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_steps=10,
        report_to="none",
        seed=seed,
        use_cpu=use_cpu,
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=TrainerCollator(VideoTextCollator(preprocessor, tokenizer)),
    )
    return trainer, eval_dataset, tokenizer


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--annotations", help="generic annotation file with train and val splits")
    source.add_argument("--world", help="generate (or reuse) the synthetic world in this folder and train on it")
    parser.add_argument("--model", help="CLIP checkpoint (default: the small CLIP shipped with peft-vop)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--variant", default="vop", choices=sorted(peft_vop.VARIANTS))
    parser.add_argument("--num-frames", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=DEFAULT_LEARNING_RATE)
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    args = parser.parse_args(argv)

    annotations = args.annotations
    if args.world:
        from peft_vop.synthetic import generate_world

        annotations = str(generate_world(args.world))
    model_path = args.model
    if model_path is None:
        from peft_vop.synthetic import default_model_path

        model_path = str(default_model_path())

    trainer, eval_dataset, tokenizer = build_trainer(
        model_path,
        annotations,
        args.output_dir,
        variant=args.variant,
        num_frames=args.num_frames,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        num_epochs=args.epochs,
        max_steps=args.max_steps,
        use_cpu=args.cpu,
    )
    trainer.train()
    trainer.save_model(args.output_dir)  # the adapter only: PeftModel.save_pretrained
    report = evaluate_retrieval(trainer.model, tokenizer, eval_dataset, batch_size=args.batch_size)
    print(report.format_table())


if __name__ == "__main__":
    main()
