"""Top-k search over unit-norm embeddings: exact (chunked matrix products) or approximate (FAISS IVF)."""

from __future__ import annotations

import math

import torch


class ExactBackend:
    """Exact cosine top-k: the index is scanned in chunks of rows, keeping the best `k` seen so far.

    Memory beyond the embeddings is `Q x chunk_size` scores, whatever the size of the index.

    Args:
        embeddings (`torch.FloatTensor` of shape `[N, P]`):
            Unit-norm rows.
        chunk_size (`int`, *optional*, defaults to 65536):
            Rows scored at once.
    """

    def __init__(self, embeddings: torch.Tensor, chunk_size: int = 65536):
        if chunk_size < 1:
            raise ValueError(f"`chunk_size` must be at least 1; got {chunk_size}.")
        self.embeddings = embeddings
        self.chunk_size = chunk_size

    @torch.no_grad()
    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores `[Q, k]` and row indices `[Q, k]` of the best `k` rows per query, best first.

        Ties are broken by the lower row index, so results do not depend on `chunk_size`.
        """
        queries = queries.to(self.embeddings.dtype)
        best_scores = torch.empty(queries.shape[0], 0, dtype=queries.dtype)
        best_rows = torch.empty(queries.shape[0], 0, dtype=torch.long)
        for start in range(0, self.embeddings.shape[0], self.chunk_size):
            # [Q, P] @ [P, C] -> [Q, C]
            scores = queries @ self.embeddings[start : start + self.chunk_size].T
            top = scores.topk(min(k, scores.shape[1]), dim=1)
            scores = torch.cat([best_scores, top.values], dim=1)
            rows = torch.cat([best_rows, top.indices + start], dim=1)
            # Sort by (score desc, row asc): a stable sort on rows, then a stable sort on scores.
            by_row = rows.argsort(dim=1, stable=True)
            scores, rows = scores.gather(1, by_row), rows.gather(1, by_row)
            order = scores.argsort(dim=1, descending=True, stable=True)[:, :k]
            best_scores, best_rows = scores.gather(1, order), rows.gather(1, order)
        return best_scores, best_rows


class FaissBackend:
    """Approximate top-k with a FAISS inverted-file index (`IndexIVFFlat`, inner product).

    The rows are split into `nlist` clusters (k-means on a sample); a query scores only the rows of its `nprobe`
    nearest clusters, so latency falls roughly by `nlist / nprobe` and recall@k drops below 1. Needs the optional
    `faiss-cpu` package (`pip install peft-vop[faiss]`).

    Args:
        embeddings (`torch.FloatTensor` of shape `[N, P]`):
            Unit-norm rows.
        nlist (`int`, *optional*):
            Clusters; defaults to `sqrt(N)`, at most `N / 39` (FAISS wants 39 training points per cluster). With
            one cluster (fewer than 78 rows) the index is flat and exact.
        nprobe (`int`, *optional*, defaults to 32):
            Clusters visited per query.
        train_size (`int`, *optional*, defaults to 65536):
            Rows sampled for k-means.
        seed (`int`, *optional*, defaults to 0):
            Seed of the sample and of k-means.
    """

    def __init__(
        self,
        embeddings: torch.Tensor,
        nlist: int | None = None,
        nprobe: int = 32,
        train_size: int = 65536,
        seed: int = 0,
    ):
        try:
            import faiss
        except ImportError as error:
            raise ImportError(
                "The FAISS backend needs faiss-cpu: `pip install faiss-cpu` (or `pip install peft-vop[faiss]`)."
            ) from error
        if nprobe < 1:
            raise ValueError(f"`nprobe` must be at least 1; got {nprobe}.")
        vectors = embeddings.float().contiguous().numpy()
        count, dim = vectors.shape
        if nlist is None:
            nlist = max(1, min(int(math.sqrt(count)), count // 39))
        quantizer = faiss.IndexFlatIP(dim)
        self.quantizer = quantizer  # the IVF index refers to it; keep it alive
        if nlist == 1:  # too few rows to cluster (FAISS wants 39 per cluster): one list is a flat, exact index
            self.index = quantizer
            self.index.add(vectors)
            return
        self.index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.seed = seed
        generator = torch.Generator().manual_seed(seed)
        sample = torch.randperm(count, generator=generator)[: max(train_size, nlist)].sort().values.numpy()
        self.index.train(vectors[sample])
        self.index.add(vectors)
        self.index.nprobe = min(nprobe, nlist)

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores `[Q, k]` and row indices `[Q, k]` (-1 where fewer than `k` rows were found), best first."""
        scores, rows = self.index.search(queries.float().contiguous().numpy(), k)
        return torch.from_numpy(scores), torch.from_numpy(rows)
