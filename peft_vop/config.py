"""Configuration of VoP adapters: plain VoP and the video-prompt variants as compositions of orthogonal options."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from peft.config import PeftConfig

from ._registration import VOP_PEFT_TYPE


FramePromptKind = Literal["none", "position", "context"]

# Each paper variant is a preset of two orthogonal choices: which kind of frame-specific prompts replace
# `video_prompt_length` of the vision prompts, and whether the vision tower is split into intra-frame and
# inter-frame layers (the "function-specific" prompts of VoP^F).
VARIANTS: dict[str, tuple[FramePromptKind, bool]] = {
    "vop": ("none", False),
    "vop_p": ("position", False),
    "vop_c": ("context", False),
    "vop_f": ("none", True),
    "vop_f+p": ("position", True),
    "vop_f+c": ("context", True),
}
FRAME_PROMPT_KINDS: tuple[str, ...] = ("none", "position", "context")
CONTEXT_MODULES: tuple[str, ...] = ("bilstm", "lstm", "transformer")
# The paper splits ViT-B's 12 vision layers at K_s = 8; without an explicit `intra_frame_layers`, the function-specific
# variants split any tower at the same fraction, round(2/3 * depth), so they also work on shallower towers.
INTRA_FRAME_FRACTION = 2 / 3
# Trainable parameters the paper reports for CLIP ViT-B/32 with 12 frames (Table 1 of Huang et al., 2023).
PAPER_TRAINABLE_PARAMETERS: dict[str, str] = {
    "vop": "0.1M (0.103%)",
    "vop_p": "0.5M (0.441%)",
    "vop_c": "14.3M (11.898%)",
    "vop_f": "0.1M",
    "vop_f+p": "0.4M (0.328%)",
    "vop_f+c": "14.1M (11.785%)",
}


def variant_name(frame_prompts: str, function_specific: bool) -> str:
    """The paper's name for a combination of frame prompts and the intra/inter-frame split."""
    for name, options in VARIANTS.items():
        if options == (frame_prompts, function_specific):
            return name
    raise ValueError(f"No VoP variant has frame_prompts={frame_prompts!r} and function_specific={function_specific}.")


@dataclass
class VoPConfig(PeftConfig):
    """
    Configuration of a VoP adapter (Huang et al., "VoP: Text-Video Co-operative Prompt Tuning for Cross-Modal
    Retrieval", CVPR 2023) for a CLIP model.

    VoP freezes CLIP and learns prompt tokens for every layer of both towers, which join the layer's self-attention
    and are removed after it (a deep prompt's own output is discarded). The video variants make some of the vision prompts specific to a frame's position (VoP^P) or to the video's
    context (VoP^C), or let the last vision layers attend across all frames of a video (VoP^F). A `variant` is a
    preset of the orthogonal options below; options can also be set on their own (leave `variant=None`), and the
    resolved variant name is stored.

    Args:
        variant (`str`, *optional*):
            One of `"vop"`, `"vop_p"`, `"vop_c"`, `"vop_f"`, `"vop_f+p"`, `"vop_f+c"`. Fills `frame_prompts` and
            `intra_frame_layers` when they are not given; explicit options must agree with it. Defaults to the
            variant the options describe (`"vop"` when none are set).
        num_frames (`int`, defaults to 12):
            Frames per video. Fixes the size of the position-specific prompt table (VoP^P) and of the frame position
            embedding (VoP^F); those variants reject videos with another frame count.
        text_prompt_length (`int`, defaults to 8):
            Prompt tokens per text layer, inserted right after BOS. `0` gives the vision-only ablation.
        vision_prompt_length (`int`, defaults to 8):
            Prompt tokens per vision layer, inserted right after CLS (and, in inter-frame layers, video-level prompts
            per video). `0` gives the text-only ablation.
        video_prompt_length (`int`, defaults to 4):
            How many of the `vision_prompt_length` prompts of an intra-frame layer are frame-specific
            (position- or context-specific) when `frame_prompts` is not `"none"`.
        frame_prompts (`str`, *optional*):
            `"none"`, `"position"` (VoP^P: a prompt table per relative frame position) or `"context"` (VoP^C:
            prompts generated from the frames' CLS tokens by `context_module`).
        intra_frame_layers (`int`, *optional*):
            `K_s` of VoP^F: vision layers `0..K_s-1` see one frame at a time, layers `K_s..K-1` attend over all
            tokens of all frames of a video. Must be in `1..K-1`. Left `None`, the function-specific variants use
            the paper's fraction of the tower's depth, `round(2/3 * K)` (8 of ViT-B's 12 layers); the others keep
            every layer intra-frame.
        context_module (`str`, defaults to `"bilstm"`):
            Context modelling module of VoP^C: `"bilstm"` (the paper's choice), `"lstm"` (uni-directional) or
            `"transformer"` (4 layers); the paper's ablations.
        init_std (`float`, defaults to 0.02):
            Standard deviation of the normal initialisation of prompts and of the frame position embedding.
        text_layers (`list[int]`, *optional*):
            Indices of the text layers that get prompts; `None` means all.
        vision_layers (`list[int]`, *optional*):
            Indices of the vision layers that get prompts; `None` means all. (Inter-frame layers attend across
            frames whether or not they get prompts.)
        backbone_family (`str`, *optional*):
            The backbone family the adapter belongs to (`"clip"`, `"metaclip_2"`, `"siglip"`, `"siglip2"`),
            recorded when the adapter is created; loading it onto a model of another family fails before any weight
            is touched. `None` (adapters saved before families were recorded) fits any family of the same geometry.
    """

    # peft's injection code reads `target_modules`; VoP finds CLIP's towers by class instead, so it is a constant
    # class attribute rather than a saved field.
    target_modules = None
    exclude_modules = None

    variant: str | None = field(
        default=None,
        metadata={
            "help": "Preset: 'vop', 'vop_p', 'vop_c', 'vop_f', 'vop_f+p' or 'vop_f+c'. Fills frame_prompts and "
            "intra_frame_layers when they are not given; None derives the variant from those options."
        },
    )
    num_frames: int = field(
        default=12,
        metadata={"help": "Frames per video; fixes the size of position-specific prompts and frame embeddings."},
    )
    text_prompt_length: int = field(
        default=8, metadata={"help": "Prompt tokens per text layer (after BOS). 0 = vision-only prompts."}
    )
    vision_prompt_length: int = field(
        default=8, metadata={"help": "Prompt tokens per vision layer (after CLS). 0 = text-only prompts."}
    )
    video_prompt_length: int = field(
        default=4,
        metadata={"help": "How many vision prompts of an intra-frame layer are position- or context-specific."},
    )
    frame_prompts: str | None = field(
        default=None,
        metadata={"help": "'none', 'position' (VoP^P) or 'context' (VoP^C). None: taken from `variant`."},
    )
    intra_frame_layers: int | None = field(
        default=None,
        metadata={
            "help": "K_s of VoP^F: layers 0..K_s-1 are intra-frame, the rest attend across frames. None: "
            "round(2/3 * depth) for the vop_f variants (8 of 12, as in the paper), no inter-frame layers otherwise."
        },
    )
    context_module: str = field(
        default="bilstm", metadata={"help": "VoP^C context module: 'bilstm', 'lstm' or 'transformer'."}
    )
    init_std: float = field(default=0.02, metadata={"help": "Std of the normal initialisation of prompts."})
    text_layers: list[int] | None = field(
        default=None, metadata={"help": "Text layer indices that get prompts; None = all."}
    )
    vision_layers: list[int] | None = field(
        default=None, metadata={"help": "Vision layer indices that get prompts; None = all."}
    )
    backbone_family: str | None = field(
        default=None,
        metadata={
            "help": "Backbone family ('clip', 'metaclip_2', 'siglip', 'siglip2'), recorded when the adapter is "
            "created; an adapter refuses models of another family."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = VOP_PEFT_TYPE
        self._check_counts()
        self._resolve_variant()
        if self.context_module not in CONTEXT_MODULES:
            raise ValueError(f"`context_module` must be one of {list(CONTEXT_MODULES)}; got {self.context_module!r}.")
        self.text_layers = _check_layer_list("text_layers", self.text_layers)
        self.vision_layers = _check_layer_list("vision_layers", self.vision_layers)

    @property
    def function_specific(self) -> bool:
        """Whether the vision tower is split into intra-frame and inter-frame layers (VoP^F)."""
        return VARIANTS[self.variant][1]

    def resolved_intra_frame_layers(self, num_layers: int) -> int | None:
        """`K_s` for a vision tower of `num_layers` layers: the configured value, or the paper's fraction of the
        depth for the function-specific variants (`None` without inter-frame layers)."""
        if not self.function_specific:
            return None
        if self.intra_frame_layers is not None:
            return self.intra_frame_layers
        return min(max(round(INTRA_FRAME_FRACTION * num_layers), 1), num_layers - 1)

    @property
    def needs_video(self) -> bool:
        """Whether this adapter only makes sense on videos (`pixel_values` of shape `[B, F, 3, H, W]`)."""
        return self.frame_prompts != "none" or self.function_specific

    @property
    def fixed_num_frames(self) -> bool:
        """Whether parameters are sized by `num_frames`, so that videos must have exactly that many frames."""
        return self.frame_prompts == "position" or self.function_specific

    def _check_counts(self) -> None:
        for name in ("num_frames", "text_prompt_length", "vision_prompt_length", "video_prompt_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` must be a non-negative integer; got {value!r}.")
        if self.num_frames < 1:
            raise ValueError(f"`num_frames` must be at least 1; got {self.num_frames}.")
        if (
            not isinstance(self.init_std, (int, float))
            or isinstance(self.init_std, bool)
            or not math.isfinite(self.init_std)
            or self.init_std <= 0
        ):
            raise ValueError(f"`init_std` must be a positive finite number; got {self.init_std!r}.")
        if self.intra_frame_layers is not None and (
            isinstance(self.intra_frame_layers, bool)
            or not isinstance(self.intra_frame_layers, int)
            or self.intra_frame_layers < 1
        ):
            raise ValueError(
                f"`intra_frame_layers` must be None or an integer >= 1 (at most the vision depth - 1); "
                f"got {self.intra_frame_layers!r}."
            )

    def _resolve_variant(self) -> None:
        if self.variant is not None:
            if self.variant not in VARIANTS:
                raise ValueError(f"`variant` must be one of {list(VARIANTS)} or None; got {self.variant!r}.")
            frame_prompts, function_specific = VARIANTS[self.variant]
            if self.frame_prompts is not None and self.frame_prompts != frame_prompts:
                raise ValueError(
                    f"`frame_prompts={self.frame_prompts!r}` contradicts `variant={self.variant!r}`, which uses "
                    f"frame_prompts={frame_prompts!r}. Set only one of them, or leave `variant=None`."
                )
            if self.intra_frame_layers is not None and not function_specific:
                raise ValueError(
                    f"`intra_frame_layers={self.intra_frame_layers}` only applies to the function-specific variants "
                    f"{[name for name, (_, split) in VARIANTS.items() if split]}; got `variant={self.variant!r}`. "
                    "Leave `variant=None` to compose the options freely."
                )
            self.frame_prompts = frame_prompts
        else:
            function_specific = self.intra_frame_layers is not None
        if self.frame_prompts is None:
            self.frame_prompts = "none"
        if self.frame_prompts not in FRAME_PROMPT_KINDS:
            raise ValueError(f"`frame_prompts` must be one of {list(FRAME_PROMPT_KINDS)}; got {self.frame_prompts!r}.")
        self.variant = variant_name(self.frame_prompts, function_specific)

        if self.frame_prompts != "none":
            if self.video_prompt_length < 1:
                raise ValueError(
                    f"`video_prompt_length` must be at least 1 when `frame_prompts={self.frame_prompts!r}`; "
                    f"got {self.video_prompt_length}."
                )
            if self.video_prompt_length > self.vision_prompt_length:
                raise ValueError(
                    f"`video_prompt_length` ({self.video_prompt_length}) cannot exceed `vision_prompt_length` "
                    f"({self.vision_prompt_length}): the frame-specific prompts replace some of the vision prompts."
                )


def _check_layer_list(name: str, layers: list[int] | None) -> list[int] | None:
    if layers is None:
        return None
    if not isinstance(layers, (list, tuple)) or not all(
        isinstance(index, int) and not isinstance(index, bool) for index in layers
    ):
        raise ValueError(
            f"`{name}` must be None (all layers) or a list of layer indices such as [0, 1]; got {layers!r}."
        )
    layers = list(layers)
    if not layers:
        raise ValueError(f"`{name}` must be None (all layers) or a non-empty list; got []. Use a prompt length of 0.")
    if any(index < 0 for index in layers) or len(set(layers)) != len(layers):
        raise ValueError(f"`{name}` must hold distinct non-negative layer indices; got {layers!r}.")
    return sorted(layers)
