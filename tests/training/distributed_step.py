"""One VoP training step's loss and prompt gradients, run under `torchrun` by test_distributed.py.

Every process builds the same tiny model (CLIP, or the family named by the third argument) + adapter and the same global batch of `2 * b` videos; accelerate's
prepared loader (split_batches, as in `vop train`) hands each of the W processes its `2b / W` videos. The script
runs `contrastive_step` (the loop's own forward/gather/backward) once and saves, per process, the global loss and
the gradients the optimizer would see (after DDP's averaging). A SigLIP model trains with its sigmoid loss (its
frozen `logit_bias` passed on), a CLIP with the softmax loss.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from torch.utils.data import DataLoader


sys.path[:0] = [str(Path(__file__).parents[1])]

from helpers.families import tiny_model  # noqa: E402
from peft import get_peft_model  # noqa: E402

import peft_vop  # noqa: E402
from peft_vop.training import VideoTextEncoder, contrastive_step  # noqa: E402


VARIANTS = {"vop": {}, "vop_f+p": {"intra_frame_layers": 2}, "vop_c": {}}


def run(output: Path, global_batch: int, family: str = "clip") -> None:
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(split_batches=True))
    generator = torch.Generator().manual_seed(1)
    frames = torch.randn(global_batch, 4, 3, 32, 32, generator=generator)
    input_ids = torch.randint(0, 90, (global_batch, 7), generator=generator)
    input_ids[:, 0], input_ids[:, -1] = 96, 97
    samples = [
        {"pixel_values": frames[i], "input_ids": input_ids[i], "attention_mask": torch.ones(7, dtype=torch.long)}
        for i in range(global_batch)
    ]
    results = {}
    for variant, options in VARIANTS.items():
        torch.manual_seed(0)
        model = get_peft_model(tiny_model(family), peft_vop.VoPConfig(variant=variant, num_frames=4, **options))
        encoder = VideoTextEncoder(model)
        loader = DataLoader(samples, batch_size=global_batch)
        encoder, loader = accelerator.prepare(encoder, loader)
        batch = next(iter(loader))
        assert batch["pixel_values"].shape[0] == global_batch // accelerator.num_processes
        unwrapped = accelerator.unwrap_model(encoder)
        logit_bias = None if unwrapped.logit_bias is None else unwrapped.logit_bias.detach()
        assert (logit_bias is None) == (family == "clip")
        loss = contrastive_step(accelerator, encoder, batch, unwrapped.logit_scale.detach(), logit_bias)
        gradients = {
            name: parameter.grad.clone()
            for name, parameter in accelerator.unwrap_model(encoder).named_parameters()
            if parameter.requires_grad
        }
        results[variant] = {"loss": loss, "gradients": gradients}
        accelerator.free_memory()
    torch.save(results, output / f"rank{accelerator.process_index}.pt")


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:])
