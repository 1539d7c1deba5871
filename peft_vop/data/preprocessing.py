"""Frame preprocessing driven by the checkpoint's own image processor configuration.

Every number (resize target, crop size, resampling filter, rescale factor, mean and standard deviation) is read
from the checkpoint's `preprocessor_config.json` through its image processor; none is written here. The work is
split in the three places it is needed:

1. `resize` (when decoding, and what a frame cache stores): the processor's resize, e.g. shortest side to 224 with
   bicubic resampling, through `transformers.image_transforms`, so the result is exactly the processor's.
2. `center_crop` (evaluation) or a random resized crop (training: `draw_crop` draws one `CropBox` and flip for all
   frames of a video, `crop_resize` applies it), on the `uint8` frames of one video.
3. `normalize`: rescale to `[0, 1]` and standardise with the processor's mean and std.

SigLIP 2's NaFlex image processor (`Siglip2ImageProcessor`) has no fixed size: it resizes each image, keeping its
aspect ratio, to the largest grid of `patch_size` patches with at most `max_num_patches` of them. All frames of a video
share their size, so a video is resized once to its own grid (step 1, what a frame cache stores); the training crop is
resized back to that grid, and `patch_inputs` cuts the normalised frames into patch sequences padded to
`max_num_patches`, with the `pixel_attention_mask` and `spatial_shapes` the model takes.

Steps 2 (the training crop) and 3 run either per video on the CPU (`random_resized_crop` in the dataset, `normalize`
in the collator) or batched on the training device (`DeviceFramePreprocessor`), with the same code.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from transformers.image_transforms import center_crop, get_resize_output_image_size, resize
from transformers.image_utils import ChannelDimension, PILImageResampling


# PIL filters that `torch.nn.functional.interpolate` reproduces (with `antialias=True` where it applies), used
# for the training crop, which runs on tensors.
_TORCH_INTERPOLATION = {
    int(PILImageResampling.NEAREST): "nearest-exact",
    int(PILImageResampling.BILINEAR): "bilinear",
    int(PILImageResampling.BICUBIC): "bicubic",
}


class CropBox(NamedTuple):
    """Where to crop the frames of one video, and whether to flip them (one draw shared by all its frames).

    Args:
        top (`int`): first row of the box in the resized frames.
        left (`int`): first column.
        height (`int`): rows of the box.
        width (`int`): columns of the box.
        flip (`bool`): whether the cropped clip is flipped horizontally.
    """

    top: int
    left: int
    height: int
    width: int
    flip: bool = False


def _size_entry(size: Any, key: str) -> int | None:
    """Read `key` from a processor size, which is a `dict` or a `transformers` `SizeDict`."""
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value is not None else None


@dataclass(frozen=True)
class FramePreprocessor:
    """Resize, crop and normalisation settings of a CLIP checkpoint, applied to video frames.

    Build it with `FramePreprocessor.from_pretrained(path)` or `FramePreprocessor.from_image_processor(p)`; the
    fields mirror the image processor's configuration.

    Args:
        shortest_edge (`int`, *optional*):
            Resize so that the shorter side has this length, keeping the aspect ratio (CLIP: 224).
        resize_height (`int`, *optional*):
            With `resize_width`, resize to this fixed size instead (when the processor's `size` has `height` and
            `width`).
        resize_width (`int`, *optional*):
            See `resize_height`.
        resample (`int`, *optional*, defaults to 3):
            PIL resampling filter of the processor (3 is bicubic).
        crop_height (`int`, *optional*):
            Height of the center crop (evaluation) and of the random resized crop (training). `None` when the
            processor does not crop.
        crop_width (`int`, *optional*):
            Width of the crops.
        rescale_factor (`float`, *optional*):
            Factor that maps `uint8` values to `[0, 1]` (`1/255`); `None` when the processor does not rescale.
        image_mean (`tuple[float, ...]`, *optional*):
            Per-channel mean; `None` when the processor does not normalise.
        image_std (`tuple[float, ...]`, *optional*):
            Per-channel standard deviation.
        patch_size (`int`, *optional*):
            With `max_num_patches`, a NaFlex processor (SigLIP 2): the side of a patch.
        max_num_patches (`int`, *optional*):
            Each video is resized, keeping its aspect ratio, to the largest grid of patches with at most this many
            patches, and its patch sequences are padded to this length.
    """

    shortest_edge: int | None = None
    resize_height: int | None = None
    resize_width: int | None = None
    resample: int = int(PILImageResampling.BICUBIC)
    crop_height: int | None = None
    crop_width: int | None = None
    rescale_factor: float | None = None
    image_mean: tuple[float, ...] | None = None
    image_std: tuple[float, ...] | None = None
    patch_size: int | None = None
    max_num_patches: int | None = None

    def __post_init__(self):
        if (self.patch_size is None) != (self.max_num_patches is None):
            raise ValueError(
                f"`patch_size` and `max_num_patches` go together; got {self.patch_size} and {self.max_num_patches}."
            )
        sizes = (self.shortest_edge, self.resize_height, self.resize_width, self.crop_height, self.crop_width)
        if self.patch_size is not None and any(size is not None for size in sizes):
            raise ValueError(
                "A NaFlex preprocessor (`patch_size`, `max_num_patches`) sizes each video itself; it takes no "
                f"`shortest_edge`, `resize_height`/`resize_width` or crop; got {self.to_dict()}."
            )
        for name in ("patch_size", "max_num_patches"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
        fixed = self.resize_height is not None or self.resize_width is not None
        if fixed and (self.resize_height is None or self.resize_width is None or self.shortest_edge is not None):
            raise ValueError(
                "Give either `shortest_edge` or both `resize_height` and `resize_width`; got "
                f"shortest_edge={self.shortest_edge}, resize_height={self.resize_height}, "
                f"resize_width={self.resize_width}."
            )
        if (self.crop_height is None) != (self.crop_width is None):
            raise ValueError(
                f"`crop_height` and `crop_width` go together; got {self.crop_height} and {self.crop_width}."
            )
        if (self.image_mean is None) != (self.image_std is None):
            raise ValueError("`image_mean` and `image_std` go together; give both or neither.")

    @classmethod
    def from_image_processor(cls, image_processor: Any) -> FramePreprocessor:
        """Read the settings of a `transformers` image processor (e.g. `CLIPImageProcessor`).

        Args:
            image_processor (`transformers.BaseImageProcessor`):
                The checkpoint's image processor, or any object with its attributes (`size`, `crop_size`,
                `resample`, `do_resize`, `do_center_crop`, `do_rescale`, `rescale_factor`, `do_normalize`,
                `image_mean`, `image_std`).

        Returns:
            `FramePreprocessor`.
        """
        kwargs: dict[str, Any] = {}
        if getattr(image_processor, "max_num_patches", None) is not None:  # SigLIP 2's NaFlex processor
            if not getattr(image_processor, "do_resize", True):
                raise ValueError(
                    f"The NaFlex image processor {type(image_processor).__name__} has do_resize=False; VoP's video "
                    "pipeline needs it to resize each video to its patch grid (do_resize=True)."
                )
            kwargs.update(
                patch_size=int(image_processor.patch_size), max_num_patches=int(image_processor.max_num_patches)
            )
            resample = getattr(image_processor, "resample", None)
            if resample is not None:
                kwargs["resample"] = int(resample)
        elif getattr(image_processor, "do_resize", True):
            size = image_processor.size
            shortest, height, width = (_size_entry(size, key) for key in ("shortest_edge", "height", "width"))
            if shortest is not None:
                kwargs["shortest_edge"] = shortest
            elif height is not None and width is not None:
                kwargs.update(resize_height=height, resize_width=width)
            else:
                raise ValueError(
                    f"The image processor's `size` must have `shortest_edge`, or `height` and `width`; got {size}."
                )
            resample = getattr(image_processor, "resample", None)
            if resample is not None:
                kwargs["resample"] = int(resample)
        if getattr(image_processor, "do_center_crop", False):
            kwargs["crop_height"] = _size_entry(image_processor.crop_size, "height")
            kwargs["crop_width"] = _size_entry(image_processor.crop_size, "width")
        if getattr(image_processor, "do_rescale", True):
            kwargs["rescale_factor"] = float(image_processor.rescale_factor)
        if getattr(image_processor, "do_normalize", True):
            kwargs["image_mean"] = tuple(float(value) for value in image_processor.image_mean)
            kwargs["image_std"] = tuple(float(value) for value in image_processor.image_std)
        return cls(**kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> FramePreprocessor:
        """Load the image processor of a checkpoint (local directory or Hub id) and read its settings.

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`):
                What `transformers.AutoImageProcessor.from_pretrained` accepts.
            kwargs:
                Passed on to `AutoImageProcessor.from_pretrained`.
        """
        from transformers import AutoImageProcessor

        image_processor = AutoImageProcessor.from_pretrained(pretrained_model_name_or_path, **kwargs)
        try:
            return cls.from_image_processor(image_processor)
        except ValueError as error:
            raise ValueError(f"Checkpoint {str(pretrained_model_name_or_path)!r}: {error}") from error

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable `dict` (used to tell whether a frame cache matches)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @property
    def is_naflex(self) -> bool:
        """Whether frames become patch sequences on each video's own grid (SigLIP 2's NaFlex processor)."""
        return self.max_num_patches is not None

    def naflex_size(self, height: int, width: int) -> tuple[int, int]:
        """The size a NaFlex processor resizes a `height x width` frame to: the aspect ratio kept, both sides
        multiples of `patch_size`, at most `max_num_patches` patches (`transformers`' own rule)."""
        from transformers.models.siglip2.image_processing_pil_siglip2 import get_image_size_for_max_num_patches

        return get_image_size_for_max_num_patches(height, width, self.patch_size, self.max_num_patches)

    @property
    def output_size(self) -> tuple[int, int] | None:
        """`(height, width)` of the frames the model receives, when it does not depend on the video (`None` for a
        NaFlex processor: each video keeps the size `resize` gave it)."""
        if self.crop_height is not None:
            return self.crop_height, self.crop_width
        if self.resize_height is not None:
            return self.resize_height, self.resize_width
        return None

    # --- 1. resize (decode time) ---------------------------------------------------------------------------

    def resize(self, frames: np.ndarray) -> torch.Tensor:
        """Resize decoded frames as the image processor does.

        Args:
            frames (`numpy.ndarray` of shape `[F, H, W, 3]`, `uint8`):
                RGB frames of one video.

        Returns:
            `torch.Tensor` of shape `[F, 3, H', W']`, `uint8`.
        """
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"`frames` must have shape [frames, height, width, 3]; got {tuple(frames.shape)}.")
        if self.is_naflex:
            size = self.naflex_size(*frames.shape[1:3])
        elif self.shortest_edge is not None:
            size = get_resize_output_image_size(
                frames[0], self.shortest_edge, default_to_square=False, input_data_format=ChannelDimension.LAST
            )
        elif self.resize_height is not None:
            size = (self.resize_height, self.resize_width)
        else:
            size = None
        if size is not None and tuple(size) != frames.shape[1:3]:
            frames = np.stack(
                [
                    resize(
                        frame,
                        size=size,
                        resample=PILImageResampling(self.resample),
                        data_format=ChannelDimension.LAST,
                        input_data_format=ChannelDimension.LAST,
                    )
                    for frame in frames
                ]
            )
        # [F, H', W', 3] -> [F, 3, H', W']
        return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()

    # --- 2. crop (per item) --------------------------------------------------------------------------------

    def center_crop(self, frames: torch.Tensor) -> torch.Tensor:
        """Center-crop resized frames as the image processor does (evaluation).

        Args:
            frames (`torch.Tensor` of shape `[F, 3, H, W]`, `uint8`):
                Output of `resize`.

        Returns:
            `torch.Tensor` of shape `[F, 3, crop_height, crop_width]` (unchanged if the processor does not crop).
        """
        if self.crop_height is None or tuple(frames.shape[-2:]) == (self.crop_height, self.crop_width):
            return frames
        cropped = [
            center_crop(
                frame,
                (self.crop_height, self.crop_width),
                data_format=ChannelDimension.FIRST,
                input_data_format=ChannelDimension.FIRST,
            )
            for frame in frames.numpy()
        ]
        return torch.from_numpy(np.stack(cropped)).to(torch.uint8)

    def draw_crop(
        self,
        height: int,
        width: int,
        rng: np.random.Generator,
        scale: tuple[float, float] = (0.5, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_probability: float = 0.5,
    ) -> CropBox:
        """Draw the training augmentation of one video: a crop box and whether to flip, shared by all its frames.

        The box is drawn as torchvision's `RandomResizedCrop` draws it (area fraction in `scale`, log-uniform aspect
        ratio in `ratio`, 10 tries, then a center crop), then the flip with probability `flip_probability`, in that
        order, from `rng`.

        Args:
            height (`int`):
                Height of the resized frames.
            width (`int`):
                Width of the resized frames.
            rng (`numpy.random.Generator`):
                Randomness, seeded per video and epoch by the dataset.
            scale (`tuple[float, float]`, *optional*, defaults to `(0.5, 1.0)`):
                Range of the crop area as a fraction of the frame area.
            ratio (`tuple[float, float]`, *optional*, defaults to `(3/4, 4/3)`):
                Range of the crop aspect ratio (width / height).
            flip_probability (`float`, *optional*, defaults to 0.5):
                Probability of flipping the clip horizontally.

        Returns:
            `CropBox`.
        """
        top, left, crop_height, crop_width = _random_crop_box(height, width, rng, scale, ratio)
        return CropBox(top, left, crop_height, crop_width, bool(rng.random() < flip_probability))

    def crop_resize(self, frames: torch.Tensor, box: CropBox, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Cut `box` out of the frames of one video, resize it to the output size, and flip it if `box.flip`.

        The same code runs on the CPU (in a loader worker, `random_resized_crop`) and on the training device
        (`DeviceFramePreprocessor`): a box of the output size is only sliced, any other is resized in float with
        the processor's filter (antialiased) and rounded to whole grey levels, as a `uint8` image would be.

        Args:
            frames (`torch.Tensor` of shape `[F, 3, H, W]`, `uint8` or `float`):
                Resized frames of one video.
            box (`CropBox`):
                The crop; it must lie inside the frames.
            size (`tuple[int, int]`, *optional*):
                The output size when the processor has none of its own: for a NaFlex processor the video's resized
                size (the crop is resized back to the video's patch grid); else the box's size.

        Returns:
            `torch.Tensor` of shape `[F, 3, crop_height, crop_width]`, `float32` holding whole numbers in `[0, 255]`.
        """
        output_size = self.output_size or size or (box.height, box.width)
        # [F, 3, H, W] -> [F, 3, box.height, box.width] -> [F, 3, crop_height, crop_width]
        crop = frames[:, :, box.top : box.top + box.height, box.left : box.left + box.width].float()
        if (box.height, box.width) != tuple(output_size):
            mode = self._interpolation_mode()
            crop = torch.nn.functional.interpolate(
                crop, size=output_size, mode=mode, antialias=mode != "nearest-exact"
            )
            crop = crop.round_().clamp_(0, 255)
        return crop.flip(-1) if box.flip else crop

    def random_resized_crop(
        self,
        frames: torch.Tensor,
        rng: np.random.Generator,
        scale: tuple[float, float] = (0.5, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_probability: float = 0.5,
    ) -> torch.Tensor:
        """Training augmentation on the CPU: `draw_crop`, then `crop_resize` (one crop and flip for all frames).

        Args:
            frames (`torch.Tensor` of shape `[F, 3, H, W]`, `uint8`):
                Output of `resize`.
            rng (`numpy.random.Generator`):
                Randomness, seeded per video and epoch by the dataset.
            scale (`tuple[float, float]`, *optional*, defaults to `(0.5, 1.0)`):
                Range of the crop area as a fraction of the frame area.
            ratio (`tuple[float, float]`, *optional*, defaults to `(3/4, 4/3)`):
                Range of the crop aspect ratio (width / height).
            flip_probability (`float`, *optional*, defaults to 0.5):
                Probability of flipping the clip horizontally.

        Returns:
            `torch.Tensor` of shape `[F, 3, crop_height, crop_width]`, `uint8`.
        """
        self.check_random_crop()
        box = self.draw_crop(*frames.shape[-2:], rng, scale, ratio, flip_probability)
        return self.crop_resize(frames, box, tuple(frames.shape[-2:])).to(torch.uint8)

    def check_random_crop(self) -> None:
        """Raise `ValueError` if the processor's settings do not allow a random resized crop."""
        if self.output_size is None and not self.is_naflex:
            raise ValueError(
                "A random resized crop needs an output size: the image processor has neither `crop_size` nor a "
                "fixed `size`."
            )
        self._interpolation_mode()

    def _interpolation_mode(self) -> str:
        if self.resample not in _TORCH_INTERPOLATION:
            raise ValueError(
                f"The training crop supports the resampling filters {sorted(_TORCH_INTERPOLATION)} "
                f"(nearest, bilinear, bicubic); the image processor uses {self.resample}."
            )
        return _TORCH_INTERPOLATION[self.resample]

    # --- 3. normalise (collator) ---------------------------------------------------------------------------

    def normalization_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`(scale, shift)` of shape `[3, 1, 1]`, `float32`, such that `normalize(x) = x * scale - shift`.

        `(x * rescale - mean) / std` as one multiply and one subtract; computed on the CPU, so that every device
        multiplies by the same float32 numbers.
        """
        scale = torch.full((3, 1, 1), self.rescale_factor if self.rescale_factor is not None else 1.0)
        shift = torch.zeros(3, 1, 1)
        if self.image_mean is not None:
            std = torch.tensor(self.image_std).view(3, 1, 1)
            scale /= std
            shift = torch.tensor(self.image_mean).view(3, 1, 1) / std
        return scale, shift

    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        """Rescale and standardise cropped frames into the model's `pixel_values`, on the frames' device.

        Args:
            frames (`torch.Tensor` of shape `[..., 3, H, W]`, `uint8` or `float32`):
                Cropped frames with values in `[0, 255]`; a `float32` tensor is normalised in place.

        Returns:
            `torch.Tensor` of the same shape, `float32`.
        """
        scale, shift = (factor.to(frames.device) for factor in self.normalization_factors())
        return frames.float().mul_(scale).sub_(shift)

    # --- 4. patch sequences (NaFlex) -----------------------------------------------------------------------

    def patch_inputs(self, videos: list[torch.Tensor], num_frames: int | None = None) -> dict[str, torch.Tensor]:
        """SigLIP 2's vision inputs for normalised videos, each on its own patch grid, as the NaFlex processor
        makes them for images: patch sequences padded to `max_num_patches`, with their mask and grid.

        Args:
            videos (`list[torch.Tensor]`):
                `B` videos `[F, 3, H_i, W_i]`, `float32`, normalised; `H_i` and `W_i` multiples of `patch_size`.
            num_frames (`int`, *optional*):
                `F`, for an empty batch.

        Returns:
            `dict`: `pixel_values` (`float32 [B, F, N, 3*p*p]`, `N = max_num_patches`, zero past each video's
            patches), `pixel_attention_mask` (`int64 [B, F, N]`, 1 for real patches) and `spatial_shapes`
            (`int64 [B, F, 2]`, each video's grid as rows and columns).
        """
        from ..families import patch_sequences

        if not self.is_naflex:
            raise ValueError("`patch_inputs` is for NaFlex processors (`patch_size` and `max_num_patches` set).")
        frames = videos[0].shape[0] if videos else (num_frames or 0)
        device = videos[0].device if videos else None
        length, patch = self.max_num_patches, self.patch_size
        pixel_values = torch.zeros(len(videos), frames, length, 3 * patch * patch, device=device)
        mask = torch.zeros(len(videos), frames, length, dtype=torch.long, device=device)
        shapes = torch.zeros(len(videos), frames, 2, dtype=torch.long, device=device)
        for index, video in enumerate(videos):
            patches = patch_sequences(video, patch)  # [F, n_i, 3*p*p]
            count = patches.shape[1]
            if count > length:
                raise ValueError(
                    f"A video of {tuple(video.shape[-2:])} pixels has {count} patches of {patch}; the processor "
                    f"takes at most max_num_patches={length}."
                )
            pixel_values[index, :, :count] = patches
            mask[index, :, :count] = 1
            shapes[index, :, 0], shapes[index, :, 1] = video.shape[-2] // patch, video.shape[-1] // patch
        return {"pixel_values": pixel_values, "pixel_attention_mask": mask, "spatial_shapes": shapes}


def _random_crop_box(
    height: int, width: int, rng: np.random.Generator, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """`(top, left, height, width)` of a random crop, drawn like torchvision's `RandomResizedCrop.get_params`."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        crop_width = round(math.sqrt(target_area * aspect))
        crop_height = round(math.sqrt(target_area / aspect))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = int(rng.integers(0, height - crop_height + 1))
            left = int(rng.integers(0, width - crop_width + 1))
            return top, left, crop_height, crop_width
    # Fallback: the largest center crop whose aspect ratio lies within `ratio`.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        crop_width, crop_height = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        crop_height, crop_width = height, round(height * ratio[1])
    else:
        crop_height, crop_width = height, width
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


class FixedLengthTokenizer:
    """A tokenizer that always pads to one fixed length, as SigLIP and SigLIP 2 were trained (their text towers pool
    the last position, so captions must be padded to the length the model saw, not to the longest in a batch).

    Calls are passed on with `padding="max_length"` and `max_length` at most `model_max_length` (the fixed length);
    every other attribute is the wrapped tokenizer's. Picklable, for data loader workers.

    Args:
        tokenizer (`transformers.PreTrainedTokenizerBase`): the checkpoint's tokenizer.
        model_max_length (`int`): the fixed length: the tokenizer's `model_max_length`, capped at the text tower's
            `max_position_embeddings` (some tokenizers leave it unset, i.e. huge).
    """

    def __init__(self, tokenizer: Any, model_max_length: int) -> None:
        self.tokenizer = tokenizer
        self.model_max_length = model_max_length

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["padding"] = "max_length"
        kwargs["max_length"] = min(kwargs.get("max_length") or self.model_max_length, self.model_max_length)
        return self.tokenizer(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "tokenizer":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.tokenizer, name)


def caption_tokenizer(tokenizer: Any, model_name_or_path: str | os.PathLike) -> Any:
    """The checkpoint's tokenizer, padding as its family expects: to the longest caption for CLIP and MetaCLIP 2,
    to a fixed length ([`FixedLengthTokenizer`]) for SigLIP and SigLIP 2.

    Args:
        tokenizer (`transformers.PreTrainedTokenizerBase`): the tokenizer of `model_name_or_path`.
        model_name_or_path (`str` or `os.PathLike`): the checkpoint (its config names the family and the text
            positions).
    """
    from transformers import AutoConfig

    from ..families import checkpoint_family

    if checkpoint_family(str(model_name_or_path)).loss != "sigmoid":
        return tokenizer
    positions = AutoConfig.from_pretrained(model_name_or_path).text_config.max_position_embeddings
    return FixedLengthTokenizer(tokenizer, min(tokenizer.model_max_length, positions))
