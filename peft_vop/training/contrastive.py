"""The contrastive objective of VoP training, with negatives gathered from every process."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from accelerate import Accelerator

from ..families import model_family
from ..retrieval.encoding import embed_texts, embed_videos


class VideoTextEncoder(torch.nn.Module):
    """
    Wraps a dual encoder of any supported family (a VoP `PeftModel`) so that one `forward` returns both embeddings,
    computed by `peft_vop.retrieval.embed_videos` and `embed_texts` (the embeddings `vop eval` uses).

    `accelerate.prepare` wraps this module in DDP/FSDP/DeepSpeed, and those only synchronise gradients of work done
    inside the wrapper's `forward`; calling `get_image_features`/`get_text_features` on the inner model directly
    would bypass them.

    Args:
        model (`torch.nn.Module`):
            A model with CLIP's `get_image_features(pixel_values=...)` and
            `get_text_features(input_ids=..., attention_mask=...)` (a VoP `PeftModel` over a `CLIPModel`,
            `MetaClip2Model`, `SiglipModel` or `Siglip2Model`).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's frozen log temperature, read from the base model (VoP does not train it)."""
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return base.logit_scale

    @property
    def logit_bias(self) -> torch.Tensor | None:
        """SigLIP's frozen logit bias for families trained with the sigmoid loss; `None` for softmax families."""
        if model_family(self.model).loss != "sigmoid":
            return None
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return base.logit_bias

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_attention_mask: torch.Tensor | None = None,
        spatial_shapes: torch.Tensor | None = None,
        **unused,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """
        Embed a batch of videos and/or captions (evaluation embeds them separately, training together).

        Args:
            input_ids (`torch.LongTensor` of shape `[T, L]`, *optional*): caption token ids.
            attention_mask (`torch.LongTensor` of shape `[T, L]`, *optional*): 1 for real tokens, 0 for padding.
            pixel_values (`torch.FloatTensor` of shape `[B, F, 3, H, W]`, *optional*): the frames of B videos
                (cut into patch sequences here for SigLIP 2, see [`peft_vop.families.vision_inputs`]); for a NaFlex
                processor the patch sequences `[B, F, N, 3*p*p]`, with the next two arguments.
            pixel_attention_mask (`torch.LongTensor` of shape `[B, F, N]`, *optional*): NaFlex patch mask.
            spatial_shapes (`torch.LongTensor` of shape `[B, F, 2]`, *optional*): NaFlex patch grids.
            unused: other collator fields (ids, caption indices), ignored.

        Returns:
            `tuple`: video embeddings `[B, P]` (unit norm) and text embeddings `[T, P]`; `None` for a missing input.
        """
        video_embeds = text_embeds = None
        if pixel_values is not None:
            video_embeds = embed_videos(self.model, pixel_values, pixel_attention_mask, spatial_shapes)
        if input_ids is not None:
            text_embeds = embed_texts(self.model, input_ids, attention_mask)
        return video_embeds, text_embeds


def gather_with_grad(tensor: torch.Tensor, accelerator: Accelerator) -> torch.Tensor:
    """
    Concatenate `tensor` from every process along dim 0, keeping this process's own slice differentiable.

    The other processes' slices arrive as constants: each process back-propagates into its own embeddings only, and
    the data-parallel wrapper then averages parameter gradients over processes (see [`contrastive_step`] for the
    scaling that turns this average into the gradient of the global-batch loss).

    Args:
        tensor (`torch.Tensor` of shape `[b, ...]`):
            This process's rows; every process must pass the same `b`.
        accelerator (`accelerate.Accelerator`):
            The accelerator of the run (gives the process count and rank).

    Returns:
        `torch.Tensor` of shape `[num_processes * b, ...]`, rows in rank order.
    """
    if accelerator.num_processes == 1:
        return tensor
    gathered = accelerator.gather(tensor.detach().contiguous())  # [W*b, ...]
    rows = tensor.shape[0]
    start = accelerator.process_index * rows
    return torch.cat([gathered[:start], tensor, gathered[start + rows :]])


def symmetric_contrastive_loss(
    text_embeds: torch.Tensor, video_embeds: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """
    CLIP's symmetric InfoNCE loss: the mean of text-to-video and video-to-text cross-entropy, where row `i` of each
    modality is the positive of row `i` of the other and every other row is a negative.

    Args:
        text_embeds (`torch.Tensor` of shape `[N, P]`): caption embeddings (any norm).
        video_embeds (`torch.Tensor` of shape `[N, P]`): video embeddings (any norm).
        logit_scale (`torch.Tensor`): log of the temperature scale; similarities are multiplied by its exp.

    Returns:
        `torch.Tensor`: the scalar loss, computed in float32.
    """
    logits_per_text = scaled_similarity(text_embeds, video_embeds, logit_scale)  # [N, N]
    targets = torch.arange(logits_per_text.shape[0], device=logits_per_text.device)
    return (F.cross_entropy(logits_per_text, targets) + F.cross_entropy(logits_per_text.T, targets)) / 2


def scaled_similarity(
    text_embeds: torch.Tensor, video_embeds: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """`exp(logit_scale)` times the cosine similarity of every caption `[N, P]` with every video `[N, P]`: `[N, N]`,
    in float32."""
    if text_embeds.shape != video_embeds.shape or text_embeds.ndim != 2:
        raise ValueError(
            f"`text_embeds` and `video_embeds` must both have shape [N, P]; got {tuple(text_embeds.shape)} and "
            f"{tuple(video_embeds.shape)}."
        )
    text_embeds = F.normalize(text_embeds.float(), dim=-1)
    video_embeds = F.normalize(video_embeds.float(), dim=-1)
    return logit_scale.float().exp() * text_embeds @ video_embeds.T


def sigmoid_contrastive_loss(
    text_embeds: torch.Tensor, video_embeds: torch.Tensor, logit_scale: torch.Tensor, logit_bias: torch.Tensor
) -> torch.Tensor:
    """
    SigLIP's pairwise sigmoid loss, as `SiglipModel(..., return_loss=True)` computes it: every (text, video) pair is
    a binary classification, positive on the diagonal; the loss is the sum over videos of the negative
    log-likelihoods, averaged over texts.

    Args:
        text_embeds (`torch.Tensor` of shape `[N, P]`): caption embeddings (any norm).
        video_embeds (`torch.Tensor` of shape `[N, P]`): video embeddings (any norm).
        logit_scale (`torch.Tensor`): log of the scale; similarities are multiplied by its exp.
        logit_bias (`torch.Tensor`): added to every scaled similarity.

    Returns:
        `torch.Tensor`: the scalar loss, computed in float32.
    """
    logits_per_text = scaled_similarity(text_embeds, video_embeds, logit_scale) + logit_bias.float()  # [N, N]
    signs = 2 * torch.eye(logits_per_text.shape[0], device=logits_per_text.device) - 1  # +1 positives, -1 negatives
    return -F.logsigmoid(signs * logits_per_text).sum(dim=-1).mean()


def contrastive_step(
    accelerator: Accelerator,
    encoder: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    Forward and backward of one micro-batch: embed, gather every process's embeddings, compute the loss over the
    global batch and back-propagate.

    Every process computes the same global-batch loss `L`, but its backward reaches only its own embeddings, giving
    `dL/dθ` restricted to its slice. DDP (like FSDP and DeepSpeed) then *averages* parameter gradients over the `W`
    processes, i.e. `(1/W) * dL/dθ`; back-propagating `W * L` makes the result exactly `dL/dθ`, the gradient a single
    process would get from the whole global batch.

    Args:
        accelerator (`accelerate.Accelerator`): the run's accelerator (backward, gradient accumulation, scaling).
        encoder (`torch.nn.Module`): the prepared [`VideoTextEncoder`].
        batch (`dict`): a collated micro-batch with `input_ids`, `attention_mask` and `pixel_values`.
        logit_scale (`torch.Tensor`): the backbone's frozen log temperature.
        logit_bias (`torch.Tensor`, *optional*): the frozen logit bias of a sigmoid-loss backbone (SigLIP, SigLIP 2,
            [`VideoTextEncoder.logit_bias`]): given, the loss is [`sigmoid_contrastive_loss`]; `None` (CLIP,
            MetaCLIP 2), it is [`symmetric_contrastive_loss`].

    Returns:
        `torch.Tensor`: the detached global-batch loss (the same value on every process).
    """
    video_embeds, text_embeds = encoder(**batch)
    text_embeds, video_embeds = gather_with_grad(text_embeds, accelerator), gather_with_grad(video_embeds, accelerator)
    if logit_bias is None:
        loss = symmetric_contrastive_loss(text_embeds, video_embeds, logit_scale)
    else:
        loss = sigmoid_contrastive_loss(text_embeds, video_embeds, logit_scale, logit_bias)
    accelerator.backward(loss * accelerator.num_processes)
    return loss.detach()
