"""Cross Similarity Attention, checked against values worked out by hand on 2-token, 1-channel images."""
from math import sqrt

import pytest
import torch

from qcslib.models import csa


def tokens(*values):
    """One image of len(values) tokens with one channel each: shape (1, N, 1)."""
    return torch.tensor(values, dtype=torch.float64).reshape(1, -1, 1)


def softmax(xs):
    return torch.tensor(xs, dtype=torch.float64).softmax(-1)


# a = (0, 1), p = (0, 3), n = (2, 5), n2 = (4, 6). Rows/columns below are (row image tokens) × (column image tokens).
A, P, N, N2 = tokens(0, 1), tokens(0, 3), tokens(2, 5), tokens(4, 6)
# S_pa = max(D) − D with D(p, a) = [[0, 1], [3, 2]]  →  [[3, 2], [0, 1]]
PHI_S_A = [3 / sqrt(13), 2 / sqrt(13) + 1]          # φ(S_paᵀ): columns (p tokens) normalised over a's tokens
PHI_S_P = [3 / 3 + 2 / sqrt(5), 1 / sqrt(5)]        # φ(S_pa)
# S_{n2,n} with D(n2, n) = [[2, 1], [4, 1]]  →  [[2, 3], [0, 3]]
PHI_S_N = [2 / sqrt(13), 3 / sqrt(13) + 3 / 3]
PHI_S_N2 = [2 / 2 + 3 / (3 * sqrt(2)), 3 / (3 * sqrt(2))]
# D̃_na = D − min(D) with D(n, a) = [[2, 1], [5, 4]]  →  [[1, 0], [4, 3]]
PHI_D_A = [1 / 1 + 4 / 5, 3 / 5]
PHI_D_N = [1 / sqrt(17), 4 / sqrt(17) + 3 / 3]
# D̃_{n2,p} with D(n2, p) = [[4, 1], [6, 3]]  →  [[3, 0], [5, 2]]
PHI_D_P = [3 / 3 + 5 / sqrt(29), 2 / sqrt(29)]
PHI_D_N2 = [3 / sqrt(34), 5 / sqrt(34) + 2 / 2]


def assert_maps(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g[0], e, rtol=0, atol=1e-12)


def test_similarity_and_dissimilarity_shift_over_the_whole_batch_or_per_sample():
    d = torch.tensor([[[0.0, 1.0], [3.0, 2.0]], [[10.0, 20.0], [30.0, 40.0]]])
    torch.testing.assert_close(csa.similarity(d), 40 - d)
    torch.testing.assert_close(csa.dissimilarity(d), d)
    torch.testing.assert_close(csa.similarity(d, per_sample=True), torch.stack([3 - d[0], 40 - d[1]]))
    torch.testing.assert_close(csa.dissimilarity(d, per_sample=True), torch.stack([d[0], d[1] - 10]))


def test_aggregate_normalises_each_partner_token_then_sums():
    m = torch.tensor([[[3.0, 0.0], [2.0, 1.0]]])  # rows: own tokens, columns: partner tokens
    torch.testing.assert_close(csa.aggregate(m), torch.tensor([PHI_S_A], dtype=torch.float32))


def test_similarity_only_maps_match_hand_values():
    assert_maps(csa.csa_s([A, P]), [softmax(PHI_S_A), softmax(PHI_S_P)])
    assert_maps(csa.csa_s([A, P, N, N2]),
                [softmax(PHI_S_A), softmax(PHI_S_P), softmax(PHI_S_N), softmax(PHI_S_N2)])


def test_dissimilarity_only_maps_match_hand_values():
    assert_maps(csa.csa_d([A, P, N, N2]),
                [softmax(PHI_D_A), softmax(PHI_D_P), softmax(PHI_D_N), softmax(PHI_D_N2)])


def test_sd_maps_weigh_dissimilarity_by_k():
    k = 1 + torch.tanh(torch.tensor(0.4, dtype=torch.float64))
    expected = [softmax([s + k.item() * d for s, d in zip(ps, pd)]) for ps, pd in
                ((PHI_S_A, PHI_D_A), (PHI_S_P, PHI_D_P), (PHI_S_N, PHI_D_N), (PHI_S_N2, PHI_D_N2))]
    assert_maps(csa.csa_sd([A, P, N, N2], k), expected)


@pytest.mark.parametrize("per_sample", [False, True])
def test_swapping_anchor_positive_with_negative2_negative_permutes_the_maps(per_sample):
    torch.manual_seed(0)
    a, p, n, n2 = (torch.randn(3, 7, 5) for _ in range(4))
    k = torch.tensor(1.3)
    maps = csa.csa_sd([a, p, n, n2], k, per_sample)
    swapped = csa.csa_sd([n2, n, p, a], k, per_sample)
    for got, expected in zip(swapped, [maps[3], maps[2], maps[1], maps[0]]):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_global_shift_couples_samples_and_per_sample_shift_does_not():
    torch.manual_seed(1)
    xs = [torch.randn(2, 6, 4) for _ in range(4)]
    xs = [torch.stack([x[0], 10 * x[1]]) for x in xs]  # the second sample spans a much larger range
    k = torch.tensor(1.0)
    alone = csa.csa_sd([x[:1] for x in xs], k)
    for per_sample, coupled in ((True, False), (False, True)):
        batched = csa.csa_sd(xs, k, per_sample)
        same = all(torch.allclose(b[:1], s, atol=1e-6) for b, s in zip(batched, alone))
        assert same != coupled


def test_maps_are_distributions_over_own_tokens():
    torch.manual_seed(2)
    xs = [torch.randn(2, 5, 3) for _ in range(4)]
    for maps in (csa.csa_s(xs), csa.csa_d(xs), csa.csa_sd(xs, torch.tensor(1.0))):
        for m in maps:
            assert m.shape == (2, 5) and (m > 0).all()
            torch.testing.assert_close(m.sum(-1), torch.ones(2))


def test_sdpa_attends_over_the_partner_tokens():
    torch.manual_seed(3)
    a, p = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    m_a, m_p = csa.sdpa([a, p])
    torch.testing.assert_close(m_a, (a @ p.transpose(1, 2) / 2).softmax(-1))
    torch.testing.assert_close(m_p, (p @ a.transpose(1, 2) / 2).softmax(-1))


@pytest.mark.parametrize("fn, n", [(csa.csa_d, 2), (csa.csa_s, 3), (csa.sdpa, 1)])
def test_wrong_number_of_images_is_an_error(fn, n):
    with pytest.raises(ValueError, match="takes"):
        fn([torch.randn(1, 3, 2)] * n)


def test_sd_needs_four_images():
    with pytest.raises(ValueError, match="'sd' takes 4 images, got 2"):
        csa.csa_sd([torch.randn(1, 3, 2)] * 2, torch.tensor(1.0))
