"""CUDA correctness checks of the VoP tuner, for a machine with a GPU (the CPU test suite covers the rest).

Every check prints one PASS/FAIL line; the script exits non-zero if any failed and writes the details as JSON.

    python benchmarks/device_check.py --output device_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

import numpy as np
import torch
from peft import get_peft_model


ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "tuner")]

from helpers.clip import tiny_clip, tiny_text_batch  # noqa: E402
from test_reference import _vision_reference  # noqa: E402
from vop_reference import text_features  # noqa: E402

import peft_vop  # noqa: E402


DEVICE = os.environ.get("VOP_CHECK_DEVICE", "cuda")  # "cpu" for a dry run of the script itself
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
RESULTS: dict[str, dict] = {}


def check(name: str):
    def decorator(function):
        try:
            detail = function() or {}
            RESULTS[name] = {"ok": True, **detail}
            print(f"PASS {name} {detail}")
        except Exception as error:  # report every check, then fail at the end
            RESULTS[name] = {"ok": False, "error": repr(error), "trace": traceback.format_exc()[-2000:]}
            print(f"FAIL {name}: {error!r}")
        return function

    return decorator


def model_for(variant: str, attn: str = "sdpa", width: int = 64):
    config = peft_vop.VoPConfig(
        variant=variant, num_frames=4, intra_frame_layers=2 if variant.startswith("vop_f") else None
    )
    clip = tiny_clip(attn_implementation=attn, vision_width=width, text_width=width).to(DEVICE)
    model = get_peft_model(clip, config)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return clip, config, model


def video(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(DEVICE)


def text(batch: int = 2):
    input_ids, attention_mask = tiny_text_batch(batch_size=batch, length=9, pad_last=3)
    return input_ids.to(DEVICE), attention_mask.to(DEVICE)


for _variant in peft_vop.VARIANTS:

    @check(f"reference fp32 {_variant}")
    def _reference(variant=_variant):
        clip, config, model = model_for(variant)
        with torch.no_grad():
            expected = _vision_reference(clip, config, video())
            actual = model.get_image_features(pixel_values=video()).pooler_output
        error = (actual - expected).abs().max().item()
        assert error < 1e-4, error
        return {"max_abs_error": error}

    @check(f"bf16 autocast {_variant}")
    def _autocast(variant=_variant):
        _, _, model = model_for(variant)
        input_ids, attention_mask = text()
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": video()}

        def loss_and_grads(**autocast):
            model.zero_grad(set_to_none=True)
            with torch.autocast(DEVICE, **autocast) if autocast else torch.autocast(DEVICE, enabled=False):
                loss = model(**batch, return_loss=True).loss
            loss.backward()
            return loss.item(), {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}

        loss, grads = loss_and_grads()
        bf16_loss, bf16_grads = loss_and_grads(dtype=torch.bfloat16)
        assert set(grads) == set(bf16_grads) and all(".vop." in n for n in grads)
        worst = min(
            torch.nn.functional.cosine_similarity(bf16_grads[n].flatten(), grads[n].flatten(), dim=0).item()
            for n in grads
        )
        assert abs(bf16_loss - loss) < 0.05 and worst > 0.95, (loss, bf16_loss, worst)
        return {"loss_fp32": loss, "loss_bf16": bf16_loss, "worst_grad_cosine": worst}


@check("text prompts: eager, sdpa and flex attention agree with the reference")
def _text_masks():
    errors = {}
    for attn in ("eager", "sdpa", "flex_attention"):
        clip, _, model = model_for("vop", attn=attn)
        input_ids, attention_mask = text(batch=3)
        rows = iter(clip.text_model.vop.vop_prompts["default"])
        prompts = [next(rows) for _ in range(len(clip.text_model.encoder.layers))]
        with torch.no_grad():
            expected = text_features(clip, input_ids, attention_mask, prompts)
            actual = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        errors[attn] = (actual - expected).abs().max().item()
    assert max(errors.values()) < 1e-4, errors
    return errors


@check("bf16 base weights with fp32 adapter (autocast_adapter_dtype)")
def _bf16_weights():
    clip = tiny_clip().to(DEVICE, torch.bfloat16)
    model = get_peft_model(clip, peft_vop.VoPConfig(variant="vop_f+c", num_frames=4, intra_frame_layers=2))
    input_ids, attention_mask = text()
    out = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=video().bfloat16(), return_loss=True)
    out.loss.backward()
    dtypes = {str(p.dtype) for n, p in model.named_parameters() if p.requires_grad}
    assert torch.isfinite(out.loss) and dtypes == {"torch.float32"}, dtypes
    return {"loss": out.loss.item()}


@check("inter-frame attention runs a fused sdpa kernel on CUDA")
def _fused():
    _, _, model = model_for("vop_f")
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        model.get_image_features(pixel_values=video())
    names = {event.name for event in profile.events() if "scaled_dot_product" in event.name}
    assert any("flash" in n or "efficient" in n or "cudnn" in n for n in names) and not any(
        "math" in n for n in names
    ), names
    return {"kernels": sorted(names)}


@check("torch.compile (inductor) matches eager on CUDA")
def _compile():
    _, _, model = model_for("vop_f+p")
    input_ids, attention_mask = text()
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": video()}
    eager = model(**batch, return_loss=True).loss
    compiled = torch.compile(model)(**batch, return_loss=True).loss
    error = abs(eager.item() - compiled.item())
    assert error < 1e-4, error
    return {"loss_abs_error": error}


@check("device-side frame preprocessing: training crops within 1 grey level of the CPU, evaluation equal")
def _frame_preprocessing():
    from transformers import CLIPImageProcessor

    from peft_vop.data import CropBox, DeviceFramePreprocessor, FramePreprocessor

    preprocessor = FramePreprocessor.from_image_processor(CLIPImageProcessor())  # ViT-B/32: 224 px, bicubic
    step = DeviceFramePreprocessor(preprocessor)
    rng = np.random.default_rng(0)
    # Smooth frames (as video is) and noise (the worst case for a resampling filter's rounding).
    ramp = np.linspace(0, 255, 298, dtype=np.float32)[None, :] * np.linspace(0.2, 1, 224, dtype=np.float32)[:, None]
    smooth = np.broadcast_to(ramp, (8, 12, 3, 224, 298)).astype(np.uint8)
    noise = rng.integers(0, 256, (8, 12, 3, 224, 298), dtype=np.uint8)
    details = {}
    for name, frames in (("smooth", smooth), ("noise", noise)):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
        crops = [preprocessor.draw_crop(224, 298, rng) for _ in range(len(frames))]
        centered = [CropBox(0, 37, 224, 224)] * len(frames)  # evaluation: a center crop, no resize
        grey = torch.tensor(preprocessor.image_std).view(3, 1, 1) * 255
        on_cpu = step.pixel_values(frames, crops)
        on_device = step.pixel_values(frames.to(DEVICE), crops).cpu()
        details[f"train_{name}_max_grey_levels"] = ((on_device - on_cpu) * grey).abs().max().item()
        details[f"eval_{name}_equal"] = torch.equal(
            step.pixel_values(frames.to(DEVICE), centered).cpu(), step.pixel_values(frames, centered)
        )
    assert all(details[key] for key in details if key.startswith("eval")), details
    assert max(details[key] for key in details if key.startswith("train")) <= 1.0 + 1e-3, details
    return details


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    device = torch.cuda.get_device_name() if DEVICE == "cuda" else DEVICE
    print(f"torch {torch.__version__}, {device}")
    if args.output:
        args.output.write_text(json.dumps({"device": device, "torch": torch.__version__, "checks": RESULTS}, indent=2))
    failed = [name for name, result in RESULTS.items() if not result["ok"]]
    print(f"{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
