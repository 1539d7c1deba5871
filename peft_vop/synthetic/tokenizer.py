"""A real CLIP tokenizer whose vocabulary is built offline for the words of the synthetic world.

The vocabulary is laid out like OpenAI's: the 256 byte-level symbols, the same with the end-of-word marker `</w>`,
then one token per BPE merge, then `<|startoftext|>` and `<|endoftext|>`; we add a separate `<|pad|>` last. The
merges are learned with the `tokenizers` BPE trainer on the world's words until every word is a single token, and
because every byte (with and without `</w>`) is in the vocabulary, any other text still tokenizes, byte by byte.
"""

from __future__ import annotations

import json

from tokenizers import pre_tokenizers
from transformers import CLIPTokenizer

from .clips import ACTIONS
from .scene import COLOURS, SHAPES, SIZES
from .stills import EMPTY_DESCRIPTION, POSITION_PHRASES


BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
_END_OF_WORD = "</w>"
# Words that glue phrases into captions and descriptions ("a ... , then a ...", "a ..., a ... and a ...").
_GLUE_WORDS = ("a", ",", "then", "and")


def world_words() -> list[str]:
    """Every word (and the comma) that a caption or a still description of the world can use, sorted."""
    phrases = [*COLOURS, *SHAPES, *SIZES, *ACTIONS, *POSITION_PHRASES.values(), EMPTY_DESCRIPTION, *_GLUE_WORDS]
    return sorted({word for phrase in phrases for word in phrase.split()})


def build_world_tokenizer(model_max_length: int = 32) -> CLIPTokenizer:
    """Build the CLIP tokenizer of the synthetic world, in which every world word is one token.

    Args:
        model_max_length (`int`, *optional*, defaults to 32): Longest sequence, special tokens included; should equal
            the text model's `max_position_embeddings`.

    Returns:
        `CLIPTokenizer`: The tokenizer; `bos_token_id`, `eos_token_id` and `pad_token_id` are the last three ids.
    """
    # The trainer is only used for its merges; the vocabulary is laid out again below.
    trainer_base = CLIPTokenizer(bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN, unk_token=EOS_TOKEN)
    trained = trainer_base.train_new_from_iterator([world_words()], vocab_size=100_000, show_progress=False)
    merges = [tuple(pair) for pair in json.loads(trained.backend_tokenizer.to_str())["model"]["merges"]]

    # Sorting by code point puts the byte-level symbols in byte order, as in OpenAI's vocabulary.
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = alphabet + [symbol + _END_OF_WORD for symbol in alphabet]
    known = set(tokens)
    for left, right in merges:
        if left + right not in known:
            known.add(left + right)
            tokens.append(left + right)
    tokens += [BOS_TOKEN, EOS_TOKEN, PAD_TOKEN]
    return CLIPTokenizer(
        vocab={token: index for index, token in enumerate(tokens)},
        merges=merges,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=EOS_TOKEN,
        model_max_length=model_max_length,
    )
