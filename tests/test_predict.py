"""Tests of `python -m adder_jax.predict` and `inference.predict_files`: output, and a
one-line error with exit status 2 for every kind of bad input."""

import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from adder_jax import inference
from adder_jax import input_pipeline
from adder_jax import predict
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
  monkeypatch.setattr(input_pipeline, "load", lambda *args, **kwargs: pytest.fail("data read"))
  monkeypatch.setattr(train.Trainer, "__init__", lambda *args: pytest.fail("a Trainer was built"))
  predictor = inference.Predictor(trained_workdir)
  assert predictor.step == 12
  digits = np.zeros((5, 28, 28), np.uint8)
  predictions = predictor.predict(digits, [0, 1, 2, 3, 4])
  assert [p.number for p in predictions] == [0, 1, 2, 3, 4]
  assert all(p.image is None for p in predictions)


# Bad input: one line on stderr, exit status 2.


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


@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
def test_bad_image_file(tmp_path, images, capsys, kind):
  make, message = BAD_IMAGES[kind]
  bad = tmp_path / f"{kind}.png"
  make(bad)
  # The files are checked before the workdir, so none is needed here.
  status, out, err = run_cli(predict, ["--workdir", tmp_path / "no_workdir", "--number", "3",
                                       *image_args([images[0], str(bad)])], capsys)
  assert_one_line_error(status, err, str(bad), message)
  assert out == ""


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


def test_unreadable_config(tmp_path, trained_workdir, images, capsys):
  workdir = tmp_path / "workdir"
  shutil.copytree(trained_workdir, workdir)
  (workdir / "config.json").write_text("{not json")
  status, _, err = run_cli(predict, ["--workdir", workdir, "--number", "3",
                                     "--image", images[0]], capsys)
  assert_one_line_error(status, err, "config.json")
