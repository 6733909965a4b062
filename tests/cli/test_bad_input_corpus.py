"""The bad-input corpus: every way a user's files or flags were found to break the CLI, each built
here from its description, must end in exit code 2 with ONE line on stderr and no traceback.

Each case is a function (tmp_path, run_dir) -> argv; `run_dir` is a private copy of a tiny trained
run that the case may damage. A case that crashes with an exception other than the CLI's own
(ValueError/OSError, turned into one line by cli.main) fails the test with its traceback.
"""
from __future__ import annotations

import io
import json
import shutil
import zipfile

import numpy as np
import pytest
import torch

from cli.main import main

TRAIN = ["train", "--supervision", "noisy", "--rate", "0.2", "--model", "tiny", "--kimg", "0.1"]


def _out(tmp_path):
    return ["--out", str(tmp_path / "new-run")]


# ---------------------------------------------------------------------------------------------
# Flags


def flag(*extra):
    return lambda tmp_path, run_dir: [*TRAIN, *_out(tmp_path), *extra]


def train_on_cuda(tmp_path, run_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda is valid here")
    return [*TRAIN, *_out(tmp_path), "--device", "cuda"]


def evaluate_limit(limit):
    return lambda tmp_path, run_dir: ["evaluate", str(run_dir), "--limit", limit]


def sample_guidance_nan(tmp_path, run_dir):
    return ["sample", str(run_dir), "--per-class", "1", "--out", str(tmp_path / "s.png"), "--guidance", "nan"]


# ---------------------------------------------------------------------------------------------
# Label files


def _label_npz(tmp_path, **arrays) -> str:
    from label_models.corruption import CorruptionSpec, corrupt
    from label_models.io import save_labels

    labels = corrupt(np.arange(1437) % 10, num_classes=10, spec=CorruptionSpec(supervision="noisy", rate=0.2))
    path = tmp_path / "labels.npz"
    save_labels(path, labels)
    if arrays:
        with np.load(path) as data:
            stored = {k: data[k] for k in data.files}
        stored.update(arrays)
        np.savez(path, **stored)
    return str(path)


def labels_corrupt_deflate(tmp_path, run_dir):
    """A compressed .npz whose deflate stream is damaged in the middle (zlib.error when read)."""
    path = tmp_path / "bad-deflate.npz"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in (("labels", np.eye(10)[np.arange(1437) % 10]), ("kind", np.array("clean"))):
            raw = io.BytesIO()
            np.lib.format.write_array(raw, arr)
            zf.writestr(f"{name}.npy", raw.getvalue())
    data = bytearray(buf.getvalue())
    start = data.index(b"labels.npy") + len("labels.npy") + 40  # inside the first member's data
    data[start:start + 64] = bytes(64)
    path.write_bytes(bytes(data))
    return ["train", "--labels", str(path), "--model", "tiny", "--kimg", "0.1", *_out(tmp_path)]


def labels_version_vector(tmp_path, run_dir):
    path = _label_npz(tmp_path, format_version=np.array([1, 2]))
    return ["train", "--labels", path, "--model", "tiny", "--kimg", "0.1", *_out(tmp_path)]


def run_labels_corrupt(tmp_path, run_dir):
    (run_dir / "labels.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    return ["evaluate", str(run_dir), "--limit", "5"]


# ---------------------------------------------------------------------------------------------
# Checkpoints and run directories


def _rewrite_checkpoint(run_dir, change):
    path = run_dir / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    torch.save(change(ckpt), path)


def checkpoint(change):
    def case(tmp_path, run_dir):
        _rewrite_checkpoint(run_dir, change)
        image = tmp_path / "x.png"
        _write_png(image)
        return ["classify", str(run_dir), str(image)]
    return case


def _without(key):
    return lambda ckpt: {k: v for k, v in ckpt.items() if k != key}


def _wrong_class_count(ckpt):
    return {**ckpt, "num_classes": ckpt["num_classes"] + 3}


def _diverged(ckpt):
    ema = dict(ckpt["ema"])
    name = next(k for k, v in ema.items() if v.is_floating_point())
    ema[name] = torch.full_like(ema[name], float("nan"))
    return {**ckpt, "ema": ema}


def _write_png(path, size=8):
    from PIL import Image

    Image.fromarray((np.arange(size * size).reshape(size, size) % 255).astype(np.uint8)).save(path)


def classify_with_bomb(tmp_path, run_dir):
    """A good image plus a PNG that declares more pixels than PIL's bomb limit: the good one is
    still classified (stdout), the bomb is one line on stderr, the exit code says something failed."""
    from PIL import Image

    good, bomb = tmp_path / "good.png", tmp_path / "bomb.png"
    _write_png(good)
    side = int((Image.MAX_IMAGE_PIXELS * 2) ** 0.5) + 1
    Image.new("1", (side, side)).save(bomb)  # 1-bit and all black: a few KB on disk
    return ["classify", str(run_dir), str(good), str(bomb)]


def resume_changed_flag(tmp_path, run_dir):
    return ["train", "--out", str(run_dir), "--resume", "--lr", "0.5"]


def new_run_over_existing(tmp_path, run_dir):
    return [*TRAIN, "--out", str(run_dir)]


def resume_without_checkpoint(tmp_path, run_dir):
    (run_dir / "checkpoint.pt").unlink()
    return ["train", "--out", str(run_dir), "--resume"]


def config_json_garbage(tmp_path, run_dir):
    (run_dir / "config.json").write_text("{ not json")
    return ["train", "--out", str(run_dir), "--resume"]


def config_json_unknown_key(tmp_path, run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "warp_drive": 9}))
    return ["train", "--out", str(run_dir), "--resume"]


# ---------------------------------------------------------------------------------------------
# Archives (the tar reader's own cases: tests/wsl_diffusion/data/test_tar.py)


def _image_tar(tmp_path, fmt) -> bytes:
    """A train/test x two-class PNG dataset as tar bytes, each member with a pax comment."""
    import tarfile

    root = tmp_path / "images"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                _write_png(root / split / cls / f"{i}.png")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for path in sorted(root.rglob("*.png")):
            info = tar.gettarinfo(path, arcname=path.relative_to(root).as_posix())
            info.pax_headers = {"comment": "x"} if fmt == tarfile.PAX_FORMAT else {}
            with open(path, "rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


def tar_cut_at_a_member_boundary(tmp_path, run_dir):
    import tarfile

    raw = _image_tar(tmp_path, tarfile.GNU_FORMAT)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        tenth = tar.getmembers()[9]
    end = tenth.offset_data + -(-tenth.size // 512) * 512  # 10 of 12 images (1 of 3 of train/b), no end marker
    (tmp_path / "cut.tar").write_bytes(raw[:end])
    return [*TRAIN, "--dataset", str(tmp_path / "cut.tar"), *_out(tmp_path)]


def tar_pax_record_of_length_zero(tmp_path, run_dir):
    import tarfile

    raw = _image_tar(tmp_path, tarfile.PAX_FORMAT)
    assert b"13 comment=x\n" in raw
    (tmp_path / "pax0.tar").write_bytes(raw.replace(b"13 comment=x\n", b"00 comment=x\n", 1))
    return [*TRAIN, "--dataset", str(tmp_path / "pax0.tar"), *_out(tmp_path)]


CASES = {
    # archives
    "tar cut at a member boundary": tar_cut_at_a_member_boundary,
    "tar with a pax record of length 0": tar_pax_record_of_length_zero,
    # flags
    "threads -1": flag("--threads", "-1"),
    "device bogus": flag("--device", "bogus"),
    "device cuda without a GPU": train_on_cuda,
    "samples-per-class -1": flag("--samples-per-class", "-1"),
    "ema-halflife-kimg -1": flag("--ema-halflife-kimg", "-1"),
    "lambda-cls nan": flag("--lambda-cls", "nan"),
    "lr inf": flag("--lr", "inf"),
    "holdout 2": flag("--holdout", "2"),
    "validation 0.9": flag("--validation", "0.9"),
    "assumed-noise-rate nan": flag("--assumed-noise-rate", "nan"),
    "pu-prior 1.5": flag("--pu-prior", "1.5"),
    "evaluate limit 0": evaluate_limit("0"),
    "evaluate limit -5": evaluate_limit("-5"),
    "sample guidance nan": sample_guidance_nan,
    # label files
    "npz with a corrupt deflate stream": labels_corrupt_deflate,
    "format_version stored as a vector": labels_version_vector,
    "corrupt labels.npz in a run directory": run_labels_corrupt,
    # checkpoints
    "checkpoint is a foreign dict": checkpoint(lambda ckpt: {"weights": torch.zeros(3)}),
    "checkpoint is a bare tensor": checkpoint(lambda ckpt: torch.zeros(3)),
    "checkpoint without ema": checkpoint(_without("ema")),
    "checkpoint of the wrong class count": checkpoint(_wrong_class_count),
    "checkpoint with NaN weights (diverged)": checkpoint(_diverged),
    "classify a decompression bomb beside a good image": classify_with_bomb,
    # run directories and resume
    "resume with a changed --lr": resume_changed_flag,
    "a new run over an existing one": new_run_over_existing,
    "resume without a checkpoint": resume_without_checkpoint,
    "config.json that is not JSON": config_json_garbage,
    "config.json with an unknown key": config_json_unknown_key,
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2(name, tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    argv = CASES[name](tmp_path, run_dir)
    code = main(argv)
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, f"{name}: exit {code}, stderr {err!r}"
    assert "Traceback" not in err
    assert len(lines) == 1, f"{name}: {len(lines)} stderr lines: {err!r}"
    assert "error" in lines[0]
