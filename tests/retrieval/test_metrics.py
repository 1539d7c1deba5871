"""Retrieval metrics against a brute-force computation written here, independently of the library."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from peft_vop.retrieval import RetrievalMetrics, compute_retrieval_metrics, retrieval_ranks


def cosine_matrix(texts, videos):
    texts = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    videos = videos / np.linalg.norm(videos, axis=1, keepdims=True)
    return texts @ videos.T  # [T, V]


def brute_force_ranks(scores, text_to_video):
    """Sort every query's candidates (ties: the correct items last) and read off the position of the first one."""
    num_texts, num_videos = scores.shape
    t2v = []
    for t in range(num_texts):
        order = sorted(range(num_videos), key=lambda v: (-scores[t, v], v == text_to_video[t]))
        t2v.append(order.index(text_to_video[t]))
    v2t = []
    for v in range(num_videos):
        own = [t for t in range(num_texts) if text_to_video[t] == v]
        if not own:
            continue
        order = sorted(range(num_texts), key=lambda t: (-scores[t, v], t in own))
        v2t.append(min(order.index(t) for t in own))
    return np.array(t2v), np.array(v2t)


def brute_force_metrics(ranks):
    return {
        "R@1": 100 * np.mean(ranks < 1),
        "R@5": 100 * np.mean(ranks < 5),
        "R@10": 100 * np.mean(ranks < 10),
        "MdR": np.median(ranks) + 1,
        "MnR": np.mean(ranks) + 1,
        "queries": len(ranks),
    }


def brute_force_dsl(scores, temperature):
    """Dual softmax on the whole matrix: each score times the softmax over all queries for its candidate."""
    t2v = scores * np.exp(temperature * scores) / np.exp(temperature * scores).sum(axis=0, keepdims=True)
    scores_v = scores.T  # [V, T]
    v2t = scores_v * np.exp(temperature * scores_v) / np.exp(temperature * scores_v).sum(axis=0, keepdims=True)
    return t2v, v2t.T  # both as [T, V]


def check(texts, videos, text_to_video, chunk_sizes=(1, 3, 7, 1000)):
    scores = cosine_matrix(texts.double().numpy(), videos.double().numpy())
    expected_t2v, expected_v2t = brute_force_ranks(scores, text_to_video.tolist())
    for chunk_size in chunk_sizes:
        t2v, v2t = retrieval_ranks(texts, videos, text_to_video, chunk_size=chunk_size)
        assert t2v.tolist() == expected_t2v.tolist() and v2t.tolist() == expected_v2t.tolist()
    result = compute_retrieval_metrics(texts, videos, text_to_video, chunk_size=5)
    for ours, ranks in ((result.text_to_video, expected_t2v), (result.video_to_text, expected_v2t)):
        assert ours.to_dict() == pytest.approx(brute_force_metrics(ranks))
    return expected_t2v, expected_v2t


def test_random_embeddings_one_caption_per_video():
    generator = torch.Generator().manual_seed(0)
    videos = torch.randn(40, 8, generator=generator)
    texts = videos + 1.5 * torch.randn(40, 8, generator=generator)
    t2v, v2t = check(texts, videos, torch.arange(40))
    assert 0 < (t2v == 0).sum() < 40  # neither trivial nor hopeless


def test_ties_count_against_the_model():
    # Small integer vectors: many exactly equal scores (exact in floating point).
    generator = torch.Generator().manual_seed(1)
    videos = torch.randint(0, 2, (30, 3), generator=generator).float() + torch.tensor([1.0, 0.0, 0.0])
    texts = torch.randint(0, 2, (30, 3), generator=generator).float() + torch.tensor([1.0, 0.0, 0.0])
    check(texts, videos, torch.arange(30))
    # Identical videos: nothing can be told apart, so every query ranks last.
    same = compute_retrieval_metrics(torch.randn(10, 4), torch.ones(10, 4), torch.arange(10))
    assert (same.text_to_video.r1, same.text_to_video.median_rank, same.text_to_video.mean_rank) == (0.0, 10.0, 10.0)
    # Two videos tied with the correct one, one above it: rank 3 (pessimistic), not 1 (optimistic) or 2 (mean).
    videos = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    ranks, _ = retrieval_ranks(torch.tensor([[1.0, 0.05]]), videos, torch.tensor([0]))
    assert ranks.tolist() == [3]


def test_several_captions_per_video():
    generator = torch.Generator().manual_seed(2)
    counts = [3, 1, 4, 0, 2, 5, 1, 2]  # video 3 has no caption: a candidate, never a video-to-text query
    videos = torch.randn(len(counts), 6, generator=generator)
    text_to_video = torch.tensor([v for v, count in enumerate(counts) for _ in range(count)])
    texts = videos[text_to_video] + 1.2 * torch.randn(len(text_to_video), 6, generator=generator)
    t2v, v2t = check(texts, videos, text_to_video)
    assert len(t2v) == 18 and len(v2t) == 7


def test_best_caption_gives_the_video_to_text_rank():
    videos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # Video 0 has a bad caption (text 0) and a good one (text 1); video 1 has text 2, between the two.
    texts = torch.tensor([[0.0, 1.0], [1.0, 0.1], [0.5, 0.5]])
    _, v2t = retrieval_ranks(texts, videos, torch.tensor([0, 0, 1]))
    # Video 0: its best caption beats text 2, which outscores its bad caption: rank 0. Video 1: text 0 (of video 0)
    # scores above its caption: rank 1.
    assert v2t.tolist() == [0, 1]


def test_perfect_retrieval():
    videos = torch.eye(12)
    result = compute_retrieval_metrics(videos.clone(), videos, torch.arange(12))
    assert result.text_to_video.to_dict() == {
        "R@1": 100.0,
        "R@5": 100.0,
        "R@10": 100.0,
        "MdR": 1.0,
        "MnR": 1.0,
        "queries": 12,
    }


@pytest.mark.parametrize("temperature", [1.0, 100.0])
def test_dual_softmax_matches_the_whole_matrix(temperature):
    generator = torch.Generator().manual_seed(3)
    counts = [2, 1, 3, 1, 2, 2]
    videos = torch.randn(len(counts), 5, generator=generator)
    text_to_video = torch.tensor([v for v, count in enumerate(counts) for _ in range(count)])
    texts = videos[text_to_video] + torch.randn(len(text_to_video), 5, generator=generator)
    scores = cosine_matrix(texts.double().numpy(), videos.double().numpy())
    t2v_scores, v2t_scores = brute_force_dsl(scores, temperature)
    expected_t2v, _ = brute_force_ranks(t2v_scores, text_to_video.tolist())
    _, expected_v2t = brute_force_ranks(v2t_scores, text_to_video.tolist())
    for chunk_size in (1, 4, 100):
        t2v, v2t = retrieval_ranks(
            texts, videos, text_to_video, chunk_size=chunk_size, dsl=True, dsl_temperature=temperature
        )
        assert t2v.tolist() == expected_t2v.tolist() and v2t.tolist() == expected_v2t.tolist()
    result = compute_retrieval_metrics(texts, videos, text_to_video, dsl=True, dsl_temperature=temperature)
    assert result.to_dict()["dsl"] is True and result.to_dict()["dsl_temperature"] == temperature
    assert compute_retrieval_metrics(texts, videos, text_to_video).to_dict()["dsl"] is False


def test_metric_definitions():
    metrics = RetrievalMetrics.from_ranks(torch.tensor([0, 0, 3, 4, 9, 10, 50]))
    assert metrics.to_dict() == pytest.approx(
        {"R@1": 200 / 7, "R@5": 400 / 7, "R@10": 500 / 7, "MdR": 5.0, "MnR": 76 / 7 + 1, "queries": 7}
    )
    assert RetrievalMetrics.from_ranks(torch.tensor([1, 2])).median_rank == 2.5  # the mean of the middle two, plus one
    with pytest.raises(ValueError, match="without queries"):
        RetrievalMetrics.from_ranks(torch.tensor([], dtype=torch.long))


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="same width"):
        retrieval_ranks(torch.randn(3, 4), torch.randn(3, 5), torch.arange(3))
    with pytest.raises(ValueError, match="one video index per text"):
        retrieval_ranks(torch.randn(3, 4), torch.randn(3, 4), torch.arange(2))
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        retrieval_ranks(torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_ranks(torch.full((3, 4), float("nan")), torch.randn(3, 4), torch.arange(3))
    with pytest.raises(ValueError, match="chunk_size"):
        retrieval_ranks(torch.randn(3, 4), torch.randn(3, 4), torch.arange(3), chunk_size=0)


def test_ten_thousand_squared_stays_within_a_chunk_of_memory():
    # The full 10,000 x 10,000 similarity matrix is 400 MB in float32 (800 MB in the float64 the ranks are computed
    # in); in chunks of 250 rows it is never held: the peak memory of a fresh process grows by much less.
    code = textwrap.dedent(
        """
        import resource, torch
        from peft_vop.retrieval import compute_retrieval_metrics
        torch.manual_seed(0)
        videos = torch.randn(10_000, 16)
        texts = videos + torch.randn(10_000, 16)
        targets = torch.arange(10_000)
        compute_retrieval_metrics(texts[:10], videos[:10], targets[:10])  # warm up the allocator and kernels
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = compute_retrieval_metrics(texts, videos, targets, chunk_size=250)
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(grown_mb, result.text_to_video.num_queries, result.video_to_text.num_queries)
        """
    )
    # Large buffers from mmap go back to the system when freed, so the peak measures live memory, not heap reuse.
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300, env=environment
    )
    grown_mb, t2v_queries, v2t_queries = output.stdout.split()
    assert (int(t2v_queries), int(v2t_queries)) == (10_000, 10_000)
    assert float(grown_mb) < 150, f"peak memory grew by {grown_mb} MB"
