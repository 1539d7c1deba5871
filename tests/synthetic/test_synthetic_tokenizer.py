"""The world tokenizer: a real CLIP tokenizer in which every world word is one token."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer, CLIPTokenizer

from peft_vop.synthetic import sample_clip, sample_still
from peft_vop.synthetic.tokenizer import build_world_tokenizer, world_words


@pytest.fixture(scope="module")
def tokenizer() -> CLIPTokenizer:
    return build_world_tokenizer()


def test_every_world_word_is_one_token(tokenizer):
    for word in world_words():
        tokens = tokenizer.tokenize(word)
        assert tokens == [f"{word}</w>"], f"{word!r} -> {tokens}"


def test_captions_tokenize_word_by_word_between_bos_and_eos(tokenizer):
    rng = np.random.default_rng(0)
    texts = [sample_clip(rng).caption for _ in range(20)] + [sample_still(rng).description for _ in range(20)]
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert len(ids) == len(text.replace(",", " ,").split()) + 2
        assert tokenizer.unk_token_id not in ids[1:-1]


def test_any_text_still_tokenizes_byte_by_byte(tokenizer):
    ids = tokenizer("Zebra 42 % ünïcode")["input_ids"]
    assert tokenizer.eos_token_id not in ids[1:-1], "unknown pieces fell back to the unk token"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "zebra 4 2 % ünïcode"


def test_special_tokens_are_the_last_ids(tokenizer):
    size = len(tokenizer)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (size - 3, size - 2, size - 1)
    assert tokenizer.eos_token_id != 2, "CLIP would pool the largest id instead of the first EOS"
    batch = tokenizer(["a red circle", "a small red circle at the top left"], padding=True)
    assert batch["input_ids"][0][-1] == tokenizer.pad_token_id


def test_round_trips_through_save_pretrained(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, CLIPTokenizer)
    text = "a large white cross moves up, then a small green triangle disappears"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.model_max_length == 32
