"""Length-bucketed batches capped by the total number of video frames, the reference recipe's batching."""

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Sampler


if TYPE_CHECKING:
    import datasets


class FrameBudgetBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices whose clips add up to at most `max_frames` video frames.

    Clips are grouped into `num_buckets` equal-width length buckets; each epoch the clips are shuffled within
    their bucket, packed greedily in bucket order (a batch may straddle two neighbouring buckets, as in the
    reference), and the batches are shuffled. A clip longer than `max_frames` on its own gets a batch of its own
    rather than being dropped. Unlike the reference, which packs once and only reorders batches, batches are
    re-packed every epoch; `seed` and `set_epoch` make every epoch's batches reproducible.

    For distributed training each of the `num_replicas` ranks takes every `num_replicas`-th batch. So that all
    ranks run the same number of steps without repeating or dropping clips, the largest batches are split in two
    until the batch count divides evenly (only when every clip already stands alone, in a tiny dataset, are the
    last few batches dropped instead). Use it as `DataLoader(dataset, batch_sampler=sampler)`; with
    accelerate, either pass `num_replicas=1` and let accelerate shard the batches, or keep accelerate from
    sharding them again.

    Args:
        lengths: the number of video frames of each clip; `from_dataset` reads them from a dataset's column.
        max_frames: the cap on the summed frames of a batch (1500 in the reference README).
        num_buckets: number of length buckets (50 in the reference).
        max_batch_size: an optional cap on the number of clips per batch.
        shuffle: shuffle within buckets and the batch order; without it, clips go longest first within buckets
            and batches keep bucket order (for evaluation).
        seed: the base seed, combined with the epoch.
        num_replicas, rank: the distributed world size and this process's rank; default to torch.distributed's
            when it is initialised, else a single process.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int = 1500,
        *,
        num_buckets: int = 50,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1 or len(self.lengths) == 0:
            raise ValueError("lengths must be a non-empty sequence of frame counts.")
        if max_frames <= 0 or num_buckets <= 0 or (max_batch_size is not None and max_batch_size <= 0):
            raise ValueError("max_frames, num_buckets and max_batch_size must be positive.")
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if num_replicas is None:
            num_replicas = torch.distributed.get_world_size() if distributed else 1
        if rank is None:
            rank = torch.distributed.get_rank() if distributed else 0
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}.")
        if len(self.lengths) < num_replicas:
            raise ValueError(f"{len(self.lengths)} clips cannot give each of {num_replicas} ranks a batch.")
        self.max_frames = max_frames
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        bucket_edges = np.linspace(self.lengths.min(), self.lengths.max(), num_buckets)
        self.buckets = np.searchsorted(bucket_edges, self.lengths)
        self._cached_epoch = None
        self._cached_batches = None

    @classmethod
    def from_dataset(
        cls, dataset: "datasets.Dataset", max_frames: int = 1500, *, length_column: str = "num_frames", **kwargs
    ) -> "FrameBudgetBatchSampler":
        """Build the sampler from a `datasets.Dataset` column, without running its decoding transform."""
        lengths = dataset.with_format("numpy", columns=[length_column])[:][length_column]
        return cls(lengths, max_frames, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches_of_this_rank())

    def __len__(self) -> int:
        """Batches of this rank in the current epoch; re-packing can change it slightly from epoch to epoch."""
        return len(self._batches_of_this_rank())

    def _batches_of_this_rank(self) -> list[list[int]]:
        if self._cached_epoch != self.epoch:
            self._cached_batches = self._all_batches(np.random.default_rng((self.seed, self.epoch)))
            self._cached_epoch = self.epoch
        return self._cached_batches[self.rank :: self.num_replicas]

    def _all_batches(self, rng: np.random.Generator) -> list[list[int]]:
        within_bucket_key = rng.random(len(self.lengths)) if self.shuffle else -self.lengths
        order = np.lexsort((within_bucket_key, self.buckets))
        batches = self._pack(order)
        batches = self._split_until_divisible(batches)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _pack(self, order: np.ndarray) -> list[list[int]]:
        # Greedy packing restarts its running sum at every batch, which no numpy primitive expresses.
        batches, batch, batch_frames = [], [], 0
        for index, length in zip(order.tolist(), self.lengths[order].tolist()):
            batch_is_full = self.max_batch_size is not None and len(batch) == self.max_batch_size
            if batch and (batch_frames + length > self.max_frames or batch_is_full):
                batches.append(batch)
                batch, batch_frames = [], 0
            batch.append(index)
            batch_frames += length
        batches.append(batch)
        return batches

    def _split_until_divisible(self, batches: list[list[int]]) -> list[list[int]]:
        """Split the batches with the most clips in halves until every rank gets as many batches."""
        while missing := -len(batches) % self.num_replicas:
            splittable = sorted(
                (i for i, batch in enumerate(batches) if len(batch) > 1), key=lambda i: len(batches[i]), reverse=True
            )
            if not splittable:  # every clip already stands alone: drop the remainder (tiny datasets only)
                return batches[: len(batches) - len(batches) % self.num_replicas]
            to_split = set(splittable[:missing])
            batches = [
                half
                for i, batch in enumerate(batches)
                for half in ((batch[: len(batch) // 2], batch[len(batch) // 2 :]) if i in to_split else (batch,))
            ]
        return batches
