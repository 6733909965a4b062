"""Label files: lossless round trips, hand-written CSVs, atomic writes and clear errors."""
from __future__ import annotations

import os

import numpy as np
import pytest

from label_models import io as label_io
from label_models.corruption import CorruptionSpec, corrupt
from label_models.io import label_file_format, load_labels, save_labels
from label_models.labels import ImpreciseLabels

SPECS = {
    "clean": CorruptionSpec("clean"),
    "noisy-sym": CorruptionSpec("noisy", rate=0.4, seed=1),
    "noisy-asym": CorruptionSpec("noisy", noise="asym", rate=0.3, seed=2),
    "partial": CorruptionSpec("partial", q=0.4, seed=3),
    "partial-classdep": CorruptionSpec("partial", class_dependent=True, seed=3),
    "semi": CorruptionSpec("semi", labelled_fraction=0.2, seed=4),
    "pu": CorruptionSpec("pu", labelled_fraction=0.3, seed=5),
}


def assert_same(a: ImpreciseLabels, b: ImpreciseLabels) -> None:
    assert a.kind == b.kind and a.meta == b.meta
    np.testing.assert_array_equal(a.matrix, b.matrix)
    assert b.matrix.dtype == np.float32
    for name in ("observed", "true_labels", "transition_matrix", "class_prior"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y)  # exact: JSON floats and npz both round-trip


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
@pytest.mark.parametrize("name", list(SPECS))
def test_round_trip(tmp_path, name, suffix):
    y = np.random.default_rng(0).integers(0, 10, size=300)
    labels = corrupt(y, num_classes=10, spec=SPECS[name])
    path = tmp_path / f"labels{suffix}"
    save_labels(path, labels)
    assert_same(labels, load_labels(path))
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temporary file left behind


def test_hand_written_csv_without_header(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("label\n3|5|7\n2\n\n0|1\n")
    lab = load_labels(path, num_classes=10)
    assert lab.kind == "partial" and lab.observed is None
    assert lab.matrix.sum(axis=1).tolist() == [3, 1, 10, 2]  # the empty row is unlabelled
    path.write_text("label,true_label\n3,3\n,2\n")
    semi = load_labels(path, num_classes=4)
    assert semi.kind == "semi" and semi.observed.tolist() == [3, -1] and semi.true_labels.tolist() == [3, 2]
    path.write_text("# kind=clean num_classes=4\n# free text comment\nlabel\n0\n1\n")
    assert load_labels(path).kind == "clean"
    path.write_text("label\n1\n0\n")
    assert load_labels(path, num_classes=2).kind == "noisy"  # hard labels of unknown quality


CSV_ERRORS = [
    ("label\n3\nx\n", 10, "line 3: cannot parse label 'x'"),
    ("label\n3\n3|y\n", 10, "line 3: cannot parse label 'y'"),
    ("label\n3\n12\n", 10, "line 3: class 12 is out of range for 10 classes"),
    ("label\n3\n-1\n", 10, "line 3: class -1 is out of range"),
    ("label,true_label\n3,3\n4\n", 10, "line 3: expected 2 comma-separated field"),
    ("label,true_label\n3,3\n4,\n", 10, "line 3: empty true_label"),
    ("label,true_label\n3,13\n", 10, "line 2: true_label 13 is out of range"),
    ("labels\n3\n", 10, "header must be 'label' or 'label,true_label'"),
    ("label\n", 10, "no label rows"),
    ("label\n3\n", None, "no '# num_classes=K' header line; add one or pass num_classes"),
    ("# num_classes=4\nlabel\n3\n", 5, "header says num_classes=4 but num_classes=5"),
    ("# num_classes=four\nlabel\n3\n", None, "not an integer"),
    ("# kind=weird num_classes=4\nlabel\n3\n", None, "unknown kind 'weird'"),
    ("# kind=noisy num_classes=4\nlabel\n3\n1|2\n", None, "line 4: a candidate set in a file of kind 'noisy'"),
    ("# kind=noisy num_classes=4\nlabel\n3\n\n", None, "no unlabelled samples"),
    ("# kind=pu num_classes=2\nlabel\n1\n0\n", None, "line 4: a pu file labels only positives"),
    ("# kind=noisy num_classes=2\n# transition_matrix=[[1, 0]\nlabel\n1\n", None,
     "transition_matrix is not valid JSON"),
    ("# kind=noisy num_classes=2\n# transition_matrix=[[0.5, 0.4], [0, 1]]\nlabel\n1\n", None, "row 0 sums to"),
]


@pytest.mark.parametrize("text, k, message", CSV_ERRORS, ids=[m for *_, m in CSV_ERRORS])
def test_csv_errors_name_the_file_and_line(tmp_path, text, k, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_labels(path, num_classes=k)
    assert str(path) in str(info.value)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_labels(path)


def test_bad_npz_files(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable .npz label file"):
        load_labels(garbage)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(ValueError, match="no 'labels' array"):
        load_labels(other)
    bad = tmp_path / "bad.npz"
    np.savez(bad, labels=np.zeros((2, 3)), kind=np.array("partial"))
    with pytest.raises(ValueError, match="sample 0 has an empty candidate set"):
        load_labels(bad)


def test_num_classes_must_agree_with_npz(tmp_path):
    path = tmp_path / "l.npz"
    save_labels(path, ImpreciseLabels(matrix=np.eye(3), kind="clean"))
    with pytest.raises(ValueError, match="3 classes but num_classes=4"):
        load_labels(path, num_classes=4)


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_pu_files_accept_the_dataset_class_count(tmp_path, suffix):
    y = np.random.default_rng(0).integers(0, 10, size=200)
    path = tmp_path / f"pu{suffix}"
    save_labels(path, corrupt(y, num_classes=10, spec=CorruptionSpec("pu", positive_classes=(1, 7))))
    assert load_labels(path, num_classes=10).num_classes == 2  # the original dataset's class count
    assert load_labels(path, num_classes=2).num_classes == 2  # the binary task
    with pytest.raises(ValueError, match=r"positive classes \[7\] do not exist among 5 classes"):
        load_labels(path, num_classes=5)


def test_suffix_and_destination_errors(tmp_path):
    lab = ImpreciseLabels(matrix=np.eye(3), kind="clean")
    assert label_file_format("a/b.NPZ") == "npz"
    with pytest.raises(ValueError, match=r"unknown label-file suffix '\.txt'.*use a \.npz or \.csv"):
        save_labels(tmp_path / "l.txt", lab)
    with pytest.raises(ValueError, match="does not exist"):
        save_labels(tmp_path / "missing" / "l.npz", lab)
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        save_labels(tmp_path / "d.npz", lab)
    with pytest.raises(ValueError, match="unknown label-file suffix"):
        load_labels(tmp_path / "l.json")


def test_soft_labels_need_npz(tmp_path):
    soft = ImpreciseLabels(matrix=[[0.5, 1.0], [1.0, 0.25]], kind="partial")
    with pytest.raises(ValueError, match="use a .npz|save to a .npz"):
        save_labels(tmp_path / "soft.csv", soft)
    assert not list(tmp_path.iterdir())
    save_labels(tmp_path / "soft.npz", soft)
    np.testing.assert_array_equal(load_labels(tmp_path / "soft.npz").matrix, soft.matrix)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "l.npz"
    old = ImpreciseLabels(matrix=np.eye(3), kind="clean")
    save_labels(path, old)

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(label_io.np, "savez_compressed", explode)
    with pytest.raises(OSError, match="disk full"):
        save_labels(path, ImpreciseLabels(matrix=np.eye(3)[::-1], kind="clean"))
    monkeypatch.undo()
    assert_same(old, load_labels(path))
    assert sorted(os.listdir(tmp_path)) == ["l.npz"]


def test_an_npz_whose_zip_needs_an_unknown_version_is_a_value_error(tmp_path):
    """Found by the slow fuzz run: zipfile raises NotImplementedError for a "version needed to
    extract" it does not know (here 10.9); that is a damaged label file, not a crash."""
    path = tmp_path / "labels.npz"
    save_labels(path, corrupt(np.arange(20) % 4, num_classes=4, spec=CorruptionSpec(supervision="noisy", rate=0.2)))
    data = bytearray(path.read_bytes())
    central = data.rindex(b"PK\x01\x02")  # the last central-directory entry
    data[central + 6] = 109  # "version needed to extract" = 10.9
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a readable .npz label file"):
        load_labels(path)
