"""Cross-dataset evaluation: a model's classes matched to a split's by name (`class_mapping`), scored on the shared
classes only, with the dropped classes and their images reported; checkpoints of one dataset evaluated on fixtures of
another, written here in the official layouts, through the Python API, the CLI and notebook 03's helpers."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from qcslib import QCSConfig, QCSNet, save_checkpoint
from qcslib.__main__ import main
from qcslib.analysis import tables
from qcslib.analysis.metrics import classification_metrics
from qcslib.data.sources import (AFFECTNET_CLASSES, FERPLUS_CLASSES, RAFDB_CLASSES, checkpoint_classes, class_mapping,
                                 load_split, read_image)
from qcslib.data.transforms import build_transforms
from qcslib.models.weights import CheckpointError, LoadReport
from qcslib.notebook import NotebookParameters, evaluate as notebook_evaluate
from qcslib.train import ConfigError, load_profile, score
from qcslib.train.evaluation import checkpoint_mapping, evaluate_checkpoint, scored_text
from tests.official_reference import random_official_state_dict, write_official_checkpoint
from tests.test_sources import (AFFECTNET_HEADER, FER_HEADER, NEW_HEADER, affectnet_row, write_csv, write_lines)

AFFECTNET7 = AFFECTNET_CLASSES[:7]

# ------------------------------------------------------------------------------------------------ fixture writers


def noise_image(path, rng, size=(40, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=95)


@pytest.fixture(scope="module")
def rafdb(tmp_path_factory):
    """RAF-DB basic, test split: 2 images of each of the 7 classes (labels 1..7)."""
    root = tmp_path_factory.mktemp("rafdb") / "basic"
    rng = np.random.default_rng(0)
    names = [(f"test_{i + 1:04d}.jpg", 1 + i % 7) for i in range(14)] + [("train_00001.jpg", 1)]
    write_lines(root / "EmoLabel" / "list_patition_label.txt", [f"{n} {k}" for n, k in names])
    for n, _ in names:
        noise_image(root / "Image" / "aligned" / n.replace(".jpg", "_aligned.jpg"), rng)
    return root


# FERPlus test (PrivateTest) vote rows; columns neutral, happiness, surprise, sadness, anger, disgust, fear, contempt,
# unknown, NF. Majorities: neutral ×2, happy ×2, surprise, sad, anger, disgust, fear, contempt ×2, and one unknown.
FERPLUS_TEST_VOTES = [[10, 0, 0, 0, 0, 0, 0, 0, 0, 0], [8, 2, 0, 0, 0, 0, 0, 0, 0, 0], [0, 9, 0, 0, 0, 0, 0, 0, 0, 1],
                      [0, 10, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 10, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 10, 0, 0, 0, 0, 0, 0],
                      [0, 0, 0, 0, 10, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 10, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 10, 0, 0, 0],
                      [0, 0, 0, 0, 0, 0, 0, 10, 0, 0], [2, 0, 0, 0, 0, 0, 0, 8, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 10, 0]]


@pytest.fixture(scope="module")
def ferplus(tmp_path_factory):
    """FERPlus in Microsoft's csv layout: one training row and the 12 test rows above (11 kept, 2 of them
    contempt)."""
    root = tmp_path_factory.mktemp("ferplus")
    rng = np.random.default_rng(1)
    rows = [("Training", [10, 0, 0, 0, 0, 0, 0, 0, 0, 0])] + [("PrivateTest", v) for v in FERPLUS_TEST_VOTES]
    pixels = [" ".join(map(str, rng.integers(0, 255, 2304))) for _ in rows]
    write_csv(root / "fer2013.csv", [[0, p, u] for p, (u, _) in zip(pixels, rows)], FER_HEADER)
    write_csv(root / "fer2013new.csv", [[u, f"fer{i:07d}.png", *v] for i, (u, v) in enumerate(rows)], NEW_HEADER)
    return root


@pytest.fixture(scope="module")
def affectnet(tmp_path_factory):
    """AffectNet's validation list (the test split here): 2 images of each of codes 0..7 (7 = contempt) and one of
    code 8 (None, which the protocol excludes); 40x40 images with a face box inside."""
    root = tmp_path_factory.mktemp("affectnet")
    rng = np.random.default_rng(2)
    rows = []
    for i, code in enumerate([*range(8), *range(8), 8]):
        name = f"{i % 3 + 1}/val{i}.jpg"
        noise_image(root / "Manually_Annotated_Images" / name, rng)
        rows.append(affectnet_row(name, code, box=(2, 3, 30, 32)))
    write_csv(root / "Manually_Annotated_file_lists" / "validation.csv", rows, AFFECTNET_HEADER)
    write_csv(root / "Manually_Annotated_file_lists" / "training.csv", rows[:1], AFFECTNET_HEADER)
    return root


def tiny_checkpoint(path, classes, dataset, transform, spread_on=None, seed=0, bias=None):
    """One of our checkpoints of a tiny QCS model with ``classes``, as trained on ``dataset`` with ``transform``.
    ``spread_on``: a split whose images' features the base head is made to read standardised (an untrained model
    would otherwise give every image about the same logits); ``bias``: {class: value} added to the head's bias."""
    torch.manual_seed(seed)
    model = QCSNet(QCSConfig.sized("tiny", num_classes=len(classes))).eval()
    head = model.base.encoder.head
    with torch.no_grad():
        if spread_on is not None:
            transform_ = build_transforms(transform, model.config.image_size, train=False)
            x = torch.stack([transform_(read_image(spread_on, i)) for i in range(len(spread_on))])
            features = model.base.forward_head(model.base.forward_features(x), pre_logits=True)
            mean, std = features.mean(0), features.std(0) + 1e-6
            head.weight.mul_(10 / std)                 # logits = W·(f − μ)/σ·10 + b
            head.bias.sub_(head.weight @ mean)
        for name, value in (bias or {}).items():
            head.bias[list(classes).index(name)] += value
    save_checkpoint(path, model, classes=list(classes), train_config={"dataset": dataset, "transform": transform})
    return model


def reference_predictions(model, split, model_classes, recipe):
    """The protocol restated: the base branch's logits on the test transform of every image of ``split`` whose
    class ``model_classes`` has, the argmax over the shared classes' columns → (true labels, predicted labels),
    both as positions in the split's classes that the model has."""
    shared = [c for c in split.classes if c in model_classes]
    keep = [i for i in range(len(split)) if split.classes[split.labels[i]] in shared]
    transform = build_transforms(recipe, model.config.image_size, train=False)
    with torch.no_grad():
        logits = model.base(torch.stack([transform(read_image(split, i)) for i in keep]))
    columns = [list(model_classes).index(c) for c in shared]
    truth = [shared.index(split.classes[split.labels[i]]) for i in keep]
    return np.array(truth), logits[:, columns].argmax(1).numpy(), shared


def one_line(error):
    assert "\n" not in str(error.value)
    return str(error.value)


# ------------------------------------------------------------------------------------------------- class_mapping

def test_class_mapping_matches_the_datasets_by_name_seven_and_eight_classes():
    # an AffectNet-8 model on AffectNet-7: the same order, contempt only the model's
    m = class_mapping(AFFECTNET_CLASSES, AFFECTNET7)
    assert m.shared == AFFECTNET7 and m.model_columns == m.data_labels == tuple(range(7))
    assert (m.dropped, m.model_only, m.identity) == ((), ("contempt",), False)
    # an AffectNet-8 model on RAF-DB: RAF-DB's order, each class found in the model's outputs by name
    m = class_mapping(AFFECTNET_CLASSES, RAFDB_CLASSES)
    assert m.shared == RAFDB_CLASSES and m.data_labels == tuple(range(7))
    assert [AFFECTNET_CLASSES[c] for c in m.model_columns] == list(RAFDB_CLASSES) and m.model_only == ("contempt",)
    # a 7-class (RAF-DB) model on AffectNet-8: contempt is dropped
    m = class_mapping(RAFDB_CLASSES, AFFECTNET_CLASSES)
    assert m.shared == AFFECTNET7 and m.dropped == ("contempt",) and m.model_only == ()
    assert [RAFDB_CLASSES[c] for c in m.model_columns] == list(AFFECTNET7)
    # FERPlus's vote-column spellings are the same classes ("happiness" is "happy"), in FERPlus's order
    spelled = ["Neutral", "Happiness", "Surprise", "Sadness", "Anger", "Disgust", "Fear", "Contempt"]
    m = class_mapping(spelled, AFFECTNET_CLASSES)
    assert m.shared == AFFECTNET_CLASSES and not m.dropped and not m.model_only and not m.identity
    assert m.model_columns == (0, 1, 3, 2, 6, 5, 4, 7)
    assert class_mapping(spelled, FERPLUS_CLASSES).identity and class_mapping(RAFDB_CLASSES, RAFDB_CLASSES).identity


def test_class_mapping_refuses_fewer_than_two_shared_classes_and_repeated_names():
    with pytest.raises(ValueError) as e:
        class_mapping(["happy", "pain", "joy"], RAFDB_CLASSES)
    assert "share 1 (happy); scoring needs at least 2 shared classes" in one_line(e)
    with pytest.raises(ValueError, match=r"share 0 \(none\)"):
        class_mapping(["pain", "joy"], ["awe", "shame"])
    assert class_mapping(["happy", "pain", "sad"], RAFDB_CLASSES).shared == ("happy", "sad")  # 2 is enough
    with pytest.raises(ValueError) as e:
        class_mapping(["happy", "Happiness", "sad"], RAFDB_CLASSES)
    assert "the model's classes (happy, Happiness, sad) name happy twice" in one_line(e)


# ----------------------------------------------------------------------------------------- which classes a model has

def official_report(n):
    return LoadReport("QCS_official.pth", [], meta={"variant": "qcs", "num_classes": n})


def test_checkpoint_classes_takes_the_stored_names_else_the_datasets_else_the_fallback():
    ours = LoadReport("ours.pt", [], meta={"num_classes": 7, "classes": list(RAFDB_CLASSES)})
    assert checkpoint_classes(ours, None) == list(RAFDB_CLASSES)  # stored names win
    assert checkpoint_classes(ours, "rafdb", list(AFFECTNET7)) == list(RAFDB_CLASSES)  # an agreeing dataset: fine
    with pytest.raises(CheckpointError) as e:  # a contradicting one: refused
        checkpoint_classes(ours, "affectnet7")
    assert one_line(e) == ("ours.pt: stores its classes (surprise, fear, disgust, happy, sad, anger, neutral), which "
                           "are not affectnet7's (neutral, happy, sad, surprise, fear, disgust, anger); "
                           "drop --classes/trained_on")
    with pytest.raises(CheckpointError, match=r"^odd.pt: has 3 classes, but stores 2 class names \(happy, sad\)$"):
        checkpoint_classes(LoadReport("odd.pt", [], meta={"num_classes": 3, "classes": ["happy", "sad"]}), None)
    assert checkpoint_classes(official_report(8), "ferplus", list(AFFECTNET7)) == list(FERPLUS_CLASSES)
    with pytest.raises(CheckpointError) as e:  # the dataset's count is not the checkpoint's
        checkpoint_classes(official_report(8), "affectnet7")
    assert one_line(e) == ("QCS_official.pth: has 8 classes, but --classes/trained_on affectnet7 names 7 "
                           "(neutral, happy, sad, surprise, fear, disgust, anger)")
    assert checkpoint_classes(official_report(7), None, ["happy", "sad"] * 3 + ["pain"])[-1] == "pain"  # fallback
    with pytest.raises(CheckpointError) as e:
        checkpoint_classes(official_report(8), None, list(AFFECTNET7))
    assert one_line(e).startswith("QCS_official.pth: has 8 classes and stores no class names, so it is taken to use "
                                  "the scored split's 7 (neutral, happy, sad, surprise, fear, disgust, anger); pass")
    with pytest.raises(CheckpointError) as e:  # nothing to go on: says what to pass
        checkpoint_classes(official_report(7), None)
    assert one_line(e) == ("QCS_official.pth: stores no class names (an official checkpoint); pass the dataset it "
                           "was trained on as --classes/trained_on rafdb|ferplus|affectnet7|affectnet8")
    for report in (ours, official_report(7)):  # an unknown dataset name: one line, stored names or not
        with pytest.raises(ValueError) as e:
            checkpoint_classes(report, "raf")
        assert one_line(e) == "--classes/trained_on must be one of rafdb, ferplus, affectnet7, affectnet8, got 'raf'"


def test_an_official_checkpoint_takes_trained_on_or_the_splits_order_and_a_count_mismatch_is_one_line(affectnet):
    seven = load_split("affectnet7", affectnet, "test")
    with pytest.raises(CheckpointError) as e:  # 8 classes, no names, a 7-class split: refused, saying what to pass
        checkpoint_mapping(official_report(8), seven)
    message = one_line(e)
    assert message.startswith("QCS_official.pth: has 8 classes and stores no class names")
    assert "the scored split's 7 (neutral, happy" in message and "pass the dataset it was trained on as " \
                                                                   "--classes/trained_on rafdb|" in message
    m = checkpoint_mapping(official_report(8), seven, trained_on="affectnet8")
    assert m.shared == AFFECTNET7 and m.model_only == ("contempt",)
    assert checkpoint_mapping(official_report(7), seven).identity  # same count: the split's own order
    with pytest.raises(CheckpointError, match=r"has 8 classes, but --classes/trained_on rafdb names 7"):
        checkpoint_mapping(official_report(8), seven, trained_on="rafdb")
    with pytest.raises(ValueError, match="must be one of rafdb, ferplus, affectnet7, affectnet8, got 'raf'"):
        checkpoint_mapping(official_report(8), seven, trained_on="raf")
    ours = LoadReport("ours.pt", [], meta={"num_classes": 7, "classes": list(RAFDB_CLASSES)})
    assert checkpoint_mapping(ours, seven).shared == AFFECTNET7  # stored names: mapped by name, no trained_on
    with pytest.raises(CheckpointError, match=r"ours.pt: stores its classes \(surprise, .*\), which are not "
                                              r"affectnet7's \(neutral, .*\); drop --classes/trained_on"):
        checkpoint_mapping(ours, seven, trained_on="affectnet7")
    with pytest.raises(CheckpointError) as e:
        checkpoint_mapping(LoadReport("odd.pt", [], meta={"num_classes": 2, "classes": ["happy", "pain"]}), seven)
    assert one_line(e).startswith("odd.pt on affectnet7/test: the model's classes (happy, pain)")


# ----------------------------------------------------------------------------------------------------- scoring

def test_an_affectnet8_checkpoint_on_rafdb_scores_every_image_and_never_predicts_contempt(tmp_path, rafdb):
    # contempt made the most probable class of every image: restricted to RAF-DB's classes, it is never predicted
    path = tmp_path / "affectnet8.pt"
    model = tiny_checkpoint(path, AFFECTNET_CLASSES, "affectnet8", "affectnet", load_split("rafdb", rafdb, "test"),
                            bias={"contempt": 200.0})
    result = evaluate_checkpoint(path, "rafdb", rafdb, "test", batch_size=4, device="cpu")
    assert result["classes"] == list(RAFDB_CLASSES) and result["model_only"] == ["contempt"]
    assert result["dropped"] == {} and result["scored"] == "14 of 14 images" and result["trained_on"] == "affectnet8"
    truth, predicted, shared = reference_predictions(model, load_split("rafdb", rafdb, "test"), AFFECTNET_CLASSES,
                                                     "affectnet")
    assert len(set(predicted)) > 1  # the comparison below is not one class for all
    expected = classification_metrics(truth, predicted, shared)
    assert {k: result[k] for k in expected} == expected
    assert list(result["per_class"]) == list(RAFDB_CLASSES) and len(result["confusion"]) == 7
    # the probabilities are the softmax over the shared classes: finite and summing to 1 despite contempt's logit
    scores = score(model, load_split("rafdb", rafdb, "test"), class_mapping(AFFECTNET_CLASSES, RAFDB_CLASSES),
                   recipe="affectnet", progress=False)
    assert scores.probabilities.shape == (14, 7) and np.allclose(scores.probabilities.sum(1), 1)
    with pytest.raises(ConfigError, match="the model has 8 classes, the mapping names 7"):
        score(model, load_split("rafdb", rafdb, "test"), class_mapping(RAFDB_CLASSES, RAFDB_CLASSES))


def test_a_rafdb_checkpoint_on_ferplus_drops_contempt_counts_its_images_and_remaps_the_order(tmp_path, ferplus):
    path = tmp_path / "rafdb.pt"
    model = tiny_checkpoint(path, RAFDB_CLASSES, "rafdb", "rafdb", load_split("ferplus", ferplus, "test"), seed=1)
    result = evaluate_checkpoint(path, "ferplus", ferplus, "test", batch_size=4, device="cpu")
    assert result["classes"] == list(FERPLUS_CLASSES[:7]) and result["dropped"] == {"contempt": 2}
    assert result["model_only"] == [] and result["n"] == 9
    assert result["scored"] == "9 of 11 images; dropped the classes the model lacks: contempt (2 images)"
    truth, predicted, shared = reference_predictions(model, load_split("ferplus", ferplus, "test"), RAFDB_CLASSES,
                                                     "rafdb")
    assert len(set(predicted)) > 1
    expected = classification_metrics(truth, predicted, shared)
    assert {k: result[k] for k in expected} == expected
    # the scored split says what it left out, and the table lists every class of either side
    test = load_split("ferplus", ferplus, "test")
    scores = score(model, test, class_mapping(RAFDB_CLASSES, FERPLUS_CLASSES), recipe="rafdb", progress=False)
    assert scores.split.excluded == {**test.excluded, "class contempt: not a class of the model": 2}
    assert scores.split.counts() == {"neutral": 2, "happy": 2, "surprise": 1, "sad": 1, "anger": 1, "disgust": 1,
                                     "fear": 1}
    table = tables.class_mapping(scores)
    assert list(table.index) == list(FERPLUS_CLASSES)
    assert table.loc["happy"].tolist() == [3, 1, 2, "scored"]  # RAF-DB's output 3, FERPlus's label 1
    assert table.loc["contempt", "scoring"] == "dropped: the model lacks it" and table.loc["contempt", "images"] == 2
    assert scored_text(scores, skipped=1) == ("9 of 12 images (1 unreadable, not scored); dropped the classes the "
                                              "model lacks: contempt (2 images)")


def test_the_same_classes_in_another_order_give_the_same_predictions(tmp_path, rafdb):
    # model b is model a with its base head's rows put in AffectNet-7's order: scored by name, they agree
    test = load_split("rafdb", rafdb, "test")
    a = tiny_checkpoint(tmp_path / "a.pt", RAFDB_CLASSES, "rafdb", "rafdb", test, seed=2)
    order = [RAFDB_CLASSES.index(c) for c in AFFECTNET7]
    b = QCSNet(a.config).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        b.base.encoder.head.weight.copy_(a.base.encoder.head.weight[order])
        b.base.encoder.head.bias.copy_(a.base.encoder.head.bias[order])
    save_checkpoint(tmp_path / "b.pt", b, classes=list(AFFECTNET7), train_config={"dataset": "affectnet7",
                                                                                  "transform": "rafdb"})
    mine = score(a, test, progress=False)  # the model's own order: nothing mapped
    theirs = score(b, test, class_mapping(AFFECTNET7, RAFDB_CLASSES), progress=False)
    assert mine.mapping.identity and not theirs.mapping.identity and theirs.dropped == {}
    np.testing.assert_allclose(theirs.probabilities, mine.probabilities, rtol=1e-5, atol=1e-6)
    assert theirs.metrics == mine.metrics and len(set(mine.probabilities.argmax(1))) > 1  # not one class for all
    results = [evaluate_checkpoint(tmp_path / name, "rafdb", rafdb, "test", batch_size=4, device="cpu")
               for name in ("a.pt", "b.pt")]
    assert results[0]["confusion"] == results[1]["confusion"] == mine.metrics["confusion"]
    assert results[0]["classes"] == results[1]["classes"] == list(RAFDB_CLASSES)
    assert tables.class_mapping(mine) is None and tables.class_mapping(theirs).loc["surprise"].tolist() == \
        [3, 0, 2, "scored"]


def test_fewer_than_two_shared_classes_is_refused_in_one_line(tmp_path, rafdb):
    path = tmp_path / "odd.pt"
    tiny_checkpoint(path, ["happy", "pain", "joy"], "list", "rafdb")
    with pytest.raises(CheckpointError) as e:
        evaluate_checkpoint(path, "rafdb", rafdb, "test", device="cpu")
    assert f"{path} on rafdb/test: the model's classes (happy, pain, joy)" in one_line(e)
    assert "share 1 (happy); scoring needs at least 2 shared classes" in str(e.value)


def test_an_official_8_class_checkpoint_on_affectnet7_needs_trained_on(tmp_path, affectnet):
    path = tmp_path / "QCS_affectnet8.pth"
    write_official_checkpoint(path, random_official_state_dict("qcs", 8, seed=4))
    with pytest.raises(CheckpointError) as e:
        evaluate_checkpoint(path, "affectnet7", affectnet, "test", device="cpu")
    assert one_line(e).startswith(f"{path}: has 8 classes and stores no class names")
    result = evaluate_checkpoint(path, "affectnet7", affectnet, "test", batch_size=8, device="cpu",
                                 trained_on="affectnet8")
    assert result["classes"] == list(AFFECTNET7) and result["model_only"] == ["contempt"] and result["dropped"] == {}
    assert result["n"] == 14 and result["trained_on"] == "affectnet8" and len(result["confusion"]) == 7


def test_the_evaluate_command_maps_classes_and_reports_what_it_dropped(tmp_path, affectnet, capsys):
    path = tmp_path / "affectnet7.pt"
    tiny_checkpoint(path, AFFECTNET7, "affectnet7", "affectnet")
    cmd = ["evaluate", "--checkpoint", str(path), "--dataset", "affectnet8", "--root", str(affectnet), "--device", "cpu"]
    assert main(cmd) == 0  # in this process; test_train runs the command end to end
    result = json.loads(capsys.readouterr().out)
    assert result["dropped"] == {"contempt": 2} and result["classes"] == list(AFFECTNET7) and result["n"] == 14
    assert result["scored"] == "14 of 16 images; dropped the classes the model lacks: contempt (2 images)"
    assert main(cmd + ["--trained-on", "rafdb"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "stores its classes (neutral, happy" in err and "drop --classes/trained_on" in err


# --------------------------------------------------------------------------------------------------- notebook 03

def test_notebook_03_scores_a_checkpoint_on_another_dataset(tmp_path, rafdb, affectnet):
    path = tmp_path / "affectnet8.pt"
    tiny_checkpoint(path, AFFECTNET_CLASSES, "affectnet8", "affectnet")
    config = load_profile("smoke", [f"runs_dir={tmp_path}", "device=cpu"])
    report, scores = notebook_evaluate(config, NotebookParameters(eval_dataset="rafdb", eval_root=str(rafdb)), path)
    assert report.meta["classes"] == list(AFFECTNET_CLASSES)
    assert (scores.split.dataset, scores.split.split, scores.trained_on) == ("rafdb", "test", "affectnet8")
    assert scores.mapping.model_only == ("contempt",) and scores.metrics["n"] == 14
    # its headline leaves the paper's RAF-DB number out: the model was trained on AffectNet-8
    assert "paper (QCS, reported)" not in tables.headline(scores.metrics, "rafdb", scores.trained_on)
    assert "paper (QCS, reported)" in tables.headline(scores.metrics, "rafdb", "rafdb")
    _, own = notebook_evaluate(config, NotebookParameters(eval_dataset="affectnet8", eval_root=str(affectnet)), path)
    assert own.mapping.identity and own.metrics["n"] == 16 and tables.class_mapping(own) is None
