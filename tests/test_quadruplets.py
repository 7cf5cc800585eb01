"""Quadruplet sampling invariants, its two negative modes, oversampling, sharding and errors; the sampler's epochs,
augmentation seeds and mid-epoch restarts."""
import numpy as np
import pytest

from qcslib.data.quadruplets import QuadrupletSampler, SamplingError, draw_quadruplets

LABELS = np.repeat([0, 1, 2, 3], [900, 50, 46, 4])  # imbalanced, like AffectNet


def test_every_quadruplet_has_the_right_classes():
    q = draw_quadruplets(LABELS, seed=0)
    a, p, n, n2 = q.T
    assert q.shape == (len(LABELS), 4) and q.dtype == np.int64
    assert sorted(a) == list(range(len(LABELS)))  # each image is an anchor once
    assert (LABELS[p] == LABELS[a]).all() and (p != a).all()
    assert (LABELS[n] != LABELS[a]).all()
    assert (LABELS[n2] == LABELS[n]).all() and (n2 != n).all()


def test_same_seed_and_epoch_give_the_same_epoch():
    assert np.array_equal(draw_quadruplets(LABELS, 3, epoch=5), draw_quadruplets(LABELS, 3, epoch=5))
    assert not np.array_equal(draw_quadruplets(LABELS, 3, epoch=5), draw_quadruplets(LABELS, 3, epoch=6))
    assert not np.array_equal(draw_quadruplets(LABELS, 3), draw_quadruplets(LABELS, 4))


def test_positives_are_uniform_over_the_rest_of_the_class():
    picks = np.concatenate([draw_quadruplets(LABELS, 0, epoch=e)[:, :2] for e in range(300)])
    small = picks[LABELS[picks[:, 0]] == 3]  # class 3 has images 996..999
    counts = np.zeros((4, 4), int)
    np.add.at(counts, (small[:, 0] - 996, small[:, 1] - 996), 1)
    assert (np.diag(counts) == 0).all()
    off = counts[~np.eye(4, dtype=bool)]
    assert off.min() > 0.8 * off.mean() and off.max() < 1.2 * off.mean()  # 100 draws each on average


def negative_class_shares(negatives, anchor_class):
    q = np.concatenate([draw_quadruplets(LABELS, 1, epoch=e, negatives=negatives) for e in range(20)])
    neg = LABELS[q[LABELS[q[:, 0]] == anchor_class, 2]]
    return np.bincount(neg, minlength=4) / len(neg)


def test_data_negatives_follow_the_data_and_balanced_ones_the_classes():
    # class-1 anchors: the other 950 images are 900 / 46 / 4 of classes 0 / 2 / 3
    np.testing.assert_allclose(negative_class_shares("data", 1), [900 / 950, 0, 46 / 950, 4 / 950], atol=0.02)
    np.testing.assert_allclose(negative_class_shares("balanced", 1), [1 / 3, 0, 1 / 3, 1 / 3], atol=0.03)


def test_oversampling_balances_the_anchor_classes():
    q = draw_quadruplets(LABELS, 0, oversample=True, num_anchors=40_000)
    assert len(q) == 40_000
    np.testing.assert_allclose(np.bincount(LABELS[q[:, 0]]) / len(q), [0.25] * 4, atol=0.02)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_share_one_epoch(world_size):
    full = draw_quadruplets(LABELS, 7, epoch=2)
    shards = [draw_quadruplets(LABELS, 7, epoch=2, rank=r, world_size=world_size) for r in range(world_size)]
    per_rank = -(-len(full) // world_size)
    assert all(len(s) == per_rank for s in shards)
    interleaved = np.empty((per_rank * world_size, 4), np.int64)
    for r, s in enumerate(shards):
        interleaved[r::world_size] = s
    assert np.array_equal(interleaved[: len(full)], full)  # each row on exactly one rank, padding wraps around
    assert np.array_equal(interleaved[len(full):], full[: len(interleaved) - len(full)])


def test_class_with_one_image_is_named():
    labels = np.array([0, 0, 1, 2, 2])
    with pytest.raises(SamplingError, match="class 'fear' \\(1\\) has fewer"):
        draw_quadruplets(labels, 0, classes=["happy", "fear", "sad"])


def test_empty_classes_are_fine_but_one_class_is_not():
    labels = np.array([0, 0, 2, 2])  # class 1 has no images: it is never drawn
    q = draw_quadruplets(labels, 0, negatives="balanced", classes=["a", "b", "c"])
    assert set(labels[q[:, 2]]) <= {0, 2}
    with pytest.raises(SamplingError, match="at least 2 classes"):
        draw_quadruplets(np.array([1, 1, 1]), 0)


@pytest.mark.parametrize("kwargs, error", [
    (dict(negatives="hard"), ValueError), (dict(rank=2, world_size=2), ValueError)])
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        draw_quadruplets(LABELS, 0, **kwargs)


def test_more_anchors_than_images_are_whole_shuffled_passes():
    labels = np.repeat(np.arange(3), 5)
    quads = draw_quadruplets(labels, seed=0, epoch=0, num_anchors=2 * len(labels) + 4)
    counts = np.bincount(quads[:, 0], minlength=len(labels))
    assert len(quads) == 34 and counts.min() >= 2 and counts.max() <= 3 and counts.sum() == 34
    assert sorted(quads[:15, 0]) == list(range(15))  # the first pass holds every image once
    np.testing.assert_array_equal(draw_quadruplets(labels, 0, 0, num_anchors=10)[:, 0],
                                  draw_quadruplets(labels, 0, 0)[:10, 0])  # fewer: the first ones, as before


def test_the_sampler_yields_the_epochs_draw_with_a_seed_per_item_and_restarts_mid_epoch():
    sampler = QuadrupletSampler(LABELS, seed=5, negatives="balanced", rank=1, world_size=2)
    first = list(sampler)
    assert len(first) == len(sampler) == 500
    assert np.array_equal([item[:4] for item in first], draw_quadruplets(LABELS, 5, 0, negatives="balanced",
                                                                         rank=1, world_size=2))
    seeds = [item[4] for item in first]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2 ** 63 for s in seeds)
    other_rank = QuadrupletSampler(LABELS, seed=5, negatives="balanced", rank=0, world_size=2)
    assert not set(seeds) & {item[4] for item in other_rank}
    sampler.set_epoch(1)
    assert [item[:4] for item in sampler] != [item[:4] for item in first]
    sampler.set_epoch(0, start=123)
    assert len(sampler) == 500 - 123 and list(sampler) == first[123:]
