import numpy as np
import pytest
import torch

from omni_avsr.data.sampler import FrameBudgetBatchSampler


@pytest.fixture
def lengths():
    return np.random.default_rng(0).integers(20, 400, size=500).tolist()


def flatten(batches):
    return [index for batch in batches for index in batch]


def test_batches_cover_every_clip_once_within_the_frame_cap(lengths):
    batches = list(FrameBudgetBatchSampler(lengths, max_frames=1500, seed=0))
    assert sorted(flatten(batches)) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in batch) <= 1500 for batch in batches)
    assert len(FrameBudgetBatchSampler(lengths, max_frames=1500, seed=0)) == len(batches)


def test_batches_hold_clips_of_similar_length(lengths):
    batches = list(FrameBudgetBatchSampler(lengths, max_frames=1500, num_buckets=50, seed=0))
    spreads = [np.ptp([lengths[i] for i in batch]) for batch in batches]
    assert np.median(spreads) < 0.05 * np.ptp(lengths)


def test_a_clip_longer_than_the_cap_gets_a_batch_of_its_own():
    lengths = [100, 2000, 300, 100, 1600, 50]
    batches = list(FrameBudgetBatchSampler(lengths, max_frames=1500, num_buckets=3, seed=0))
    assert [1] in batches and [4] in batches
    assert sorted(flatten(batches)) == list(range(6))


def test_epochs_are_reproducible_and_differ(lengths):
    sampler = FrameBudgetBatchSampler(lengths, max_frames=1500, seed=3)
    first = list(sampler)
    assert list(FrameBudgetBatchSampler(lengths, max_frames=1500, seed=3)) == first
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(flatten(second)) == sorted(flatten(first))
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert list(FrameBudgetBatchSampler(lengths, max_frames=1500, seed=4)) != first


def test_without_shuffle_batches_are_ordered_by_bucket_and_longest_first():
    lengths = [10, 50, 30, 20, 40, 60]
    batches = list(FrameBudgetBatchSampler(lengths, max_frames=60, num_buckets=3, shuffle=False))
    # Bucket edges 10, 35, 60 (torch.bucketize's rule, as the reference): {10}, {30, 20}, {60, 50, 40}.
    assert batches == [[0, 2, 3], [5], [1], [4]]
    assert batches == list(FrameBudgetBatchSampler(lengths, max_frames=60, num_buckets=3, shuffle=False, seed=9))


def test_max_batch_size_caps_the_number_of_clips(lengths):
    batches = list(FrameBudgetBatchSampler(lengths, max_frames=100_000, max_batch_size=8))
    assert max(len(batch) for batch in batches) == 8
    assert sorted(flatten(batches)) == list(range(len(lengths)))


@pytest.mark.parametrize("world_size", [2, 3, 7])
def test_ranks_get_disjoint_equal_shares_of_all_clips(lengths, world_size):
    for epoch in (0, 1):
        shares = []
        for rank in range(world_size):
            sampler = FrameBudgetBatchSampler(lengths, max_frames=1500, seed=1, num_replicas=world_size, rank=rank)
            sampler.set_epoch(epoch)
            shares.append(list(sampler))
            assert len(sampler) == len(shares[-1])
        assert len({len(share) for share in shares}) == 1
        assert sorted(flatten(flatten(shares))) == list(range(len(lengths)))


def test_tiny_datasets_drop_the_remainder_only_when_no_batch_can_be_split():
    shares = [list(FrameBudgetBatchSampler([100] * 5, max_frames=100, num_replicas=4, rank=rank)) for rank in range(4)]
    assert [len(share) for share in shares] == [1, 1, 1, 1]
    assert len(set(flatten(flatten(shares)))) == 4
    with pytest.raises(ValueError, match="3 clips cannot give each of 4 ranks a batch"):
        FrameBudgetBatchSampler([100] * 3, num_replicas=4, rank=0)


def test_works_as_a_dataloader_batch_sampler(lengths):
    dataset = torch.utils.data.TensorDataset(torch.tensor(lengths))
    sampler = FrameBudgetBatchSampler(lengths, max_frames=1500, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler)
    batches = [batch[0].tolist() for batch in loader]
    assert batches == [[lengths[i] for i in batch] for batch in sampler]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        FrameBudgetBatchSampler([])
    with pytest.raises(ValueError, match="positive"):
        FrameBudgetBatchSampler([10], max_frames=0)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\)"):
        FrameBudgetBatchSampler([10, 20], num_replicas=2, rank=2)
