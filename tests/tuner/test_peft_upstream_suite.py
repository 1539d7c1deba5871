"""peft's own generic test suite (`PeftCommonTester`, `tests/testing_common.py` of the installed peft's release) on VoP.

`tests/tuner/test_peft_common.py` restates those checks for VoP; this module runs peft's file itself, unchanged, from
the source distribution of the installed peft version, on every family and variant, so a new peft release that
tightens a check is caught here. The sdist is fetched at install time (the test never downloads):

    python -m pip download --no-deps --no-binary :all: "peft==$(python -c 'import peft; print(peft.__version__)')" -d .peft-sdist

Checks run: every `_test_*` method of `PeftCommonTester` whose subject VoP has — attributes, adapter names, saving
(safetensors and pickle, selected adapters, name substrings), loading (config construction, several adapters,
`low_cpu_mem_usage`, device map), adapter dtypes without autocast, training (which parameters get gradients), with
gradient checkpointing (both reentrant settings), safetensors inference, deleting adapters, unloading (on images,
where the bare model takes the same input), the base model's state dict, and the two checks that skip themselves
for configs without `bias` / `layers_to_transform`.

Checks not run, and why; LoRA on `CLIPModel` fails the first three the same way:
- `_test_prepare_for_training`, `_test_passing_input_embeds_works`: call `model.get_input_embeddings()`, which
  transformers' dual encoders (`CLIPModel`, `SiglipModel`, ...) do not implement (`NotImplementedError`).
- `_test_disable_adapter`: compares `generate` scores when the model has `generate` (`PeftModel` always does), which
  dual encoders lack. VoP's disabled adapters are checked bit for bit in `test_families.py` and `test_peft_common.py`.
- the merge checks: VoP prompts are tokens, not weight updates, and `merge` raises by design;
- LoRA-/IA3-only checks (mixed adapter batches, weighted combinations, LoRA conversion), generation and
  prompt-learning task checks.
"""

from __future__ import annotations

import importlib
import sys
import tarfile
from pathlib import Path

import peft
import pytest
import torch
from helpers.families import FAMILY_NAMES, text_inputs, tiny_model, video_inputs

import peft_vop


pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SDIST = ROOT / ".peft-sdist" / f"peft-{peft.__version__}.tar.gz"
FETCH = f'python -m pip download --no-deps --no-binary :all: "peft=={peft.__version__}" -d {ROOT / ".peft-sdist"}'
PACKAGE = "peft_upstream_tests"
FRAMES = 4

VIDEO_CHECKS = [
    "model_attr",
    "adapter_name",
    "load_model_low_cpu_mem_usage",
    "save_pretrained",
    "save_pretrained_pickle",
    "save_pretrained_selected_adapters",
    "save_pretrained_adapter_name_substring",
    "from_pretrained_config_construction",
    "load_multiple_adapters",
    "add_adapter_no_autocast_adapter_dtype",
    "training",
    "training_layer_indexing",
    "inference_safetensors",
    "training_gradient_checkpointing_reentrant",
    "training_gradient_checkpointing_non_reentrant",
    "peft_model_device_map",
    "delete_adapter",
    "delete_inactive_adapter",
    "delete_unknown_adapter_raises",
    "adding_multiple_adapters_with_bias_raises",
    "get_base_model_state_dict",
]
IMAGE_CHECKS = [*VIDEO_CHECKS, "unload_adapter"]  # the bare model takes images, not videos
SELF_SKIPPING = {"training_layer_indexing", "adding_multiple_adapters_with_bias_raises"}  # no such VoP option


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """peft's `testing_common` module, from the installed version's sdist, importable as a package."""
    if not SDIST.is_file():
        pytest.fail(f"peft's own test suite runs from its source distribution, which is missing: {FETCH}")
    package = tmp_path_factory.mktemp("peft_sdist") / PACKAGE
    package.mkdir()
    prefix = f"peft-{peft.__version__}/tests/"
    with tarfile.open(SDIST) as archive:
        for name in ("testing_common.py", "testing_utils.py"):
            member = archive.extractfile(prefix + name)
            (package / name).write_bytes(member.read())
    (package / "__init__.py").write_text("")
    sys.path.insert(0, str(package.parent))
    try:
        yield importlib.import_module(f"{PACKAGE}.testing_common")
    finally:
        sys.path.remove(str(package.parent))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, tuple[Path, type]]:
    """A saved tiny model of every family, with its class: peft's checks call `from_pretrained(model_id)`."""
    root = tmp_path_factory.mktemp("families")
    saved = {}
    for family in FAMILY_NAMES:
        model = tiny_model(family)
        model.save_pretrained(root / family)
        saved[family] = (root / family, type(model))
    return saved


def _inputs(family: str, videos: bool) -> dict[str, torch.Tensor]:
    vision = video_inputs(family, batch=2, frames=FRAMES)
    if not videos:  # each video's first frame
        vision = {name: value[:, 0] for name, value in vision.items()}
    return {**text_inputs(family, batch_size=2), **vision}


def _run(upstream, saved: tuple[Path, type], family: str, videos: bool, variant: str, check: str) -> None:
    checkpoint, model_class = saved

    class VoPTester(upstream.PeftCommonTester):
        transformers_class = model_class
        torch_device = "cpu"

        def prepare_inputs_for_testing(self):
            return _inputs(family, videos)

    tester = VoPTester()
    arguments = (str(checkpoint), peft_vop.VoPConfig, {"variant": variant, "num_frames": FRAMES})
    if check == "save_pretrained_pickle":
        tester._test_save_pretrained(*arguments, safe_serialization=False)
    elif check.startswith("training_gradient_checkpointing"):
        reentrant = check == "training_gradient_checkpointing_reentrant"
        tester._test_training_gradient_checkpointing(*arguments, use_reentrant=reentrant)
    elif check == "add_adapter_no_autocast_adapter_dtype":
        for dtype in (torch.bfloat16, torch.float16):
            tester._test_add_adapter_no_autocast_adapter_dtype(*arguments, dtype=dtype)
    elif check in SELF_SKIPPING:
        with pytest.raises(pytest.skip.Exception):  # VoPConfig has neither option: the check declines, as it says
            getattr(tester, f"_test_{check}")(*arguments)
    else:
        getattr(tester, f"_test_{check}")(*arguments)


@pytest.mark.parametrize("check", VIDEO_CHECKS)
@pytest.mark.parametrize("variant", peft_vop.VARIANTS)
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_peft_common_checks_on_videos(upstream, checkpoints, family, variant, check):
    _run(upstream, checkpoints[family], family, True, variant, check)


@pytest.mark.parametrize("check", IMAGE_CHECKS)
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_peft_common_checks_on_images(upstream, checkpoints, family, check):
    _run(upstream, checkpoints[family], family, False, "vop", check)
