"""Order-pair accuracy: brute force, ties, several captions, and an order-blind model at exactly 50%."""

from __future__ import annotations

import pytest
import torch

from peft_vop.synthetic.experiment import SplitEmbeddings, order_pair_accuracy


def _brute_force(texts, videos, text_to_video, partner):
    texts = torch.nn.functional.normalize(texts, dim=-1)
    similarity = texts @ videos.T
    t2v = []
    for caption, video in enumerate(text_to_video.tolist()):
        if partner[video] < 0:
            continue
        own, other = similarity[caption, video].item(), similarity[caption, partner[video]].item()
        t2v.append(1.0 if own > other else 0.5 if own == other else 0.0)
    v2t = []
    for video in range(len(videos)):
        if partner[video] < 0:
            continue
        best = {}
        for owner in (video, int(partner[video])):
            best[owner] = max(similarity[c, video].item() for c in range(len(texts)) if text_to_video[c] == owner)
        own, other = best[video], best[int(partner[video])]
        v2t.append(1.0 if own > other else 0.5 if own == other else 0.0)
    return 100 * sum(t2v) / len(t2v), 100 * sum(v2t) / len(v2t), len(v2t)


def test_matches_a_brute_force_count_with_several_captions_and_ties():
    generator = torch.Generator().manual_seed(0)
    videos = torch.nn.functional.normalize(torch.randn(6, 5, generator=generator), dim=-1)
    videos[5] = videos[4]  # a tied pair
    texts = torch.randn(9, 5, generator=generator)
    text_to_video = torch.tensor([0, 0, 1, 2, 3, 3, 4, 5, 5])
    partner = torch.tensor([1, 0, 3, 2, 5, 4])
    embeddings = SplitEmbeddings(texts, videos, text_to_video, partner)
    result = order_pair_accuracy(embeddings)
    t2v, v2t, pairs = _brute_force(texts, videos, text_to_video, partner)
    assert result == {"t2v": pytest.approx(t2v), "v2t": pytest.approx(v2t), "pairs": pairs}


def test_an_order_blind_model_scores_exactly_chance():
    generator = torch.Generator().manual_seed(1)
    base = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=-1)
    videos = base.repeat_interleave(2, dim=0)  # each clip and its reversal look the same
    texts = torch.randn(8, 8, generator=generator)
    partner = torch.tensor([1, 0, 3, 2, 5, 4, 7, 6])
    result = order_pair_accuracy(SplitEmbeddings(texts, videos, torch.arange(8), partner))
    assert result["t2v"] == 50.0 and result["pairs"] == 8


def test_unpaired_videos_are_left_out_and_no_pairs_is_an_error():
    videos = torch.eye(3)
    texts = torch.eye(3)
    result = order_pair_accuracy(SplitEmbeddings(texts, videos, torch.arange(3), torch.tensor([1, 0, -1])))
    assert result == {"t2v": 100.0, "v2t": 100.0, "pairs": 2}
    with pytest.raises(ValueError, match="No caption of this split belongs to an order pair"):
        order_pair_accuracy(SplitEmbeddings(texts, videos, torch.arange(3), torch.tensor([-1, -1, -1])))
