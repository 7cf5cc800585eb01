"""qcslib.data.sources: each official layout, written here in miniature, loads to the labels worked out by hand;
bad input fails in one line naming the file (and line); unreadable images are skipped with a reason and a warning."""
import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qcslib.data.sources import (
    AFFECTNET_CLASSES, CLASS_NAMES, DATASET_CLASSES, FERPLUS_CLASSES, FERPLUS_VOTES, RAFDB_CLASSES, DataError,
    DataOptions, canonical_class_name, ferplus_majority, load_split, read_image, verify_images,
)

# ------------------------------------------------------------------------------------------------ fixture writers


def write_image(path, size=(8, 8), color=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def write_csv(path, rows, header=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def one_line_error(error, *parts):
    """The error's message is one line and names every part (file, line number, ...)."""
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert str(part) in message, (part, message)
    return message


# ------------------------------------------------------------------------------------------------------- FERPlus
# Vote columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
# The rule (Microsoft src/ferplus.py, majority mode): counts of 1 become 0, then the top column wins if its count is
# more than half of what is left. Worked by hand:
FERPLUS_ROWS = [  # (usage, name, votes, expected FERPLUS label or drop reason)
    ("Training", "fer0000000.png", [5, 1, 1, 1, 1, 1, 0, 0, 0, 0], 0),        # 5/10 raw; singles go: 5/5 -> neutral
    ("Training", "fer0000001.png", [0, 9, 1, 0, 0, 0, 0, 0, 0, 0], 1),        # 9/9 -> happy
    ("Training", "fer0000002.png", [0, 0, 0, 5, 5, 0, 0, 0, 0, 0], "none"),   # tie 5/10, not > half
    ("Training", "fer0000003.png", [0, 0, 0, 0, 0, 0, 4, 2, 2, 0], "none"),   # exactly half 4/8, not > half
    ("Training", "fer0000004.png", [0, 2, 0, 0, 0, 0, 0, 0, 6, 0], "unknown"),  # unknown 6/8
    ("Training", "fer0000005.png", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10], "NF"),    # NF 10/10
    ("Training", "", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10], "empty"),              # no image name: never an image
    ("Training", "fer0000007.png", [1, 1, 1, 0, 0, 0, 0, 3, 0, 0], 7),        # 3/6 raw; singles go: 3/3 -> contempt
    ("Training", "fer0000008.png", [2, 0, 0, 0, 0, 0, 0, 0, 0, 1], 0),        # NF single goes: 2/2 -> neutral
    ("Training", "fer0000009.png", [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "none"),   # all singles: nothing left
    ("PublicTest", "fer0000010.png", [0, 0, 10, 0, 0, 0, 0, 0, 0, 0], 2),     # surprise
    ("PublicTest", "fer0000011.png", [0, 0, 0, 0, 0, 6, 0, 0, 0, 4], 5),      # disgust 6/10
    ("PrivateTest", "fer0000012.png", [0, 0, 0, 0, 7, 0, 0, 0, 0, 3], 4),     # anger 7/10
    ("PrivateTest", "fer0000013.png", [0, 0, 0, 0, 0, 0, 0, 0, 2, 2], "none"),  # tie between unknown and NF
]
# So train keeps rows 0, 1, 7, 8 -> labels [0, 1, 7, 0]; drops 3 without a majority, 1 unknown, 1 NF, 1 empty name.
TRAIN_LABELS = [0, 1, 7, 0]
TRAIN_EXCLUDED_CSV = {"FERPlus majority: no class above 50%": 3, "FERPlus majority: unknown": 1,
                      "FERPlus majority: NF": 1, "FERPlus: empty image name": 1}
FER_HEADER = ["emotion", "pixels", "Usage"]
NEW_HEADER = ["Usage", "Image name", *FERPLUS_VOTES]


def pixel_string(value):
    return " ".join([str(value)] * 2304)


@pytest.fixture
def ferplus_csv(tmp_path):
    root = tmp_path / "ferplus"
    write_csv(root / "fer2013.csv", [[3, pixel_string(10 * i), u] for i, (u, *_) in enumerate(FERPLUS_ROWS)],
              FER_HEADER)
    write_csv(root / "fer2013new.csv", [[u, n, *v] for u, n, v, _ in FERPLUS_ROWS], NEW_HEADER)
    return root


@pytest.fixture
def ferplus_folders(tmp_path):
    """What generate_training_data.py writes (PNGs, rows without a name skipped) beside Microsoft's label.csv files."""
    root = tmp_path / "ferplus_folders"
    folders = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}
    rows = {f: [] for f in folders.values()}
    for i, (usage, name, votes, _) in enumerate(FERPLUS_ROWS):
        if name:
            folder = root / folders[usage]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((48, 48), 10 * i, np.uint8)).save(folder / name)
            rows[folders[usage]].append([name, "(0, 0, 48, 48)", *votes])
    for folder, folder_rows in rows.items():
        write_csv(root / folder / "label.csv", folder_rows)
    return root


def test_ferplus_majority_rule_by_hand():
    votes = np.array([v for _, _, v, _ in FERPLUS_ROWS])
    code = {"none": -1, "unknown": 8, "NF": 9, "empty": 9}
    assert ferplus_majority(votes).tolist() == [code.get(e, e) for _, _, _, e in FERPLUS_ROWS]


def test_ferplus_majority_matches_a_row_by_row_restatement():
    """The vectorised rule against the reference's steps, one row at a time, on random votes (ties included)."""
    votes = np.random.default_rng(0).integers(0, 6, size=(3000, 10))
    votes[::7, 8] += 8  # some unknown majorities too
    expected = []
    for row in votes.tolist():
        row = [0 if v < 1 + 1e-9 else v for v in row]  # singles are outliers
        peak = max(row)
        expected.append(row.index(peak) if peak > 0.5 * sum(row) else -1)
    assert ferplus_majority(votes).tolist() == expected
    assert {-1, 0, 8, 9} <= set(expected)


def test_ferplus_classes_follow_the_vote_columns():
    assert [canonical_class_name(c) for c in FERPLUS_VOTES[:8]] == list(FERPLUS_CLASSES)


def test_ferplus_csv_train(ferplus_csv):
    split = load_split("ferplus", ferplus_csv, "train")
    assert split.classes == list(FERPLUS_CLASSES) and split.paths is None and split.boxes is None
    assert split.labels.dtype == np.int64 and split.labels.tolist() == TRAIN_LABELS
    assert split.excluded == TRAIN_EXCLUDED_CSV
    assert split.pixels.shape == (4, 48, 48) and split.pixels.dtype == np.uint8
    assert split.pixels[:, 0, 0].tolist() == [0, 10, 70, 80]  # rows 0, 1, 7, 8 of fer2013.csv
    assert split.counts() == {"neutral": 2, "happy": 1, "surprise": 0, "sad": 0, "anger": 0, "disgust": 0,
                              "fear": 0, "contempt": 1}
    image = read_image(split, 2)
    assert image.mode == "RGB" and image.size == (48, 48) and image.getpixel((5, 5)) == (70, 70, 70)


def test_ferplus_csv_val_and_test(ferplus_csv):
    val = load_split("ferplus", ferplus_csv, "val")
    assert val.labels.tolist() == [2, 5] and val.excluded == {} and val.pixels[:, 0, 0].tolist() == [100, 110]
    test = load_split("ferplus", ferplus_csv, "test")
    assert test.labels.tolist() == [4] and test.excluded == {"FERPlus majority: no class above 50%": 1}


def test_ferplus_folders_match_the_csv(ferplus_folders, ferplus_csv):
    split = load_split("ferplus", ferplus_folders, "train")
    assert split.labels.tolist() == TRAIN_LABELS and split.pixels is None and split.boxes is None
    # label.csv has no rows for names that were empty, so that reason cannot occur here
    assert split.excluded == {k: v for k, v in TRAIN_EXCLUDED_CSV.items() if "empty" not in k}
    assert [p.name for p in split.paths] == ["fer0000000.png", "fer0000001.png", "fer0000007.png", "fer0000008.png"]
    assert all(p.is_absolute() and p.parent.name == "FER2013Train" for p in split.paths)
    assert read_image(split, 3).getpixel((0, 0)) == (80, 80, 80)
    assert load_split("ferplus", ferplus_folders, "val").labels.tolist() == [2, 5]
    assert load_split("ferplus", ferplus_folders, "test").labels.tolist() == [4]


def test_ferplus_layout_choice(tmp_path, ferplus_csv, ferplus_folders):
    for folder in ("FER2013Train", "FER2013Valid", "FER2013Test"):  # both layouts under one root: csv by default
        (ferplus_folders / folder).rename(ferplus_csv / folder)
    assert load_split("ferplus", ferplus_csv).pixels is not None
    assert load_split("ferplus", ferplus_csv, layout="folders").paths is not None
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as error:
        load_split("ferplus", empty)
    one_line_error(error, empty, "fer2013new.csv", "FER2013Train", "label.csv")


def test_ferplus_csv_errors(ferplus_csv):
    fer, new = ferplus_csv / "fer2013.csv", ferplus_csv / "fer2013new.csv"
    rows = list(csv.reader(open(fer)))
    rows[2][1] = pixel_string(10)[:-3]  # fer0000001.png (a kept image) is on line 3 and lost its last value
    write_csv(fer, rows)
    with pytest.raises(DataError) as error:
        load_split("ferplus", ferplus_csv)
    one_line_error(error, f"{fer}:3:", "2303", "2304")

    rows[2][1] = pixel_string(10).replace("10", "256", 1)  # out of 0..255
    write_csv(fer, rows)
    with pytest.raises(DataError) as error:
        load_split("ferplus", ferplus_csv)
    one_line_error(error, f"{fer}:3:", "'256'", "0-255")

    rows[2][1] = pixel_string(10)
    rows[5][2] = "Train"  # not a FER2013 Usage
    write_csv(fer, rows)
    with pytest.raises(DataError) as error:
        load_split("ferplus", ferplus_csv)
    one_line_error(error, f"{fer}:6:", "Train", "PublicTest")

    rows[5][2] = "PublicTest"  # valid, but fer2013new.csv says Training
    write_csv(fer, rows)
    with pytest.raises(DataError) as error:
        load_split("ferplus", ferplus_csv)
    one_line_error(error, f"{new}:6:", f"{fer}")

    rows[5][2] = "Training"
    write_csv(fer, rows[:-1])
    with pytest.raises(DataError) as error:
        load_split("ferplus", ferplus_csv)
    one_line_error(error, new, fer, "13", "14")

    fer.unlink()
    with pytest.raises(FileNotFoundError) as error:
        load_split("ferplus", ferplus_csv)
    one_line_error(error, fer, "emotion,pixels,Usage")


def test_ferplus_new_csv_errors(ferplus_csv):
    new = ferplus_csv / "fer2013new.csv"
    rows = list(csv.reader(open(new)))
    write_csv(new, [rows[0][:-1]] + rows[1:])  # the header lacks NF: eleven fields where twelve are expected
    with pytest.raises(DataError) as error:
        load_split("ferplus", ferplus_csv)
    one_line_error(error, f"{new}:1:", "11 comma-separated fields", "expected 12", "NF")

    write_csv(new, rows[:4] + [rows[4] + ["0"]] + rows[5:])  # one row with a thirteenth field
    with pytest.raises(DataError) as error:
        load_split("ferplus", ferplus_csv)
    one_line_error(error, f"{new}:5:", "13 comma-separated fields", "expected 12")

    write_csv(new, [["usage", *rows[0][1:]]] + rows[1:])
    with pytest.raises(DataError) as error:
        load_split("ferplus", ferplus_csv)
    one_line_error(error, f"{new}:1:", "header", "Usage,Image name")

    rows[2][4] = "x"
    write_csv(new, rows)
    with pytest.raises(DataError) as error:
        load_split("ferplus", ferplus_csv)
    one_line_error(error, f"{new}:3:", "surprise", "'x'")


def test_ferplus_folder_errors(ferplus_folders):
    label = ferplus_folders / "FER2013Valid" / "label.csv"
    rows = list(csv.reader(open(label)))
    rows[1][1] = "0 0 48 48"
    write_csv(label, rows)
    with pytest.raises(DataError) as error:
        load_split("ferplus", ferplus_folders, "val")
    one_line_error(error, f"{label}:2:", "(x, y, w, h)")
    label.unlink()
    with pytest.raises(FileNotFoundError) as error:
        load_split("ferplus", ferplus_folders, "val")
    one_line_error(error, label)


# ------------------------------------------------------------------------------------------------------ AffectNet
AFFECTNET_HEADER = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
                    "expression", "valence", "arousal"]
BOX = (4, 6, 10, 12)  # x, y, w, h inside a 30x40 image


def affectnet_row(name, code, box=BOX):
    return [name, *box, "1.5;2.5;3.5;4.5", code, 0.25, -0.5]


def write_face(path, size=(30, 40), box=BOX):
    """A blue image with a red face box; a crop to the box is all red."""
    write_image(path, size, (0, 0, 255))
    image = Image.open(path).convert("RGB")
    x, y, w, h = box
    image.paste((255, 0, 0), (x, y, x + w, y + h))
    image.save(path, quality=100)


@pytest.fixture
def affectnet(tmp_path):
    root = tmp_path / "affectnet"
    codes = {"train": [0, 1, 6, 7, 8, 9, 10, 7, 3], "test": [2, 7, 5]}
    for split, file in (("train", "training.csv"), ("test", "validation.csv")):
        rows = []
        for i, code in enumerate(codes[split]):
            name = f"{i % 2 + 1}/{split}{i}.jpg"
            write_face(root / "Manually_Annotated_Images" / name)
            rows.append(affectnet_row(name, code))
        write_csv(root / "Manually_Annotated_file_lists" / file, rows, AFFECTNET_HEADER)
    return root


def test_affectnet7_and_8_keep_and_exclude(affectnet):
    seven = load_split("affectnet7", affectnet, "train")
    assert seven.classes == list(AFFECTNET_CLASSES[:7]) and seven.labels.tolist() == [0, 1, 6, 3]
    assert [p.name for p in seven.paths] == ["train0.jpg", "train1.jpg", "train2.jpg", "train8.jpg"]
    assert seven.excluded == {"AffectNet code 7 (Contempt)": 2, "AffectNet code 8 (None)": 1,
                              "AffectNet code 9 (Uncertain)": 1, "AffectNet code 10 (No-Face)": 1}
    eight = load_split("affectnet8", affectnet, "train")
    assert eight.classes == list(AFFECTNET_CLASSES) and eight.labels.tolist() == [0, 1, 6, 7, 7, 3]
    assert eight.excluded == {"AffectNet code 8 (None)": 1, "AffectNet code 9 (Uncertain)": 1,
                              "AffectNet code 10 (No-Face)": 1}
    test = load_split("affectnet7", affectnet, "test")
    assert test.labels.tolist() == [2, 5] and test.excluded == {"AffectNet code 7 (Contempt)": 1}


def test_affectnet_crops_to_the_face_box(affectnet):
    split = load_split("affectnet8", affectnet, "train")  # 30x40 images with 10x12 boxes: originals, auto-detected
    assert split.boxes.tolist() == [list(BOX)] * 6
    face = np.asarray(read_image(split, 0))
    x, y, w, h = BOX
    expected = np.asarray(Image.open(split.paths[0]).convert("RGB"))[y:y + h, x:x + w]
    assert face.shape == (12, 10, 3) and np.array_equal(face, expected)
    assert face[1:-1, 1:-1, 0].min() > 200 and face[1:-1, 1:-1, 2].max() < 60  # the red face, not the blue rest
    whole = load_split("affectnet8", affectnet, "train", cropped=True)
    assert whole.boxes is None and read_image(whole, 0).size == (30, 40)


def test_affectnet_recognises_face_crops(affectnet):
    # Re-save every image as just its face: sizes now equal the boxes
    for path in (affectnet / "Manually_Annotated_Images").rglob("*.jpg"):
        x, y, w, h = BOX
        Image.open(path).crop((x, y, x + w, y + h)).save(path, quality=100)
    split = load_split("affectnet7", affectnet, "train")
    assert split.boxes is None and read_image(split, 0).size == (10, 12)
    assert load_split("affectnet7", affectnet, "train", cropped=False).boxes is not None


def test_affectnet_errors(affectnet):
    training = affectnet / "Manually_Annotated_file_lists" / "training.csv"
    rows = list(csv.reader(open(training)))
    rows[4][6] = "11"
    write_csv(training, rows)
    with pytest.raises(DataError) as error:
        load_split("affectnet8", affectnet)
    one_line_error(error, f"{training}:5:", "expression 11", "0..10")

    rows[4][6] = "happy"
    write_csv(training, rows)
    with pytest.raises(DataError) as error:
        load_split("affectnet8", affectnet)
    one_line_error(error, f"{training}:5:", "expression", "'happy'")

    rows[4][6] = "1"
    rows[4][3] = "0"  # face_width
    write_csv(training, rows)
    with pytest.raises(DataError) as error:
        load_split("affectnet8", affectnet)
    one_line_error(error, f"{training}:5:", "face_width 0", ">= 1")

    rows[4][3] = "10"
    rows[2] = rows[2][:5]  # a short row: its later fields are missing
    write_csv(training, rows)
    with pytest.raises(DataError) as error:
        load_split("affectnet8", affectnet)
    one_line_error(error, f"{training}:3:")

    with pytest.raises(DataError) as error:
        load_split("affectnet7", affectnet, "val")
    one_line_error(error, affectnet, "no separate val split", "test")

    (affectnet / "Manually_Annotated_file_lists" / "validation.csv").unlink()
    with pytest.raises(FileNotFoundError) as error:
        load_split("affectnet7", affectnet, "test")
    one_line_error(error, "validation.csv", "Manually_Annotated_Images")


def test_affectnet_cannot_tell_crops_without_images(affectnet):
    for path in (affectnet / "Manually_Annotated_Images").rglob("*.jpg"):
        path.unlink()
    with pytest.raises(DataError) as error:
        load_split("affectnet7", affectnet)
    one_line_error(error, "cropped=True or cropped=False")
    assert len(load_split("affectnet7", affectnet, cropped=False)) == 4  # an explicit choice needs no images


# --------------------------------------------------------------------------------------------------------- RAF-DB

@pytest.fixture
def rafdb(tmp_path):
    root = tmp_path / "basic"
    names = {"train_00001.jpg": 5, "train_00002.jpg": 1, "test_0001.jpg": 7, "test_0002.jpg": 4}
    write_lines(root / "EmoLabel" / "list_patition_label.txt", [f"{n} {k}" for n, k in names.items()])
    for name in names:
        write_image(root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg"))
    return root


def test_rafdb_split_by_prefix_and_label_map(rafdb):
    train = load_split("rafdb", rafdb, "train")
    assert train.classes == list(RAFDB_CLASSES)
    assert train.labels.tolist() == [4, 0]  # RAF-DB 5 = Sadness, 1 = Surprise
    assert [train.classes[k] for k in train.labels] == ["sad", "surprise"]
    assert [p.name for p in train.paths] == ["train_00001_aligned.jpg", "train_00002_aligned.jpg"]
    assert all(p.is_file() for p in train.paths)
    test = load_split("rafdb", rafdb, "test")
    assert [test.classes[k] for k in test.labels] == ["neutral", "happy"]
    assert train.excluded == {} and test.excluded == {}


@pytest.mark.parametrize("line, parts", [
    ("train_00003.jpg 8", ["label 8", "1..7"]),
    ("train_00003.jpg", ["1 fields", "expected 2"]),
    ("val_0001.jpg 2", ["val_0001.jpg", "train_"]),
])
def test_rafdb_bad_lines(rafdb, line, parts):
    label_file = rafdb / "EmoLabel" / "list_patition_label.txt"
    lines = label_file.read_text().splitlines()
    write_lines(label_file, lines[:2] + [line] + lines[2:])
    with pytest.raises(DataError) as error:
        load_split("rafdb", rafdb, "test")
    one_line_error(error, f"{label_file}:3:", *parts)


def test_rafdb_missing_parts(rafdb, tmp_path):
    with pytest.raises(DataError) as error:
        load_split("rafdb", rafdb, "val")
    one_line_error(error, rafdb, "no val split")
    with pytest.raises(FileNotFoundError) as error:
        load_split("rafdb", tmp_path / "nowhere")
    one_line_error(error, tmp_path / "nowhere", "list_patition_label.txt")
    (rafdb / "EmoLabel" / "list_patition_label.txt").unlink()
    with pytest.raises(FileNotFoundError) as error:
        load_split("rafdb", rafdb)
    one_line_error(error, rafdb / "EmoLabel" / "list_patition_label.txt", "Image/aligned")


# -------------------------------------------------------------------------------------------------- list files

@pytest.fixture
def list_root(tmp_path):
    """The generic list layout, as the SynthFER generator writes it."""
    root = tmp_path / "synth"
    write_lines(root / "classes.txt", ["Neutral", "happiness", "sad", "smirk"])
    write_lines(root / "train.txt", ["images/0/a.png 0", "", "images/1/b.png 1", "images/3/c.png 3"])
    write_lines(root / "test.txt", ["images/2/d.png 2"])
    for name in ("0/a", "1/b", "3/c", "2/d"):
        write_image(root / "images" / f"{name}.png")
    return root


@pytest.mark.parametrize("dataset", ["list", "synthfer"])
def test_list_layout(list_root, dataset):
    split = load_split(dataset, list_root, "train")
    assert split.dataset == dataset and split.classes == ["neutral", "happy", "sad", "smirk"]
    assert split.labels.tolist() == [0, 1, 3]
    assert split.paths == [list_root / "images" / n for n in ("0/a.png", "1/b.png", "3/c.png")]
    assert split.counts() == {"neutral": 1, "happy": 1, "sad": 0, "smirk": 1}
    assert load_split(dataset, list_root, "test").labels.tolist() == [2]


def test_list_errors(list_root):
    with pytest.raises(FileNotFoundError) as error:
        load_split("list", list_root, "val")
    one_line_error(error, list_root / "val.txt", "no val split")

    train = list_root / "train.txt"
    write_lines(train, ["images/0/a.png 0", "images/my face.png 1"])
    with pytest.raises(DataError) as error:
        load_split("list", list_root)
    one_line_error(error, f"{train}:2:", "3 fields", "no spaces")

    write_lines(train, ["images/0/a.png 0", "", "images/1/b.png 4"])  # line 3 (the blank line still counts)
    with pytest.raises(DataError) as error:
        load_split("list", list_root)
    one_line_error(error, f"{train}:3:", "label 4", "0..3")

    write_lines(train, ["images/0/a.png -1"])
    with pytest.raises(DataError) as error:
        load_split("list", list_root)
    one_line_error(error, f"{train}:1:", "label -1")

    write_lines(train, ["images/0/a.png one"])
    with pytest.raises(DataError) as error:
        load_split("list", list_root)
    one_line_error(error, f"{train}:1:", "'one'", "not an integer")

    (list_root / "classes.txt").unlink()
    with pytest.raises(FileNotFoundError) as error:
        load_split("list", list_root)
    one_line_error(error, list_root / "classes.txt")


def test_official_qcs_list_files(tmp_path):
    """datas/RAF-DB/raf_db_basic_train.txt style: 'ImageName label' relative to an image root, 0-based."""
    root = tmp_path / "RAF-DB"
    write_lines(root / "raf_db_basic_train.txt", ["train_00001_aligned.jpg 4", "train_00002_aligned.jpg 0"])
    for name in ("train_00001_aligned.jpg", "train_00002_aligned.jpg"):
        write_image(root / "basic" / name)
    named = load_split("rafdb", root, "train", list_file="raf_db_basic_train.txt", image_root="basic")
    generic = load_split("list", root, "train", list_file=root / "raf_db_basic_train.txt", image_root="basic",
                         classes="rafdb")
    explicit = load_split("list", root, "train", list_file="raf_db_basic_train.txt", image_root="basic",
                          classes=list(RAFDB_CLASSES))
    for split in (named, generic, explicit):
        assert split.classes == list(RAFDB_CLASSES) and split.labels.tolist() == [4, 0]
        assert split.paths == [root / "basic" / "train_00001_aligned.jpg", root / "basic" / "train_00002_aligned.jpg"]
    assert named.dataset == "rafdb"
    eight = load_split("affectnet8", root, "train", list_file="raf_db_basic_train.txt", image_root="basic")
    assert eight.classes == list(AFFECTNET_CLASSES)

    write_lines(root / "raf_db_basic_train.txt", ["train_00001_aligned.jpg 7"])  # RAF-DB has 7 classes: 0..6
    with pytest.raises(DataError) as error:
        load_split("rafdb", root, "train", list_file="raf_db_basic_train.txt", image_root="basic")
    one_line_error(error, f"{root / 'raf_db_basic_train.txt'}:1:", "label 7", "0..6")
    with pytest.raises(FileNotFoundError) as error:
        load_split("list", root, list_file="missing.txt", classes="ferplus")
    one_line_error(error, root / "missing.txt")


def test_classes_txt_and_classes_option_must_agree(list_root):
    assert load_split("list", list_root, classes=["neutral", "Happy", "sadness", "smirk"]).classes[1] == "happy"
    with pytest.raises(DataError) as error:
        load_split("list", list_root, classes="rafdb")
    one_line_error(error, list_root / "classes.txt")


# ------------------------------------------------------------------------------------------------- ImageFolder

def test_image_folder(tmp_path):
    root = tmp_path / "folder"
    write_image(root / "train" / "Happy" / "a.jpg")
    write_image(root / "train" / "Happy" / "nested" / "b.JPEG")
    write_image(root / "train" / "sadness" / "c.png")
    write_image(root / "train" / "Smirk" / "d.bmp")
    write_lines(root / "train" / "Happy" / "notes.txt", ["not an image"])
    write_lines(root / "train" / "README", ["stray file"])
    write_image(root / "test" / "Happy" / "e.jpg")
    write_image(root / "test" / "Angry" / "f.jpg")  # a class only the test split has

    train = load_split("folder", root, "train")
    # folders of all splits, sorted by name: Angry, Happy, Smirk, sadness
    assert train.classes == ["anger", "happy", "Smirk", "sad"]
    assert train.labels.tolist() == [1, 1, 2, 3]
    assert [p.name for p in train.paths] == ["a.jpg", "b.JPEG", "d.bmp", "c.png"]
    assert train.excluded == {"ImageFolder: not an image file (.txt)": 1, "ImageFolder: file outside a class folder": 1}
    test = load_split("folder", root, "test")
    assert test.classes == train.classes and test.labels.tolist() == [0, 1]

    with pytest.raises(FileNotFoundError) as error:
        load_split("folder", root, "val")
    one_line_error(error, root / "val", "<class name>")
    write_image(root / "train" / "happiness" / "g.jpg")
    with pytest.raises(DataError) as error:
        load_split("folder", root, "train")
    one_line_error(error, root, "Happy", "happiness")


def test_canonical_names():
    assert [canonical_class_name(n) for n in ("Happy", "HAPPINESS", " sadness", "Angry", "contempt", "Smirk")] == [
        "happy", "happy", "sad", "anger", "contempt", "Smirk"]
    assert set(CLASS_NAMES) == set(AFFECTNET_CLASSES) == set(FERPLUS_CLASSES)
    assert set(RAFDB_CLASSES) == set(CLASS_NAMES) - {"contempt"}
    assert DATASET_CLASSES["affectnet7"] == AFFECTNET_CLASSES[:7] and "contempt" not in AFFECTNET_CLASSES[:7]


def test_bad_arguments(list_root):
    with pytest.raises(TypeError) as error:
        load_split("rafdb", list_root, cropped=True)
    one_line_error(error, "cropped", "rafdb")
    with pytest.raises(ValueError) as error:
        load_split("raf", list_root)
    one_line_error(error, "raf", "rafdb")
    with pytest.raises(ValueError) as error:
        load_split("list", list_root, "valid")
    one_line_error(error, "valid", "val")
    with pytest.raises(TypeError) as error:
        load_split("list", list_root, classes=7)
    one_line_error(error, "data_options for list", "classes must be str, a list of str or None, got 7")


# ------------------------------------------------------------------------------------------------- DataOptions

def test_data_options_compare_by_value_and_give_back_only_what_is_set():
    options = DataOptions.from_dict("list", {"list_file": Path("a.txt"), "classes": ["happy", "sad"]})
    assert options == DataOptions(list_file="a.txt", classes=("happy", "sad"))
    assert hash(options) == hash(DataOptions(list_file="a.txt", classes=("happy", "sad")))
    assert options != DataOptions(list_file="a.txt")
    assert options.to_dict() == {"list_file": "a.txt", "classes": ["happy", "sad"]}
    assert DataOptions.from_dict("list", options.to_dict()) == options
    assert DataOptions.from_dict("rafdb", {}) == DataOptions() and DataOptions().to_dict() == {}
    assert DataOptions.from_dict("ferplus", {"layout": "folders"}).to_dict() == {"layout": "folders"}
    assert DataOptions.from_dict("affectnet8", {"cropped": None}).to_dict() == {}  # None: the loader's default
    checked = DataOptions(cropped=False)
    assert checked.check("affectnet7") is checked and checked.to_dict() == {"cropped": False}


@pytest.mark.parametrize("dataset, mapping, parts", [
    ("synthfer", {"bogus": 1}, ["unknown option(s) bogus", "it takes classes, image_root, list_file"]),
    ("rafdb", {"cropped": True}, ["option(s) cropped do not apply to rafdb", "it takes none"]),
    ("rafdb", {"cropped": None}, ["option(s) cropped do not apply to rafdb"]),  # named, even unset, is an error
    ("rafdb", {"list_file": "a.txt", "classes": "rafdb"},
     ["option(s) classes do not apply to rafdb reading a list_file", "it takes image_root, list_file"]),
    ("affectnet8", {"cropped": "yes"}, ["cropped must be bool or None, got 'yes'"]),
    ("ferplus", {"layout": 2}, ["layout must be str or None, got 2"]),
    ("list", {"list_file": 5}, ["list_file must be str or None, got 5"]),
    ("list", {"classes": ["happy", 3]}, ["classes must be str, a list of str or None"]),
])
def test_bad_data_options_are_one_line_errors_naming_the_option_and_the_dataset(dataset, mapping, parts):
    with pytest.raises(TypeError) as error:
        DataOptions.from_dict(dataset, mapping)
    one_line_error(error, f"data_options for {dataset}: ", *parts)


def test_check_refuses_what_the_dataset_does_not_take():
    with pytest.raises(TypeError) as error:
        DataOptions(layout="csv").check("affectnet7")
    one_line_error(error, "data_options for affectnet7", "layout", "it takes cropped")
    with pytest.raises(TypeError) as error:
        DataOptions(cropped=1).check("affectnet7")
    one_line_error(error, "cropped must be bool or None, got 1")
    with pytest.raises(ValueError) as error:
        DataOptions().check("raf")
    one_line_error(error, "unknown dataset 'raf'", "rafdb")


# ----------------------------------------------------------------------------------------------- verify_images

def test_verify_images_skips_unreadable_files_with_a_warning(list_root):
    images = list_root / "images"
    good = images / "0" / "a.png"
    jpeg = write_image(images / "1" / "b.jpg", (64, 64))
    data = jpeg.read_bytes()
    jpeg.write_bytes(data[: len(data) // 2])  # truncated JPEG
    (images / "3" / "c.png").write_text("not an image")  # a non-image file under an image name
    write_lines(list_root / "train.txt", ["images/0/a.png 0", "images/1/b.jpg 1", "images/3/c.png 3",
                                          "images/2/d.png 2", "images/9/missing.png 1"])
    split = load_split("list", list_root)
    assert len(split) == 5 and split.skipped == []  # load_split does not open images

    with pytest.warns(UserWarning, match=r"skipped 3 of 5 images") as record:
        checked = verify_images(split)
    assert len(record) == 1
    assert checked.labels.tolist() == [0, 2] and checked.paths == [good, images / "2" / "d.png"]
    reasons = {item["path"]: item["reason"] for item in checked.skipped}
    assert list(reasons) == [str(jpeg), str(images / "3" / "c.png"), str(images / "9" / "missing.png")]
    assert "truncated" in reasons[str(jpeg)].lower()
    assert "cannot identify image file" in reasons[str(images / "3" / "c.png")]
    assert reasons[str(images / "9" / "missing.png")] == "file not found"
    assert len(split) == 5  # the input split is unchanged

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to skip: no warning
        again = verify_images(checked)
    assert again.labels.tolist() == [0, 2] and len(again.skipped) == 3


def test_verify_images_keeps_boxes_aligned(affectnet):
    split = load_split("affectnet8", affectnet, "train")
    (affectnet / "Manually_Annotated_Images" / split.paths[1].relative_to(affectnet / "Manually_Annotated_Images")
     ).write_bytes(b"\xff\xd8\xff")
    with pytest.warns(UserWarning, match="skipped 1 of 6"):
        checked = verify_images(split)
    assert checked.labels.tolist() == [0, 6, 7, 7, 3] and len(checked.boxes) == 5
    assert checked.skipped[0]["path"] == str(split.paths[1])


def test_verify_images_on_pixels_is_a_copy(ferplus_csv):
    split = load_split("ferplus", ferplus_csv)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checked = verify_images(split)
    assert checked is not split and checked.labels.tolist() == TRAIN_LABELS and checked.excluded == split.excluded
