"""data-report against the published counts, and dataset manifests: fixtures in the official layouts, written here,
get the deviations (and likely causes) worked out by hand; a manifest verifies its own copy and finds every changed,
missing and extra file; a bad manifest is a one-line error."""
import hashlib
import json

import numpy as np
import pytest

from qcslib.__main__ import main
from qcslib.data.manifest import (ManifestError, hash_items, hash_splits, item_ids, read_manifest,
                                  verify_manifest, write_manifest)
from qcslib.data.published import PUBLISHED, Published, published_counts
from qcslib.data.report import count_deviations, data_report, duplicate_groups, expected_counts
from qcslib.data.sources import (AFFECTNET_CLASSES, DATASET_CLASSES, RAFDB_CLASSES, available_splits, hold_out,
                                 load_split, verify_images)
from tests import test_sources
from tests.test_sources import one_line_error, write_image, write_lines

# The official-layout fixtures of test_sources, shared.
affectnet, ferplus_csv, ferplus_folders = test_sources.affectnet, test_sources.ferplus_csv, test_sources.ferplus_folders

# RAF-DB labels 1..7 = surprise, fear, disgust, happy, sad, anger, neutral. No fear (2) in train.
RAFDB_NAMES = {"train_00001.jpg": 1, "train_00002.jpg": 3, "train_00003.jpg": 4, "train_00004.jpg": 4,
               "train_00005.jpg": 5, "train_00006.jpg": 6, "train_00007.jpg": 7, "test_0001.jpg": 2,
               "test_0002.jpg": 7}
RAFDB_TRAIN = {"surprise": 1, "fear": 0, "disgust": 1, "happy": 2, "sad": 1, "anger": 1, "neutral": 1}


def small(counts, unit="images"):
    return Published(dict(counts), sum(counts.values()), unit, "a test table")


@pytest.fixture
def rafdb(tmp_path):
    """RAF-DB basic in its official layout, each image a different colour (so that none is a duplicate)."""
    root = tmp_path / "basic"
    write_lines(root / "EmoLabel" / "list_patition_label.txt", [f"{n} {k}" for n, k in RAFDB_NAMES.items()])
    for i, name in enumerate(RAFDB_NAMES):
        write_image(root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg"), color=(20 * i, 7, 200))
    return root


def aligned(root, name):
    return root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg")


def digests_of(split, workers=1):
    return dict(zip(item_ids(split), (digest for digest, _ in hash_items(split, workers))))


# ------------------------------------------------------------------------------------------ the published tables

def test_published_tables_add_up_to_the_published_totals():
    for (dataset, split), table in PUBLISHED.items():
        if table.counts is not None:
            assert list(table.counts) == list(DATASET_CLASSES[dataset]), (dataset, split)
            assert sum(table.counts.values()) == table.total
        assert table.source
    assert published_counts("rafdb", "train").total == 12271 and published_counts("rafdb", "test").total == 3068
    assert published_counts("rafdb", "train").counts["happy"] == 4772
    assert published_counts("affectnet7", "train").total == 283901
    assert published_counts("affectnet8", "train").total == 287651
    assert published_counts("affectnet8", "train").counts["contempt"] == 3750
    for dataset, classes in (("affectnet7", 7), ("affectnet8", 8)):
        val = published_counts(dataset, "test")
        assert set(val.counts.values()) == {500} and val.total == 500 * classes
    assert [published_counts("ferplus", s).total for s in ("train", "val", "test")] == [28709, 3589, 3589]
    assert published_counts("ferplus", "train").counts is None
    assert published_counts("synthfer", "train") is None and published_counts("rafdb", "val") is None
    with pytest.raises(ValueError, match="sum to 3, not to their total 4"):
        Published({"happy": 3}, 4, "images", "x")


# -------------------------------------------------------------------------------------------- count_deviations

def test_a_rafdb_copy_without_a_class_gets_a_missing_class_deviation(rafdb):
    split = verify_images(load_split("rafdb", rafdb, "train"))
    assert split.counts() == RAFDB_TRAIN
    assert count_deviations(split, small({**RAFDB_TRAIN, "fear": 1})) == [
        {"class": "fear", "expected": 1, "found": 0, "difference": -1,
         "likely_cause": "missing class: no image of this class is listed (a class left out of the label file, or "
                         "another label map)"}]
    assert count_deviations(split, small(RAFDB_TRAIN)) == []
    three = count_deviations(split, small({**RAFDB_TRAIN, "happy": 5}))
    assert [(d["class"], d["difference"]) for d in three] == [("happy", -3)]
    assert three[0]["likely_cause"].startswith("missing files: 3 fewer images listed than published")
    assert count_deviations(split, small({**RAFDB_TRAIN, "happy": 1}))[0]["likely_cause"].startswith(
        "1 more images than published")


def test_the_real_rafdb_table_is_what_data_report_compares_with(rafdb):
    report = data_report(verify_images(load_split("rafdb", rafdb, "test")))
    assert report["expected"]["total"] == 3068 and report["expected"]["counts"]["fear"] == 74
    by_class = {d["class"]: d for d in report["deviations"]}
    assert list(by_class) == list(RAFDB_CLASSES)  # a 2-image copy is short in every class
    assert by_class["fear"]["found"] == 1 and by_class["fear"]["difference"] == 1 - 74
    assert sum(d["found"] for d in report["deviations"]) == 2 and report["duplicates"] is None


def test_unreadable_files_are_the_likely_cause_of_a_shortfall_in_their_class(rafdb):
    aligned(rafdb, "train_00003.jpg").write_bytes(b"\xff\xd8\xff")  # a happy image, now corrupt
    aligned(rafdb, "train_00005.jpg").unlink()  # the sad image, gone
    with pytest.warns(UserWarning, match="skipped 2 of 7"):
        split = verify_images(load_split("rafdb", rafdb, "train"))
    assert [(s["class"], s["reason"]) for s in split.skipped][1] == ("sad", "file not found")
    causes = {d["class"]: d["likely_cause"] for d in count_deviations(split, small({**RAFDB_TRAIN, "happy": 3}))}
    assert causes == {"happy": "missing files: 1 image(s) of this class cannot be read (see skipped); 1 more are not "
                               "listed",
                      "sad": "missing files: 1 image(s) of this class cannot be read (see skipped)"}


def test_contempt_present_or_absent_is_named_as_the_cause(affectnet):
    seven = {c: 1 for c in AFFECTNET_CLASSES[:7]}
    eight = load_split("affectnet8", affectnet, "train")  # codes 0, 1, 6, 7, 7, 3 kept: two contempt
    table = small({**seven, "sad": 0, "fear": 0, "disgust": 0})
    present = count_deviations(eight, table)
    assert [(d["class"], d["expected"], d["found"]) for d in present] == [("contempt", 0, 2)]
    assert present[0]["likely_cause"].startswith("contempt present: 2 contempt images where the published split has "
                                                 "7 classes")
    seven_split = load_split("affectnet7", affectnet, "train")  # contempt excluded, as AffectNet-7 does
    absent = count_deviations(seven_split, small({**table.counts, "contempt": 2}))
    assert [(d["class"], d["expected"], d["found"]) for d in absent] == [("contempt", 2, 0)]
    assert absent[0]["likely_cause"].startswith("contempt absent: the published split has 2 contempt images")


def test_duplicated_content_is_found_by_hash_and_named_as_the_cause(rafdb):
    aligned(rafdb, "train_00004.jpg").write_bytes(aligned(rafdb, "train_00003.jpg").read_bytes())  # happy twice
    split = verify_images(load_split("rafdb", rafdb, "train"))
    digests = digests_of(split)
    assert duplicate_groups(item_ids(split), digests) == [["Image/aligned/train_00003_aligned.jpg",
                                                           "Image/aligned/train_00004_aligned.jpg"]]
    report = data_report(split, digests, expected=small({**RAFDB_TRAIN, "happy": 1}))
    assert report["duplicates"] == [["Image/aligned/train_00003_aligned.jpg", "Image/aligned/train_00004_aligned.jpg"]]
    assert report["deviations"] == [{"class": "happy", "expected": 1, "found": 2, "difference": 1,
                                     "likely_cause": "duplicates: 1 image(s) of this class repeat another image's "
                                                     "content (see duplicates)"}]
    assert data_report(split, digests)["duplicates"] == report["duplicates"]  # also against the real table


def test_a_held_out_val_part_is_named_as_the_cause(rafdb):
    write_lines(rafdb / "EmoLabel" / "list_patition_label.txt",
                [f"train_{i:05d}.jpg {1 + i % 2}" for i in range(1, 9)])
    for i in range(1, 9):
        write_image(aligned(rafdb, f"train_{i:05d}.jpg"), color=(i, 0, 0))
    train, _ = hold_out(load_split("rafdb", rafdb, "train"), 0.5, seed=0)
    deviations = count_deviations(train, small({**{c: 0 for c in RAFDB_CLASSES}, "surprise": 4, "fear": 4}))
    assert [d["found"] for d in deviations] == [2, 2]
    assert all(d["likely_cause"] == "held out: 4 images of this split went to a held-out val split (see excluded)"
               for d in deviations)


def test_ferplus_rows_are_compared_in_the_csv_layout_and_the_protocol_is_named(ferplus_csv, ferplus_folders):
    train = load_split("ferplus", ferplus_csv, "train")  # 10 Training rows: 4 kept, 6 excluded
    assert expected_counts(train) == published_counts("ferplus", "train")
    assert count_deviations(train, Published(None, 10, "rows", "x")) == []
    [rows] = count_deviations(train, published_counts("ferplus", "train"))
    assert (rows["class"], rows["expected"], rows["found"]) == (None, 28709, 10)
    assert rows["likely_cause"].startswith("28699 fewer fer2013.csv rows with this Usage")
    assert expected_counts(load_split("ferplus", ferplus_folders, "train")) is None  # rows without images not there
    table = small({"neutral": 2, "happy": 2, "surprise": 0, "sad": 0, "anger": 0, "disgust": 0, "fear": 0,
                   "contempt": 1})
    [happy] = count_deviations(train, table)  # kept: neutral 2, happy 1, contempt 1
    assert happy["class"] == "happy" and happy["likely_cause"] == (
        "FERPlus protocol difference: the majority rule here excluded 5 images (no class above 50% 3, unknown 1, "
        "NF 1); the published counts may come from another rule (ties kept, plurality, unknown kept)")


# ------------------------------------------------------------------------------------------------------ hashing

def test_hash_items_in_a_pool_equals_hashlib_in_this_process(rafdb):
    split = load_split("rafdb", rafdb, "train")
    aligned(rafdb, "train_00007.jpg").unlink()
    one, two = hash_items(split, 1), hash_items(split, 2)
    assert one == two and one[-1] == (None, "file not found")
    assert one[0] == (hashlib.sha256(split.paths[0].read_bytes()).hexdigest(), None)
    test = load_split("rafdb", rafdb, "test")
    assert hash_splits([split, test], 2) == [one, hash_items(test, 1)]  # one pool for both
    with pytest.raises(ValueError, match="at least 1, got 0"):
        hash_items(split, 0)


def test_ferplus_pixels_are_named_by_their_csv_line_and_hashed_as_bytes(ferplus_csv):
    split = load_split("ferplus", ferplus_csv, "train")
    assert item_ids(split) == ["fer2013.csv:2", "fer2013.csv:3", "fer2013.csv:9", "fer2013.csv:10"]
    assert hash_items(split)[0] == (hashlib.sha256(np.full((48, 48), 0, np.uint8).tobytes()).hexdigest(), None)
    assert item_ids(split.subset([2])) == ["fer2013.csv:9"]
    with pytest.raises(ValueError, match="names has 3"):
        type(split)(**{**split.__dict__, "names": split.names[:3]})


# ---------------------------------------------------------------------------------------------------- manifests

def manifest_of(root, dataset, path, splits=("train", "test")):
    loaded = [load_split(dataset, root, s) for s in splits]
    return write_manifest(path, loaded, [hash_items(s, 1) for s in loaded])


def test_a_manifest_verifies_its_own_copy(rafdb, tmp_path):
    manifest = manifest_of(rafdb, "rafdb", tmp_path / "m" / "rafdb.json")
    assert read_manifest(tmp_path / "m" / "rafdb.json") == manifest
    train = manifest["splits"]["train"]
    assert train["counts"] == RAFDB_TRAIN and train["total"] == 7 and train["unreadable"] == []
    assert train["files"][0] == {"path": "Image/aligned/train_00001_aligned.jpg", "label": "surprise",
                                 "sha256": hashlib.sha256(aligned(rafdb, "train_00001.jpg").read_bytes()).hexdigest()}
    result = verify_manifest(tmp_path / "m" / "rafdb.json", "rafdb", rafdb, workers=2)
    assert result["identical"] and result["splits"] == {
        "train": {"files": 7, "missing": [], "changed": [], "extra": []},
        "test": {"files": 2, "missing": [], "changed": [], "extra": []}}


def test_verify_finds_changed_missing_and_extra_files(rafdb, tmp_path):
    manifest_of(rafdb, "rafdb", tmp_path / "rafdb.json")
    label_file = rafdb / "EmoLabel" / "list_patition_label.txt"
    aligned(rafdb, "train_00001.jpg").write_bytes(b"other bytes")  # changed content
    aligned(rafdb, "train_00002.jpg").unlink()  # missing file
    lines = label_file.read_text().replace("train_00006.jpg 6", "train_00006.jpg 7")  # changed label
    label_file.write_text(lines.replace("train_00007.jpg 7\n", "") + "test_0003.jpg 1\n")  # one unlisted, one extra
    write_image(aligned(rafdb, "test_0003.jpg"), color=(1, 2, 3))
    result = verify_manifest(tmp_path / "rafdb.json", "rafdb", rafdb)
    assert not result["identical"]
    train, test = result["splits"]["train"], result["splits"]["test"]
    assert [(c["path"], c["differs"]) for c in train["changed"]] == [
        ("Image/aligned/train_00001_aligned.jpg", ["sha256"]), ("Image/aligned/train_00006_aligned.jpg", ["label"])]
    assert train["changed"][1]["manifest"]["label"] == "anger" and train["changed"][1]["copy"]["label"] == "neutral"
    assert train["missing"] == [
        {"path": "Image/aligned/train_00002_aligned.jpg", "label": "disgust", "reason": "file not found"},
        {"path": "Image/aligned/train_00007_aligned.jpg", "label": "neutral", "reason": "not listed in the copy"}]
    assert train["extra"] == [] and test["missing"] == [] and test["changed"] == []
    assert test["extra"] == [{"path": "Image/aligned/test_0003_aligned.jpg", "label": "surprise",
                              "sha256": hashlib.sha256(aligned(rafdb, "test_0003.jpg").read_bytes()).hexdigest()}]


def test_an_item_unreadable_in_both_copies_is_no_difference(rafdb, tmp_path):
    aligned(rafdb, "train_00007.jpg").unlink()
    manifest = manifest_of(rafdb, "rafdb", tmp_path / "rafdb.json", ("train",))
    assert manifest["splits"]["train"]["unreadable"] == [
        {"path": "Image/aligned/train_00007_aligned.jpg", "label": "neutral", "reason": "file not found"}]
    assert manifest["splits"]["train"]["total"] == 6
    assert verify_manifest(tmp_path / "rafdb.json", "rafdb", rafdb)["identical"]


def test_a_ferplus_csv_manifest_finds_a_changed_pixel_row(ferplus_csv, tmp_path):
    manifest_of(ferplus_csv, "ferplus", tmp_path / "ferplus.json", ("train", "val", "test"))
    assert verify_manifest(tmp_path / "ferplus.json", "ferplus", ferplus_csv)["identical"]
    fer = ferplus_csv / "fer2013.csv"
    lines = fer.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(" 10 ", " 11 ", 1)  # line 3: fer0000001.png, a kept image
    fer.write_text("".join(lines))
    result = verify_manifest(tmp_path / "ferplus.json", "ferplus", ferplus_csv, ["train"])
    assert [(c["path"], c["differs"]) for c in result["splits"]["train"]["changed"]] == [
        ("fer2013.csv:3", ["sha256"])]


@pytest.mark.parametrize("text, parts", [
    ("not json", ["not a manifest", "JSONDecodeError"]),
    ('{"format": "something else"}', ["not a manifest", "qcs-fer manifest"]),
    ('{"format": "qcs-fer manifest", "version": 9}', ["manifest version 9"]),
    ('{"format": "qcs-fer manifest", "version": 1, "dataset": "rafdb", "splits": {"train": {"files": '
     '[{"path": "a"}]}}}', ["split 'train'", "files[0]", "sha256"]),
])
def test_a_bad_manifest_is_a_one_line_error_naming_the_file(tmp_path, text, parts):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ManifestError) as error:
        read_manifest(path)
    one_line_error(error, path, *parts)


def test_a_manifest_of_another_dataset_or_split_is_refused(rafdb, tmp_path):
    manifest_of(rafdb, "rafdb", tmp_path / "rafdb.json", ("train",))
    with pytest.raises(ManifestError) as error:
        verify_manifest(tmp_path / "rafdb.json", "affectnet7", rafdb)
    one_line_error(error, tmp_path / "rafdb.json", "'rafdb'", "'affectnet7'")
    with pytest.raises(ManifestError) as error:
        verify_manifest(tmp_path / "rafdb.json", "rafdb", rafdb, ["test"])
    one_line_error(error, "holds no split test", "it holds train")
    with pytest.raises(ManifestError) as error:
        read_manifest(tmp_path / "none.json")
    one_line_error(error, tmp_path / "none.json", "not found")


# ------------------------------------------------------------------------------------------------------ the CLI

def test_available_splits(rafdb, ferplus_csv, tmp_path):
    assert available_splits("rafdb", rafdb) == ("train", "test")
    assert available_splits("affectnet8", tmp_path) == ("train", "test")
    assert available_splits("ferplus", ferplus_csv) == ("train", "val", "test")
    write_lines(tmp_path / "val.txt", [])
    assert available_splits("synthfer", tmp_path) == ("train", "val", "test")
    (tmp_path / "val").mkdir()
    assert available_splits("folder", tmp_path) == ("val",)
    with pytest.raises(ValueError, match="unknown dataset"):
        available_splits("raf", tmp_path)


def test_cli_reports_every_split_and_warns_once_per_split_that_deviates(rafdb, capsys):
    assert main(["data-report", "--dataset", "rafdb", "--root", str(rafdb), "--split", "all", "--workers", "1"]) == 0
    captured = capsys.readouterr()
    reports = json.loads(captured.out)
    assert list(reports) == ["train", "test"] and reports["train"]["counts"] == RAFDB_TRAIN
    assert reports["train"]["expected"]["total"] == 12271 and reports["train"]["duplicates"] == []
    warnings = captured.err.strip().split("\n")
    assert len(warnings) == 2 and all(w.startswith("python -m qcslib data-report: warning: rafdb/") for w in warnings)
    assert "rafdb/train: 7 count(s) differ" in warnings[0] and "fear 0 vs 281" in warnings[0]
    assert main(["data-report", "--dataset", "rafdb", "--root", str(rafdb), "--split", "test"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "test"  # one split: one report, as before


def test_cli_manifest_then_verify_exit_codes(rafdb, tmp_path, capsys):
    manifest = tmp_path / "rafdb.json"
    root = ["--dataset", "rafdb", "--root", str(rafdb)]
    assert main(["data-report", *root, "--split", "train", "--split", "test", "--manifest", str(manifest)]) == 0
    assert list(json.loads(capsys.readouterr().out)) == ["train", "test"]
    assert list(read_manifest(manifest)["splits"]) == ["train", "test"]
    assert main(["data-report", *root, "--verify", str(manifest)]) == 0
    assert json.loads(capsys.readouterr().out)["identical"] is True
    aligned(rafdb, "test_0001.jpg").write_bytes(b"changed")
    assert main(["data-report", *root, "--verify", str(manifest), "--split", "train"]) == 0  # only train checked
    capsys.readouterr()
    assert main(["data-report", *root, "--verify", str(manifest)]) == 1
    assert json.loads(capsys.readouterr().out)["splits"]["test"]["changed"][0]["path"].endswith("test_0001_aligned.jpg")
    (tmp_path / "bad.json").write_text("[]")
    assert main(["data-report", *root, "--verify", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(tmp_path / "bad.json") in err and "\n" not in err
    with pytest.raises(SystemExit):  # one of --manifest and --verify
        main(["data-report", *root, "--manifest", str(manifest), "--verify", str(manifest)])


def test_verify_against_a_deeply_nested_json_file_is_bad_data(tmp_path, capsys):
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 200_000 + "]" * 200_000)  # valid JSON, deeper than the parser's recursion limit
    assert main(["data-report", "--dataset", "synthfer", "--root", str(tmp_path), "--verify", str(nested)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m qcslib data-report: error: {nested}: not a manifest (RecursionError")
    assert err.count("\n") == 1
