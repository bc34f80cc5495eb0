"""Misuse of the command line ends in one clear line (exit 2), never a
traceback, and never destroys earlier work."""

import io
import os
import tarfile

import numpy as np
import pytest

from keras_clip import cli

TINY = ["training.batch_size=8", "training.epochs=1", "model.image_encoder.layers=1", "model.text_encoder.layers=1",
        "eval.every_epochs=0"]


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    from PIL import Image

    from keras_clip.data import ShapesDataset

    root = tmp_path_factory.mktemp("pngs")
    data = ShapesDataset(image_size=32, seed=5).generate("test", 16)
    rows = ["filepath,caption"]
    for i, (image, caption) in enumerate(zip(data["images"], data["captions"])):
        Image.fromarray(image).save(root / f"{i}.png")
        rows.append(f"{i}.png,{caption}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


def _error_line(capsys, command):
    """Runs `keras-clip COMMAND...`; returns its one stderr line (exit 2)."""
    capsys.readouterr()
    assert cli.main(command) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"keras-clip {command[0]}: error: ")
    return err[0]


@pytest.fixture(scope="module")
def file_run(pngs, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run") / "run")
    assert cli.main(["train", "--data", str(pngs / "train.csv"), "--output-dir", out, "--set", *TINY]) == 0
    return out


def test_training_on_files_without_eval_data_succeeds(file_run, capsys):
    assert os.path.isfile(os.path.join(file_run, "model.keras"))


def test_the_same_command_again_refuses_and_keeps_the_run(file_run, pngs, capsys):
    before = os.path.getmtime(os.path.join(file_run, "model.keras"))
    line = _error_line(capsys, ["train", "--data", str(pngs / "train.csv"), "--output-dir", file_run, "--set", *TINY])
    assert "finished run (1 epochs)" in line and "--overwrite" in line
    assert os.path.getmtime(os.path.join(file_run, "model.keras")) == before


def test_predict_names_bad_images_and_ranks_the_rest(file_run, pngs, tmp_path, capsys):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    line = _error_line(capsys, ["predict", file_run, "--image", str(tmp_path / "empty.png"), "--texts", "a red circle"])
    assert "empty.png" in line and "empty (0 bytes)" in line
    line = _error_line(capsys, ["predict", file_run, "--image", str(tmp_path / "broken.png"), "--texts", "a red circle"])
    assert "broken.png" in line and "cannot be decoded" in line
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes((pngs / f"{i}.png").read_bytes())
    (folder / "bad.png").write_bytes(b"garbage")
    capsys.readouterr()
    assert cli.main(["predict", file_run, "--text", "a red circle", "--images", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "skipped: Image file" in out and "bad.png" in out and "(1 unreadable skipped)" in out
    ranked = [line for line in out.splitlines() if " p=" in line]
    assert len(ranked) == 3 and not any("bad.png" in line for line in ranked)


def test_export_refuses_an_existing_version_and_a_file_as_output(file_run, tmp_path, capsys):
    base = tmp_path / "serving"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"x")
    line = _error_line(capsys, ["export", file_run, "--output", str(base), "--version", "1"])
    assert "already exists" in line and (base / "1" / "saved_model.pb").read_bytes() == b"x"
    (tmp_path / "afile").write_text("x")
    line = _error_line(capsys, ["export", file_run, "--output", str(tmp_path / "afile")])
    assert "is a file" in line


def test_other_mistakes_are_one_line(tmp_path, capsys):
    line = _error_line(capsys, ["report", str(tmp_path / "nowhere")])
    assert "nowhere" in line and "error: 2" not in line
    # An OSError raised by the system carries (errno, text, path): its text is printed, not the errno.
    (tmp_path / "afile").write_text("x")
    line = _error_line(capsys, ["train", "--output-dir", str(tmp_path / "afile" / "run"), "--set", *TINY])
    assert "Not a directory" in line and "afile" in line
    line = _error_line(capsys, ["train", "--output-dir", str(tmp_path / "r"), "--set", "training.epochs=abc"])
    assert "'training.epochs' must be an integer" in line and "'abc'" in line
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  epochs: [1\n  batch_size: 2\n")
    line = _error_line(capsys, ["train", "--config", str(bad), "--output-dir", str(tmp_path / "r")])
    assert "bad.yaml" in line and "line 3" in line


def test_strict_mode_stops_at_a_bad_image_in_a_shard_in_one_line(pngs, tmp_path, capsys):
    shard = tmp_path / "data-000.tar"
    with tarfile.open(shard, "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for i in range(8):
            add(f"{i:03d}.png", (pngs / f"{i}.png").read_bytes())
            add(f"{i:03d}.txt", b"a shape")
        add("008.png", b"not a png")
        add("008.txt", b"a broken image")
    line = _error_line(capsys, ["train", "--data", str(shard), "--strict", "--output-dir", str(tmp_path / "r"),
                                "--set", *TINY])
    assert "008" in line and "Traceback" not in line


def test_logs_in_a_file_are_one_line_per_epoch_and_quiet(pngs, tmp_path):
    """stdout to a file: no progress-bar redraws, the bad-record list once,
    one count line per epoch; no TensorFlow start-up lines on stderr."""
    import subprocess
    import sys

    rows = (pngs / "train.csv").read_text().splitlines() + ["missing.png,a lost image"]
    csv = tmp_path / "train.csv"
    csv.write_text("\n".join([rows[0]] + [f"{pngs}/{r}" for r in rows[1:]]) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    settings = [s.replace("training.epochs=1", "training.epochs=2") for s in TINY]
    out = subprocess.run(
        [sys.executable, "-m", "keras_clip_cli", "train", "--data", str(csv), "--output-dir", str(tmp_path / "r"),
         "--set", *settings],
        capture_output=True, text=True, env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "\r" not in out.stdout and "\x08" not in out.stdout
    assert len([line for line in out.stdout.splitlines() if line.startswith("Epoch ") and "/2" in line]) == 2
    assert sum("bad record(s) skipped (missing_file 1)" in line for line in out.stdout.splitlines()) == 2
    assert out.stdout.count("missing.png") == 1  # the list, once, at the end
    # TensorFlow's start-up lines. (A later runtime line from tf.data under
    # JAX, "oneDNN supports DT_INT64 only on platforms with AVX-512", comes from
    # C++ logging that TensorFlow 2.21 no longer ties to TF_CPP_MIN_LOG_LEVEL.)
    for noise in ("oneDNN custom operations", "cuInit", "cpu_feature_guard", "cudart_stub"):
        assert noise not in out.stderr, out.stderr[-2000:]
