"""The analytic FLOP model of `benchmarks/flops.py`, and the table docs/benchmarks.md shows from it."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

from transformers import CLIPConfig


ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import peft_vop  # noqa: E402
from benchmarks.flops import encoder_layer_flops, text_flops, vision_flops  # noqa: E402


def test_prompts_cost_attention_and_projections_but_not_the_mlp():
    width, mlp, tokens, prompts = 768, 3072, 50, 8
    base = encoder_layer_flops(1, tokens, width, mlp)
    prompted = encoder_layer_flops(1, tokens, width, mlp, prompts)
    projections = 2 * prompts * 4 * width * width
    attention = 4 * ((tokens + prompts) ** 2 - tokens**2) * width
    assert prompted - base == projections + attention
    whole = encoder_layer_flops(1, tokens, width, mlp, prompts, prompt_mlp=True)
    assert whole == encoder_layer_flops(1, tokens + prompts, width, mlp)
    assert whole - prompted == 2 * prompts * 2 * width * mlp


def test_b32_ratios_are_the_documented_ones():
    vision = CLIPConfig().vision_config
    vop = peft_vop.VoPConfig()
    assert round(vision_flops(vision, 2, 12, vop) / vision_flops(vision, 2, 12), 3) == 1.055
    # The reference point: 58 instead of 50 tokens through every layer.
    assert round(vision_flops(vision, 2, 12, vop, prompt_mlp=True) / vision_flops(vision, 2, 12), 3) == 1.158
    no_prompts = peft_vop.VoPConfig(text_prompt_length=0, vision_prompt_length=0)
    assert vision_flops(vision, 2, 12, no_prompts) == vision_flops(vision, 2, 12)
    assert text_flops(CLIPConfig().text_config, 2, 32, no_prompts) == text_flops(CLIPConfig().text_config, 2, 32)


def test_the_docs_table_is_what_its_code_prints():
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    section = page[page.index("## Compute: analytic FLOPs") : page.index("## Tuner: speed and memory")]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "docs/benchmarks.md", "exec"), {})
    table = section[section.index("```", section.index("```python") + 3) + 3 :].strip().split("\n\n")[0]
    assert printed.getvalue().strip() == table
