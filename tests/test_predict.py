"""Tests of `python -m adder_jax.predict` and `inference.predict_files`: output, the
saved network inputs, a batch that survives its unreadable files (an error line each,
exit status 1), and a one-line error with exit status 2 for every other bad input."""

import json
import os
import pathlib
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from adder_jax import inference
from adder_jax import mnist
from adder_jax import predict
from adder_jax import preprocess
from adder_jax import train
from conftest import assert_one_line_error, run_cli
from test_preprocess import draw_digit, png_claiming_size


@pytest.fixture
def images(tmp_path):
  """Three digit images: grey PNG, black-on-white RGB JPEG, RGBA PNG."""
  paths = [tmp_path / "a.png", tmp_path / "b.jpg", tmp_path / "c.png"]
  draw_digit().save(paths[0])
  draw_digit(ink=(0, 0, 0), background=(255, 255, 255), mode="RGB").save(paths[1])
  draw_digit(ink=(0, 0, 0, 255), background=(0, 0, 0, 0), mode="RGBA").save(paths[2])
  return [str(p) for p in paths]


def image_args(paths):
  return [arg for path in paths for arg in ("--image", path)]


def test_prints_digit_and_sum_per_image(trained_workdir, images, capsys):
  status, out, err = run_cli(predict, ["--workdir", trained_workdir, "--number", "3",
                                       *image_args(images)], capsys)
  assert status == 0, err
  lines = out.strip().splitlines()
  assert len(lines) == 3
  for line, path in zip(lines, images):
    assert re.fullmatch(re.escape(path) + r": digit \d \(\d+\.\d%\), plus 3 makes sum \d+ "
                        r"\(\d+\.\d%\)", line), line


def test_json_output(trained_workdir, images, capsys):
  status, out, err = run_cli(predict, ["--workdir", trained_workdir, "--json",
                                       "--number", "1", "--number", "5", "--number", "9",
                                       *image_args(images)], capsys)
  assert status == 0, err
  predictions = json.loads(out)
  assert [p["image"] for p in predictions] == images
  assert [p["number"] for p in predictions] == [1, 5, 9]
  for p in predictions:
    assert 0 <= p["digit"] <= 9 and 0 <= p["sum"] <= 18
    assert len(p["digit_probabilities"]) == 10 and len(p["sum_probabilities"]) == 19
    assert sum(p["digit_probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert p["digit_probability"] == max(p["digit_probabilities"])
    assert p["sum_probability"] == max(p["sum_probabilities"])


def test_python_function_matches_the_command_line(trained_workdir, images, capsys):
  _, out, _ = run_cli(predict, ["--workdir", trained_workdir, "--json", "--number", "4",
                                *image_args(images)], capsys)
  from_cli = json.loads(out)
  predictions = inference.predict_files(trained_workdir, images, numbers=4)
  assert [p.digit for p in predictions] == [p["digit"] for p in from_cli]
  assert [p.sum for p in predictions] == [p["sum"] for p in from_cli]
  # The three images are the same digit in different files, so read the same.
  assert len({p.digit for p in predictions}) == 1


def test_predictor_on_arrays(trained_workdir, monkeypatch):
  # A trained model predicts without any MNIST data, and without a Trainer.
  monkeypatch.setattr(mnist, "load", lambda *args, **kwargs: pytest.fail("data read"))
  monkeypatch.setattr(train.Trainer, "__init__", lambda *args: pytest.fail("a Trainer was built"))
  predictor = inference.Predictor(trained_workdir)
  assert predictor.step == 12
  digits = np.zeros((5, 28, 28), np.uint8)
  predictions = predictor.predict(digits, [0, 1, 2, 3, 4])
  assert [p.number for p in predictions] == [0, 1, 2, 3, 4]
  assert all(p.image is None for p in predictions)


def test_save_preprocessed_writes_what_the_network_read(trained_workdir, images, tmp_path,
                                                       capsys):
  # Two files of one name in different directories are saved apart.
  (tmp_path / "other").mkdir()
  same_name = str(tmp_path / "other" / "a.png")
  draw_digit(ink=200).save(same_name)
  paths = images + [same_name]
  seen = tmp_path / "seen"
  status, out, err = run_cli(predict, ["--workdir", trained_workdir, "--number", "3",
                                       "--save_preprocessed", seen, *image_args(paths)], capsys)
  assert status == 0, err
  saved = [str(seen / name) for name in ("0_a.png", "1_b.png", "2_c.png", "3_a.png")]
  assert sorted(os.listdir(seen)) == sorted(os.path.basename(p) for p in saved)
  for line, path, saved_path in zip(out.strip().splitlines(), paths, saved):
    assert line.startswith(path + ": digit ") and line.endswith(f"; network input {saved_path}")
    np.testing.assert_array_equal(np.asarray(Image.open(saved_path)),
                                  preprocess.load_digit(path))
  predictions = inference.predict_files(trained_workdir, paths, 3, save_preprocessed=seen)
  assert [p.preprocessed_file for p in predictions] == saved


@pytest.mark.parametrize("make_target, message", [
    (lambda tmp_path, images: os.path.dirname(images[0]), "would overwrite the input image"),
    (lambda tmp_path, images: images[1], "cannot make the directory"),
])
def test_save_preprocessed_refuses_a_bad_directory(trained_workdir, images, tmp_path, capsys,
                                                   make_target, message):
  # c.png, the third image, would be saved as 2_c.png beside it: make that an input too.
  clash = os.path.join(os.path.dirname(images[0]), "2_c.png")
  shutil.copy(images[0], clash)
  paths = images + [clash]
  before = {path: open(path, "rb").read() for path in paths}
  status, out, err = run_cli(predict, ["--workdir", trained_workdir, "--number", "3",
                                       "--save_preprocessed", make_target(tmp_path, images),
                                       *image_args(paths)], capsys)
  assert_one_line_error(status, err, message)
  assert out == ""
  assert {path: open(path, "rb").read() for path in before} == before
  # Checked before anything is written.
  assert not any(os.path.exists(os.path.join(os.path.dirname(images[0]), name))
                 for name in ("0_a.png", "1_b.png", "3_2_c.png"))


# Unreadable image files: each gets an error line, the others their prediction.


def make_truncated(path):
  draw_digit().save(path)
  path.write_bytes(path.read_bytes()[:300])


def make_corrupt(path):
  draw_digit().save(path)
  data = bytearray(path.read_bytes())
  start = data.index(b"IDAT") + 8
  data[start:start + 40] = bytes(40)
  path.write_bytes(bytes(data))


BAD_IMAGES = {
    "missing": (lambda path: None, "does not exist"),
    "directory": (lambda path: path.mkdir(), "cannot read"),
    "not_an_image": (lambda path: path.write_text("hello"), "is not a PNG, JPEG or BMP image"),
    "truncated": (make_truncated, "truncated or corrupt"),
    "corrupt": (make_corrupt, "truncated or corrupt"),
    "huge": (lambda path: png_claiming_size(path, 20000, 20000), "too large"),
    "flat_colour": (lambda path: Image.new("RGB", (50, 50), (200, 10, 10)).save(path),
                    "one flat colour"),
}


@pytest.fixture
def bad_images(tmp_path):
  """{path: words its error names}: one file of every kind that cannot be read."""
  (tmp_path / "bad").mkdir()
  expected = {}
  for kind, (make, message) in sorted(BAD_IMAGES.items()):
    path = tmp_path / "bad" / f"{kind}.png"
    make(path)
    expected[str(path)] = message
  return expected


def assert_error_line_per_file(status, err, expected):
  assert status == 1, err
  assert "Traceback" not in err
  lines = err.strip().splitlines()
  assert len(lines) == len(expected), err
  for line, (path, message) in zip(lines, expected.items()):
    assert line.startswith("error: ") and path in line and message in line, line


def test_batch_survives_unreadable_files(trained_workdir, images, bad_images, capsys):
  # Good and bad files interleaved, a number each: every good one is predicted, in order,
  # with its own number.
  paths = [images[0], *bad_images, images[1], images[2]]
  numbers = [str(i % 10) for i in range(len(paths))]
  status, out, err = run_cli(predict, ["--workdir", trained_workdir, *image_args(paths),
                                       *[arg for n in numbers for arg in ("--number", n)]],
                             capsys)
  assert_error_line_per_file(status, err, bad_images)
  lines = out.strip().splitlines()
  assert [line.split(": digit ")[0] for line in lines] == images
  # The same digits and sums as when the good files are alone with their numbers.
  alone = inference.predict_files(trained_workdir, images,
                                  [int(numbers[0]), int(numbers[-2]), int(numbers[-1])])
  assert lines == [predict.format_text(p) for p in alone]


def test_batch_survives_unreadable_files_in_json(trained_workdir, images, bad_images, capsys):
  paths = [*bad_images, *images]
  status, out, err = run_cli(predict, ["--workdir", trained_workdir, "--number", "3",
                                       "--json", *image_args(paths)], capsys)
  assert_error_line_per_file(status, err, bad_images)
  entries = json.loads(out)
  assert [entry["image"] for entry in entries] == paths
  for entry, (path, message) in zip(entries, bad_images.items()):
    assert message in entry["error"] and f"error: {entry['error']}" in err
    assert entry["digit"] is None and entry["sum"] is None and entry["number"] == 3
  for entry in entries[len(bad_images):]:
    assert entry["error"] is None and 0 <= entry["digit"] <= 9


def test_python_api_gives_the_error_of_each_unreadable_file(trained_workdir, images,
                                                             bad_images, tmp_path):
  paths = [images[0], *bad_images]
  predictions = inference.predict_files(trained_workdir, paths, 3,
                                        save_preprocessed=tmp_path / "seen")
  assert predictions[0].error is None and predictions[0].digit is not None
  for prediction, (path, message) in zip(predictions[1:], bad_images.items()):
    assert prediction.image == path and message in prediction.error
    assert prediction.digit is None and prediction.preprocessed_file is None
  assert os.listdir(tmp_path / "seen") == [os.path.basename(predictions[0].preprocessed_file)]


def test_no_readable_file(trained_workdir, bad_images, capsys):
  status, out, err = run_cli(predict, ["--workdir", trained_workdir, "--number", "3",
                                       *image_args(bad_images)], capsys)
  assert_error_line_per_file(status, err, bad_images)
  assert out == ""


# Other bad input: one line on stderr, exit status 2.


def test_bad_workdir_comes_before_bad_files(tmp_path, bad_images, capsys):
  status, out, err = run_cli(predict, ["--workdir", tmp_path / "no_workdir", "--number", "3",
                                       *image_args(bad_images)], capsys)
  assert_one_line_error(status, err, "workdir", "does not exist")
  assert out == ""


@pytest.mark.parametrize("as_path", [str, pathlib.Path])
def test_python_api_takes_one_path(trained_workdir, images, as_path):
  predictions = inference.predict_files(trained_workdir, as_path(images[0]), 3)
  assert len(predictions) == 1 and predictions[0].image == images[0]
  assert predictions[0].error is None


@pytest.mark.parametrize("numbers, message", [
    (["10"], "from 0 to 9, got 10"),
    (["-1"], "from 0 to 9, got -1"),
    (["3.5"], "must be an integer from 0 to 9, got '3.5'"),
    (["three"], "must be an integer from 0 to 9, got 'three'"),
    ([""], "must be an integer"),
    (["1", "2"], "got 2 numbers for 3 images"),
])
def test_bad_number(trained_workdir, images, capsys, numbers, message):
  number_args = [arg for n in numbers for arg in ("--number", n)]
  status, _, err = run_cli(predict, ["--workdir", trained_workdir, *number_args,
                                     *image_args(images)], capsys)
  assert_one_line_error(status, err, message)


def test_workdir_does_not_exist(tmp_path, images, capsys):
  status, _, err = run_cli(predict, ["--workdir", tmp_path / "nowhere", "--number", "3",
                                     "--image", images[0]], capsys)
  assert_one_line_error(status, err, "does not exist")
  assert not os.path.exists(tmp_path / "nowhere")


@pytest.mark.parametrize("with_config", [False, True])
def test_workdir_without_checkpoint(trained_workdir, tmp_path, images, capsys, with_config):
  workdir = tmp_path / "untrained"
  workdir.mkdir()
  if with_config:  # As training leaves it when stopped before its first checkpoint.
    shutil.copy(os.path.join(trained_workdir, "config.json"), workdir)
    (workdir / "checkpoints").mkdir()
  status, _, err = run_cli(predict, ["--workdir", workdir, "--number", "3",
                                     "--image", images[0]], capsys)
  assert_one_line_error(status, err, "has no checkpoint")


@pytest.mark.parametrize("change", [
    {"conv_layers": "16 16 M 64 64 M"},  # Other shapes.
    {"dense_features": [256, 64]},  # An extra layer.
    {"batch_norm": False},  # No BatchNorm statistics.
])
def test_checkpoint_from_another_model_config(trained_workdir, tmp_path, images, capsys,
                                              change):
  workdir = tmp_path / "workdir"
  shutil.copytree(trained_workdir, workdir)
  with open(workdir / "config.json") as f:
    config = json.load(f)
  config["model"].update(change)
  with open(workdir / "config.json", "w") as f:
    json.dump(config, f)
  status, _, err = run_cli(predict, ["--workdir", workdir, "--number", "3",
                                     "--image", images[0]], capsys)
  assert_one_line_error(status, err, "does not fit this model config")


def test_a_config_without_data_pairing_reads_as_fresh(tmp_path, trained_workdir):
  workdir = tmp_path / "workdir"
  shutil.copytree(trained_workdir, workdir)
  saved = json.loads((workdir / "config.json").read_text())
  del saved["data"]["pairing"]
  (workdir / "config.json").write_text(json.dumps(saved))
  assert inference.load_config(str(workdir)).data.pairing == "fresh"


def test_unreadable_config(tmp_path, trained_workdir, images, capsys):
  workdir = tmp_path / "workdir"
  shutil.copytree(trained_workdir, workdir)
  (workdir / "config.json").write_text("{not json")
  status, _, err = run_cli(predict, ["--workdir", workdir, "--number", "3",
                                     "--image", images[0]], capsys)
  assert_one_line_error(status, err, "config.json")
