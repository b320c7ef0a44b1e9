"""Tests of the demo page's answers (`demo.Demo`, `read_drawing`, `read_upload`), of
`inference.Predictor.predict_pairs`, and of `python -m adder_jax.demo`'s errors. The page
in a real browser: test_demo_browser.py."""

import json
import os
import socket
import subprocess
import sys
import urllib.request

import numpy as np
from PIL import Image
import pytest

from adder_jax import demo
from adder_jax import inference
from adder_jax import preprocess
from benchmarks.demo_latency import demo_server, drawn_like, free_port
from conftest import assert_one_line_error, copy_of, run_cli
from test_preprocess import draw_digit


@pytest.fixture(scope="module")
def predictor(trained_workdir):
  return inference.Predictor(trained_workdir)


@pytest.fixture(scope="module")
def page_demo(predictor):
  return demo.Demo(predictor)


def test_a_drawing_is_answered_as_predict_reads_it(page_demo, predictor, tmp_path):
  drawing = drawn_like(preprocess.mnist_style(np.asarray(draw_digit(), np.float32)))
  network_input = demo.read_drawing(drawing)
  # The network input predict makes of the same drawing saved as a file.
  Image.fromarray(drawing["composite"]).save(tmp_path / "drawing.png")
  np.testing.assert_array_equal(network_input, preprocess.load_digit(str(tmp_path / "drawing.png")))
  answer = page_demo.answer([network_input], 4)
  expected = predictor.predict(network_input[None], 4)[0]
  assert answer.text.startswith(f"## {expected.digit} + 4 = {expected.sum}\n")
  (digits,) = answer.digit_probabilities
  assert list(digits) == [str(d) for d in range(10)]
  assert list(answer.sum_probabilities) == [str(s) for s in range(19)]
  assert sum(digits.values()) == pytest.approx(1.0, abs=1e-5)
  assert sum(answer.sum_probabilities.values()) == pytest.approx(1.0, abs=1e-5)
  np.testing.assert_allclose(list(digits.values()), expected.digit_probabilities, rtol=1e-6)
  # The network input is shown enlarged, pixel for pixel.
  (shown,) = answer.network_inputs
  assert shown.shape == (28 * demo.ZOOM, 28 * demo.ZOOM)
  np.testing.assert_array_equal(shown[::demo.ZOOM, ::demo.ZOOM], network_input)


def test_the_number_changes_only_the_sum_input(page_demo):
  network_input = demo.read_drawing(drawn_like(preprocess.mnist_style(
      np.asarray(draw_digit(), np.float32))))
  first, second = page_demo.answer([network_input], 0), page_demo.answer([network_input], 9)
  assert first.digit_probabilities == second.digit_probabilities
  assert first.sum_probabilities != second.sum_probabilities
  assert "+ 0 =" in first.text and "+ 9 =" in second.text
  with pytest.raises(ValueError, match="one per image slot"):
    page_demo.answer([network_input, network_input], 0)


@pytest.mark.parametrize("value, expected", [(5, 5), ("5", 5), (" 0", 0), (np.int64(9), 9)])
def test_the_number_is_an_int_or_a_digit_string(value, expected):
  assert demo.read_number(value) == expected


@pytest.mark.parametrize("value", ["x", "55", "", 10, -1, 5.0, True, None, [5]])
def test_any_other_number_is_the_pages_one_line_error(page_demo, value):
  network_input = demo.read_drawing(drawn_like(preprocess.mnist_style(
      np.asarray(draw_digit(), np.float32))))
  answer = page_demo.answer([network_input], value)
  assert answer.text == (f"**error:** the number to add must be one of 0-9, as an int or a "
                         f"string such as '5'; got {value!r}.")
  assert answer.sum_probabilities is None


@pytest.mark.parametrize("value", [None, {"composite": None},
                                   {"composite": np.full((280, 280), 255, np.uint8)}])
def test_an_empty_pad_asks_for_a_digit(page_demo, value):
  assert demo.read_drawing(value) is None
  answer = page_demo.answer([demo.read_drawing(value)], 3)
  assert answer.text == "Draw a digit (or upload an image file)."
  assert answer.network_inputs == (None,) and answer.sum_probabilities is None


def test_an_upload_is_read_as_predict_reads_a_file(page_demo, tmp_path):
  path = tmp_path / "seven.jpg"
  draw_digit(ink=(0, 0, 0), background=(255, 255, 255), mode="RGB").save(path)
  network_input = demo.read_upload(str(path))
  np.testing.assert_array_equal(network_input, preprocess.load_digit(str(path)))
  assert page_demo.answer([network_input], 2).text.startswith("## ")


def test_an_upload_that_is_not_an_image_is_one_error_line(page_demo, tmp_path):
  path = tmp_path / "notes.txt"
  path.write_text("not an image")
  message = demo.read_upload(str(path))
  assert message == "notes.txt is not a PNG, JPEG or BMP image."
  answer = page_demo.answer([message], 3)
  assert answer.text == f"**error:** {message}"
  assert answer.sum_probabilities is None and answer.network_inputs == (None,)


@pytest.mark.slow
def test_predict_pairs_reads_both_digits(two_image_workdir):
  predictor = inference.Predictor(two_image_workdir)
  first = [preprocess.mnist_style(np.asarray(draw_digit(offset=(k, 0)), np.float32))
           for k in (0, 3, -2)]
  second = [np.rot90(image) for image in first]
  pairs = predictor.predict_pairs(first, second)
  assert len(pairs) == 3
  # Each pair is read as it is alone, and each digit as it is in any pair.
  for i, pair in enumerate(pairs):
    alone = predictor.predict_pairs(first[i:i + 1], second[i:i + 1])[0]
    assert alone.digits == pair.digits and alone.sum == pair.sum
    np.testing.assert_allclose(alone.sum_probabilities, pair.sum_probabilities, atol=1e-6)
    assert pair.digits == tuple(int(np.argmax(p)) for p in pair.digit_probabilities)
    assert sum(pair.sum_probabilities) == pytest.approx(1.0, abs=1e-5)
  swapped = predictor.predict_pairs(second[:1], first[:1])[0]
  assert swapped.digits == pairs[0].digits[::-1]
  with pytest.raises(inference.UserError, match="predict reads 'image_plus_number' runs"):
    predictor.predict(first, 3)
  # The predict command refuses the run before its checkpoint loads.
  with pytest.raises(inference.UserError, match="predict reads 'image_plus_number' runs"):
    inference.predict_files(two_image_workdir, ["any.png"], 3)


@pytest.mark.slow
def test_a_two_image_run_gets_two_pads_and_their_sum(two_image_workdir):
  page_demo = demo.Demo(inference.Predictor(two_image_workdir))
  assert page_demo.slots == 2
  first = preprocess.mnist_style(np.asarray(draw_digit(), np.float32))
  assert page_demo.answer([first, None]).text == (
      "Draw a digit on each pad (or upload an image file).")
  answer = page_demo.answer([first, np.rot90(first)])
  pair = page_demo.predictor.predict_pairs([first], [np.rot90(first)])[0]
  assert answer.text.startswith(f"## {pair.digits[0]} + {pair.digits[1]} = {pair.sum}\n")
  assert len(answer.digit_probabilities) == 2 and len(answer.network_inputs) == 2


@pytest.mark.slow
def test_the_page_is_built_for_both_kinds_of_run(page_demo, two_image_workdir):
  gr = pytest.importorskip("gradio", reason="the [demo] extra is not installed")
  one = demo.build_page(gr, page_demo)
  two = demo.build_page(gr, demo.Demo(inference.Predictor(two_image_workdir)))
  ids = lambda page: {block.elem_id for block in page.blocks.values() if block.elem_id}
  assert {"pad-0", "upload-0", "number", "answer", "network-input-0",
          "digit-probabilities-0", "sum-probabilities"} <= ids(one)
  assert {"pad-0", "pad-1", "digit-probabilities-1", "network-input-1"} <= ids(two)
  assert "number" not in ids(two)


def test_missing_gradio_says_how_to_install_it(trained_workdir, capsys, monkeypatch):
  monkeypatch.setitem(sys.modules, "gradio", None)
  status, _, err = run_cli(demo, ["--workdir", trained_workdir], capsys)
  assert_one_line_error(status, err, "needs Gradio", 'pip install -e ".[demo]"')


def test_a_workdir_without_checkpoint_is_one_error_line(tmp_path, capsys):
  pytest.importorskip("gradio", reason="the [demo] extra is not installed")
  status, _, err = run_cli(demo, ["--workdir", tmp_path, "--port", free_port()], capsys)
  assert_one_line_error(status, err, "has no checkpoint")


def test_a_multi_digit_run_is_refused(trained_workdir, tmp_path, capsys):
  pytest.importorskip("gradio", reason="the [demo] extra is not installed")
  workdir = copy_of(trained_workdir, tmp_path)
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  config.update(task="multi_digit", supervision="sum_only")
  config["model"]["sum_head"] = "exact"
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(config, f)
  status, _, err = run_cli(demo, ["--workdir", workdir, "--port", free_port()], capsys)
  assert_one_line_error(status, err, "'multi_digit' task", "the demo reads "
                        "'image_plus_number' and 'two_images' runs")


@pytest.mark.slow
def test_the_server_starts_on_the_loopback_address_and_stops_cleanly(trained_workdir,
                                                                      tmp_path):
  pytest.importorskip("gradio", reason="the [demo] extra is not installed")
  from gradio_client import Client  # pylint: disable=import-outside-toplevel
  with demo_server(trained_workdir, str(tmp_path)) as server:
    assert server.url.startswith("http://127.0.0.1:")
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
        server.url, timeout=30) as response:
      assert response.status == 200 and b"adder_jax demo" in response.read()
    # The API takes the number as Gradio's API description lists it (a string) or as an
    # int, and answers anything else with the page's one-line error.
    client = Client(server.url, verbose=False)
    answers = {value: client.predict(value, api_name="/number")[0]
               for value in ("5", 5, "x", 12)}
  assert answers["5"] == answers[5] == "Draw a digit (or upload an image file)."
  for value in ("x", 12):
    assert answers[value] == (f"**error:** the number to add must be one of 0-9, as an int or "
                              f"a string such as '5'; got {value!r}.")
  assert "Serving the demo on http://127.0.0.1:" in server.output()
  assert "Traceback" not in server.output()
  assert server.exit_status == 0 and server.left_running is False, server.output()


@pytest.mark.parametrize("host, port, expected", [
    ("127.0.0.1", 7860, "http://127.0.0.1:7860"), ("::1", 80, "http://[::1]:80"),
    ("0.0.0.0", 7860, "port 7860 of every address of this computer")])
def test_the_page_address_is_one_a_browser_opens(host, port, expected):
  assert demo.page_address(host, port).startswith(expected)


@pytest.mark.slow
def test_a_port_out_of_range_is_one_error_line(tmp_path):
  result = subprocess.run([sys.executable, "-m", "adder_jax.demo", "--workdir", str(tmp_path),
                           "--port", "65536"], capture_output=True, text=True, timeout=120)
  assert_one_line_error(result.returncode, result.stderr, "--port")


def test_a_host_that_is_not_this_computer_is_one_error_line(trained_workdir, capsys):
  pytest.importorskip("gradio", reason="the [demo] extra is not installed")
  status, _, err = run_cli(demo, ["--workdir", trained_workdir, "--host", "300.1.1.1"], capsys)
  assert_one_line_error(status, err, "cannot serve the demo on 300.1.1.1:7860")


def test_a_port_in_use_is_one_error_line(trained_workdir, capsys):
  pytest.importorskip("gradio", reason="the [demo] extra is not installed")
  with socket.socket() as taken:
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    status, _, err = run_cli(demo, ["--workdir", trained_workdir, "--port", port], capsys)
  assert_one_line_error(status, err, f"127.0.0.1:{port}", "choose another --port")


def test_installing_the_demo_keeps_the_pillow_of_the_core_install():
  """Every Pillow the core dependencies accept, Gradio accepts too, so that pip never
  replaces it when the [demo] extra is installed later."""
  pytest.importorskip("gradio", reason="the [demo] extra is not installed")
  import tomllib  # pylint: disable=import-outside-toplevel
  from importlib import metadata  # pylint: disable=import-outside-toplevel
  from packaging.requirements import Requirement  # pylint: disable=import-outside-toplevel
  with open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml"), "rb") as f:
    core = [Requirement(r) for r in tomllib.load(f)["project"]["dependencies"]]
  (ours,) = [r.specifier for r in core if r.name.lower() == "pillow"]
  (gradios,) = [Requirement(r).specifier for r in metadata.requires("gradio")
                if Requirement(r).name.lower() == "pillow"]
  versions = [f"{major}.{minor}.0" for major in range(8, 30) for minor in range(10)]
  assert [v for v in ours.filter(versions) if v not in gradios] == []
