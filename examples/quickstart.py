"""Attach VoP to a small CLIP, train a few steps on random videos, save the adapter and load it back.

Runs offline on a CPU in seconds:

    python examples/quickstart.py --variant vop_f+c --steps 30
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model
from transformers import CLIPConfig, CLIPModel

import peft_vop


def small_clip(seed: int = 0) -> CLIPModel:
    """A randomly initialised CLIP small enough for a CPU (use `CLIPModel.from_pretrained` for a real one)."""
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4},
        vision_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=32,
    )
    return CLIPModel(config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="vop_f+c", choices=list(peft_vop.VARIANTS))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()

    config = peft_vop.VoPConfig(
        variant=args.variant,
        num_frames=args.frames,
        intra_frame_layers=2 if args.variant.startswith("vop_f") else None,  # 4 layers here; 8 of 12 for ViT-B
    )
    model = get_peft_model(small_clip(), config)
    model.print_trainable_parameters()

    # Random "videos" [B, F, 3, H, W] (one pattern per video, a little noise per frame) and random captions
    # (BOS ... EOS). A real run uses the data pipeline (`peft_vop.data`) and a pre-trained CLIP; on random weights
    # the loss starts near ln(B) and falls slowly.
    generator = torch.Generator().manual_seed(0)
    pattern = 2 * torch.randn(args.videos, 1, 3, 32, 32, generator=generator)
    pixel_values = pattern + 0.3 * torch.randn(args.videos, args.frames, 3, 32, 32, generator=generator)
    input_ids = torch.randint(1, 49000, (args.videos, 10), generator=generator)
    input_ids[:, 0], input_ids[:, -1] = 49406, 49407
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "pixel_values": pixel_values}

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.2)
    model.train()
    for step in range(1, args.steps + 1):
        loss = model(**batch, return_loss=True).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step == 1 or step % 5 == 0 or step == args.steps:
            print(f"step {step:3d}  contrastive loss {loss.item():.4f}")

    model.eval()
    with torch.no_grad():
        video_embeds = model.get_image_features(pixel_values=pixel_values).pooler_output  # [B, E], unit norm
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        files = sorted(path.name for path in Path(directory).iterdir())
        reloaded = PeftModel.from_pretrained(small_clip(), directory)
        with torch.no_grad():
            again = reloaded.get_image_features(pixel_values=pixel_values).pooler_output
    print(f"saved adapter files: {files}")
    print(f"video embeddings {tuple(video_embeds.shape)}; identical after reload: {torch.equal(video_embeds, again)}")


if __name__ == "__main__":
    main()
