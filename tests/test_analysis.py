"""Analysis: base-branch embeddings and their scores, t-SNE, Grad-CAM, CSA maps, and mask energy shares."""
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import stats
from threadpoolctl import threadpool_limits

from qcslib import QCSConfig, QCSNet
from qcslib.analysis import cam, embedding
from qcslib.analysis import (csa_maps, embedding_scores, extract_features, gradcam, mask_energy_share,
                             mask_energy_shares, read_masks, token_grid, tsne_2d)
from qcslib.data.sources import load_split, read_image
from qcslib.data.synthfer import SynthFERSettings, generate
from qcslib.data.transforms import build_transforms
from qcslib.train.evaluation import predict


def tiny(variant="qcs", **kw):
    torch.manual_seed(0)
    return QCSNet(QCSConfig.sized("tiny", variant=variant, **kw))


def batches(n, batch=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, 64, 64, generator=g) for _ in range(n)]


@pytest.fixture(scope="module")
def synthfer(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("analysis") / "synthfer",
                    SynthFERSettings(size=48, train_identities=2, val_identities=1, test_identities=1, images_per_identity=14), workers=1)
    return load_split("synthfer", root, "test")


# ------------------------------------------------------------------------------------------------------- embeddings

def test_features_are_what_the_base_head_reads(synthfer):
    model = tiny().train()
    features = extract_features(model, synthfer, 64, batch_size=5)
    assert features.shape == (len(synthfer), 64) and features.dtype == np.float32
    with torch.no_grad():
        probabilities = model.base.encoder.head(torch.from_numpy(features)).softmax(1).numpy()
    np.testing.assert_allclose(probabilities, predict(model, synthfer, 64, progress=False), rtol=1e-5, atol=1e-6)
    assert model.training


def test_tsne_is_2d_seeded_and_works_for_few_points():
    features = np.random.default_rng(0).normal(size=(40, 8))
    with threadpool_limits(1, "openmp"):  # t-SNE's OpenMP threads crawl on a busy 2-core machine
        points = tsne_2d(features, seed=3)
        assert points.shape == (40, 2) and np.isfinite(points).all()
        np.testing.assert_array_equal(points, tsne_2d(features, seed=3))
        assert tsne_2d(features[:4]).shape == (4, 2)  # perplexity 30 clipped to 1
    with pytest.raises(ValueError, match="N >= 3"):
        tsne_2d(features[:2])


def test_embedding_scores_high_for_separate_clusters_and_chance_for_random_labels():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 100)
    centres = 8 * np.eye(3, 4)  # three unit blobs 8 apart, one noise dimension
    train, test = (rng.normal(size=(300, 4)) + centres[labels] for _ in range(2))
    scores = embedding_scores(train, labels, test, labels)
    assert scores["silhouette"] > 0.5 and scores["knn_accuracy"] == 1.0
    assert scores["k"] == 5 and isinstance(scores["silhouette"], float)

    shuffled = rng.permutation(labels)
    random = embedding_scores(train, shuffled, test, shuffled)
    assert abs(random["silhouette"]) < 0.05
    assert abs(random["knn_accuracy"] - 1 / 3) < 0.08


def test_the_knn_votes_among_train_images_not_among_the_other_test_images():
    """Train's labels sit on the wrong clusters: a vote of train neighbours is always wrong, however well the test
    images cluster among themselves (a vote cross-validated among the test images would score 1.0)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 50)
    train, test = (rng.normal(size=(150, 4)) + 8 * np.eye(3, 4)[labels] for _ in range(2))
    right = embedding_scores(train, labels, test, labels)
    wrong = embedding_scores(train, (labels + 1) % 3, test, labels)
    assert (right["knn_accuracy"], wrong["knn_accuracy"]) == (1.0, 0.0)
    assert wrong["silhouette"] == right["silhouette"]  # the silhouette is the test features' own


def test_embedding_scores_clip_k_and_need_two_test_classes():
    rng = np.random.default_rng(0)
    scores = embedding_scores(rng.normal(size=(4, 4)), np.array([0, 0, 1, 1]), rng.normal(size=(5, 4)),
                              np.array([0, 0, 1, 1, 1]), k=5)
    assert scores["k"] == 4  # only 4 train images to vote
    with pytest.raises(ValueError, match="2 to N − 1 classes among the N test images"):
        embedding_scores(rng.normal(size=(4, 4)), np.array([0, 0, 1, 1]), rng.normal(size=(5, 4)), np.ones(5))


def test_embedding_comparisons_pair_qcs_with_each_baseline_over_seeds_under_holm():
    """k-NN accuracy, QCS − baseline_matched = +0.10, +0.12, +0.08 over seeds 0-2; silhouette − 0.01, 0, +0.01."""
    scores = pd.DataFrame({"variant": ["qcs"] * 3 + ["baseline_matched"] * 3, "seed": [0, 1, 2] * 2,
                           "knn_accuracy": [0.7, 0.72, 0.68, 0.6, 0.6, 0.6], "silhouette": [0.2, 0.2, 0.21, 0.21, 0.2, 0.2],
                           "k": 5})
    compared = embedding.comparisons(scores).set_index("comparison")
    assert list(compared.index) == ["qcs − baseline_matched (knn_accuracy)", "qcs − baseline_matched (silhouette)"]
    knn = compared.loc["qcs − baseline_matched (knn_accuracy)"]
    test = stats.ttest_1samp([0.1, 0.12, 0.08], 0)
    assert knn["mean_diff"] == pytest.approx(0.1) and knn["p_value"] == pytest.approx(test.pvalue)
    assert knn["family"] == 2 and knn["p_holm"] >= knn["p_value"]
    assert knn["verdict"].startswith("qcs is ahead of baseline_matched by 10.00 points (95 % interval, unadjusted")
    assert "no detectable difference" in compared.loc["qcs − baseline_matched (silhouette)", "verdict"]
    summary = embedding.score_summary(scores)
    assert summary.loc["qcs"].tolist() == ["0.203 ± 0.006", "70.0 ± 2.0", 3]


# --------------------------------------------------------------------------------------------------------- Grad-CAM

def test_token_grid_undoes_the_pyramid_flattening():
    grids = [torch.randn(2, 5, 4, 4) for _ in range(3)]  # three scales as PyramidTokens makes them, D = 5
    tokens = torch.cat([torch.randn(2, 1, 5)] + [g.flatten(2).transpose(1, 2) for g in grids], dim=1)
    torch.testing.assert_close(token_grid(tokens), torch.cat(grids, dim=1), rtol=0, atol=0)
    with pytest.raises(ValueError, match="1 \\+ 3n"):
        token_grid(tokens[:, :-1])


def test_gradcam_maps_are_in_unit_range_at_input_size_and_follow_the_target():
    model = tiny().train()
    images = batches(1)[0]
    cams = gradcam(model, images, targets=[0, 0, 0])
    assert cams.shape == (3, 64, 64) and cams.dtype == np.float32
    assert cams.min() >= 0 and np.allclose(cams.max(axis=(1, 2)), 1, atol=1e-5)
    assert np.abs(cams - gradcam(model, images, targets=[3, 3, 3])).max() > 0.1
    with torch.no_grad():
        predicted = model(images).argmax(1).tolist()
    np.testing.assert_array_equal(gradcam(model, images), gradcam(model.base, images, predicted))
    assert model.training and all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="class indices"):
        gradcam(model, images, targets=[0, 0, 7])


# ------------------------------------------------------------------------------------------------------- CSA maps

def test_csa_maps_are_the_gates_the_cross_module_applies():
    model = tiny().eval()
    images = batches(4)
    maps = csa_maps(model, images)
    assert len(maps) == 3 and all(len(m) == 4 for m in maps)
    assert all(a.shape == (3, 4, 4) and a.min() >= 0 for m in maps for a in m)
    np.testing.assert_allclose(np.stack([a.sum(axis=(1, 2)) for m in maps for a in m]), 1, rtol=1e-5)
    with torch.no_grad():
        tokens = [model.forward_features(x)[:, 1:].chunk(3, dim=1) for x in images]
        for s, m in enumerate(model.cross):
            branch = [t[s] for t in tokens]
            h = [m.norm1(t) for t in branch]
            for x, a, out in zip(h, maps[s], m(branch)):  # the module's forward with our maps as its gates
                v = m.proj(x).chunk(2, dim=-1)[1]
                z = m.norm2(x + torch.from_numpy(a).flatten(1).unsqueeze(-1) * v)
                torch.testing.assert_close(out, z + m.mlp(z), rtol=1e-4, atol=1e-5)


def test_csa_maps_follow_the_variant():
    assert [len(m) for m in csa_maps(tiny("dcs"), batches(2))] == [2, 2, 2]
    with pytest.raises(ValueError, match="no cross module"):
        csa_maps(tiny("baseline"), batches(1))
    with pytest.raises(ValueError, match="no gate per token"):
        csa_maps(tiny(csa="sdpa"), batches(4))
    with pytest.raises(ValueError, match="takes 4 image batches"):
        csa_maps(tiny(), batches(2))


# ------------------------------------------------------------------------------------------------- mask energy share

def test_the_token_grid_side_and_whether_it_can_resolve_a_mask():
    assert cam.grid_side(tiny()) == 4  # 64-px backbone input / 16
    assert cam.grid_side(QCSNet(QCSConfig.sized("paper"))) == 7  # 224 px
    assert cam.resolves(7, 0.10) and not cam.resolves(2, 0.10)  # a cell: 2 % against 25 % of the image
    assert not cam.resolves(2, 0.25)  # a cell exactly the mask's size cannot single it out


def test_mask_energy_share_by_hand():
    left = np.zeros((4, 4), dtype=np.uint8)
    left[:, :2] = 255
    assert mask_energy_share(np.ones((4, 4)), left) == 0.5
    assert mask_energy_share(np.where(left > 0, 0.3, 0.0), left > 0) == 1.0  # a boolean mask too
    cam = np.arange(16.0).reshape(4, 4)
    assert mask_energy_share(cam, left) == pytest.approx((0 + 1 + 4 + 5 + 8 + 9 + 12 + 13) / 120)
    big = Image.fromarray(left).resize((8, 8), Image.NEAREST)  # another size: resized to the map's
    assert mask_energy_share(cam, big) == mask_energy_share(cam, left)
    assert np.isnan(mask_energy_share(np.zeros((4, 4)), left))
    with pytest.raises(ValueError, match="non-negative"):
        mask_energy_share(-np.ones((4, 4)), left)
    np.testing.assert_allclose(mask_energy_shares(np.stack([np.ones((4, 4)), np.where(left > 0, 1.0, 0.0)]),
                                                  [left, left]), [0.5, 1.0])


def test_synthfer_masks_align_with_their_images_and_score_gradcam(synthfer):
    masks = read_masks(synthfer)
    assert len(masks) == len(synthfer)
    for i, mask in enumerate(masks):
        assert mask.mode == "L" and mask.size == read_image(synthfer, i).size
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
    painted = [np.argwhere(np.asarray(m) > 0) for m in masks]
    assert sum(len(p) > 0 for p in painted) >= len(masks) - 2  # neutral faces may have no AU above threshold
    for p in painted:  # the expression areas lie on the face, near the middle of the image (48 px)
        if len(p):
            assert np.all(np.abs(p.mean(axis=0) - 24) < 12)

    transform = build_transforms("rafdb", 64, train=False)  # 48 → 64 px; the masks are resized to match
    images = torch.stack([transform(read_image(synthfer, i)) for i in range(4)])
    shares = mask_energy_shares(gradcam(tiny(), images), masks[:4])
    assert shares.shape == (4,) and np.isfinite(shares).all()
    # an even map's share is the mask's area once resized (nearest) to the 64-px map
    areas = [(np.asarray(m.resize((64, 64), Image.NEAREST)) > 0).mean() for m in masks[:4]]
    assert mask_energy_shares(np.ones((4, 64, 64)), masks[:4]) == pytest.approx(areas)


def test_the_split_helpers_batch_each_model_at_its_own_size(synthfer):
    from dataclasses import replace

    models = {"baseline": tiny("baseline").eval(), "qcs": tiny().eval()}
    first = synthfer.subset([0, 1, 2])
    transform = build_transforms("rafdb", 64, train=False)
    torch.testing.assert_close(cam.image_batch(first, [2, 0], 64), torch.stack([transform(read_image(first, i))
                                                                                for i in (2, 0)]))
    cams = cam.gradcams(models, synthfer, batch_size=5)  # 14 images in 3 batches, as in one
    assert {k: v.shape for k, v in cams.items()} == {"baseline": (14, 64, 64), "qcs": (14, 64, 64)}
    np.testing.assert_allclose(cams["qcs"][:3], gradcam(models["qcs"], cam.image_batch(first, [0, 1, 2], 64)),
                               atol=1e-5)
    features = embedding.features_by_model(models, synthfer)
    np.testing.assert_array_equal(features["qcs"], extract_features(models["qcs"], synthfer, 64))
    scores = embedding.scores_by_model(features, synthfer.labels, features, synthfer.labels)
    assert list(scores.index) == ["baseline", "qcs"] and list(scores.columns) == ["silhouette", "knn_accuracy", "k"]
    with threadpool_limits(1, "openmp"):
        assert embedding.tsne_by_model(features)["qcs"].shape == (14, 2)
    quad = [0, 1, 2, 3]
    maps = cam.quadruplet_csa_maps(models["qcs"], synthfer, quad)
    expected = csa_maps(models["qcs"], [cam.image_batch(synthfer, [i], 64) for i in quad])
    assert all(np.array_equal(m, e) for ms, es in zip(maps, expected) for m, e in zip(ms, es))

    table = cam.localisation(models, synthfer)
    assert list(table.index) == ["baseline", "qcs", "even spread"]
    assert list(table.columns) == ["mean %", "std %", "images", "zero maps"]
    areas = [np.asarray(m.resize((64, 64), 0)).astype(bool).mean() for m in read_masks(synthfer)]
    defined = np.all([c.reshape(len(c), -1).sum(1) > 0 for c in cams.values()], axis=0)  # scored on these only
    assert table["images"].tolist() == [defined.sum()] * 3 and table.loc["even spread", "zero maps"] == 0
    assert table["zero maps"].tolist()[:2] == [int((c.reshape(len(c), -1).sum(1) == 0).sum()) for c in cams.values()]
    assert table.loc["even spread", "mean %"] == pytest.approx(100 * np.mean(np.array(areas)[defined]), abs=0.01)
    assert cam.localisation(models, replace(synthfer, dataset="list")) is None


# ------------------------------------------------------------------------------------------------------- the ceiling

def test_the_au_oracle_reads_the_expressions_from_the_true_action_units(tmp_path):
    from qcslib.analysis import au_oracle
    root = generate(tmp_path / "s", SynthFERSettings(size=32, train_identities=6, val_identities=1, test_identities=3,
                                                      images_per_identity=21, label_noise=0.0), workers=1)
    oracle = au_oracle(root / "meta.csv")
    assert (oracle["n_train"], oracle["n_test"], oracle["features"]) == (126, 63, 14)
    assert oracle["test_accuracy"] > 0.8  # chance is 1/7: the AUs carry the expression
    (tmp_path / "other.csv").write_text("path,split,label\na.png,train,0\n")
    with pytest.raises(ValueError, match="no AU intensity columns"):
        au_oracle(tmp_path / "other.csv")


# --------------------------------------------------------------------------------------------------------- explorer

def test_the_explorer_redraws_the_image_its_widgets_pick(synthfer):
    import matplotlib.pyplot as plt

    from qcslib.analysis.explorer import CamExplorer

    models = {"baseline": tiny("baseline").eval(), "qcs": tiny().train()}
    explorer = CamExplorer(models, synthfer)
    assert sorted(i for m in explorer.members.values() for i in m) == list(range(len(synthfer)))
    box = explorer.widget()  # draws the first image of the first class
    classes, image = box.children[0].children
    first, second = list(explorer.members)[:2]
    assert explorer.shown == explorer.members[first][0]
    image.value = 1
    assert explorer.shown == explorer.members[first][1]
    classes.value = second  # back to the new class's first image, the slider spanning its images
    assert explorer.shown == explorer.members[second][0] and image.value == 0
    assert image.max == len(explorer.members[second]) - 1
    image.value = image.max
    assert explorer.shown == explorer.members[second][-1]

    probabilities = cam.probabilities(models, synthfer.subset([3, 5]))
    assert models["qcs"].training  # the mode is restored
    for p in probabilities.values():
        assert p.shape == (2, len(synthfer.classes))
        np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    with torch.inference_mode():
        logits = models["baseline"](cam.image_batch(synthfer.subset([3, 5]), [0, 1], 64))
    np.testing.assert_allclose(probabilities["baseline"], logits.softmax(1).numpy(), atol=1e-6)

    fig = explorer.view(synthfer.subset([3, 5]))  # the report's view: one row per image, its CAMs titled with the predictions
    titles = [[ax.get_title() for ax in row] for row in np.reshape(fig.axes, (2, 4))]
    qcs = cam.probabilities({"qcs": models["qcs"]}, synthfer.subset([3, 5]))["qcs"]
    for row, i, p in zip(titles, (3, 5), qcs):
        assert row[0] == synthfer.classes[synthfer.labels[i]]
        assert row[2] == f"qcs: {synthfer.classes[p.argmax()]} {100 * p.max():.0f} %"
    plt.close("all")
    with pytest.raises(ValueError, match="at least one model and one image"):
        CamExplorer({}, synthfer)
