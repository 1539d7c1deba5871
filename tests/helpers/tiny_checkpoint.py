"""A complete tiny CLIP checkpoint (model, tokenizer, image processor) built offline, for end-to-end tests."""

from __future__ import annotations

import os
import string

from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTokenizer

from .clip import tiny_clip


def tiny_tokenizer(max_length: int = 24) -> CLIPTokenizer:
    """A byte-pair tokenizer over letters whose ids fit the tiny CLIP (vocabulary 99, BOS 96, EOS/pad 97)."""
    vocab = {letter: index for index, letter in enumerate(string.ascii_lowercase)}
    vocab.update({letter + "</w>": 26 + index for index, letter in enumerate(string.ascii_lowercase)})
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n</w>"), ("o", "g</w>"), ("a", "t</w>")]
    for first, second in merges:
        vocab[first + second] = len(vocab)
    vocab.update({"<|startoftext|>": 96, "<|endoftext|>": 97})
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def tiny_image_processor(size: int = 32) -> CLIPImageProcessor:
    """An image processor with explicit values (none left to defaults) for 32-pixel frames."""
    return CLIPImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=[0.5, 0.4, 0.3],
        image_std=[0.2, 0.25, 0.3],
        resample=3,
    )


def save_tiny_checkpoint(directory: str | os.PathLike, seed: int = 0) -> str:
    """Save a tiny random CLIP with its tokenizer and processor, loadable with `from_pretrained(directory)`."""
    directory = os.fspath(directory)
    tiny_clip(seed).save_pretrained(directory)
    CLIPProcessor(image_processor=tiny_image_processor(), tokenizer=tiny_tokenizer()).save_pretrained(directory)
    return directory
