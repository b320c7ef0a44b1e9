"""The demo page in a real headless browser: `python -m adder_jax.demo` is started on a
free local port, Chromium (driven by Playwright) picks a number, draws a 7 on the pad,
reads the page, picks another number, and uploads a file that is not an image; a
two-image run's page gets a digit on each of its pads. Each server is then stopped with
Ctrl-C and must exit cleanly, leaving no process behind.

Needs Debian's `chromium` (or ADDER_JAX_CHROMIUM naming a Chromium executable), the
`[demo]` extra and Playwright (`[test]`); without them the tests skip, saying which is
missing. The page may fetch nothing beyond this computer: any other request fails the
test. The slow test runs the model trained on real MNIST (see
test_real_world_images.py) and saves its screenshot to ADDER_JAX_DEMO_SCREENSHOT when set.
"""

import contextlib
import os
import re
import shutil

import pytest

CHROMIUM = os.environ.get("ADDER_JAX_CHROMIUM") or shutil.which("chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="Chromium is not installed "
                                "(apt-get install chromium, or set ADDER_JAX_CHROMIUM)")
pytest.importorskip("gradio", reason='Gradio is not installed (pip install -e ".[demo]")')
sync_api = pytest.importorskip("playwright.sync_api",
                               reason='Playwright is not installed (pip install -e ".[test]")')

from benchmarks import demo_latency  # pylint: disable=wrong-import-position

NUMBER, OTHER_NUMBER = 5, 2
# A one as a person draws it: a vertical bar.
ONE = [(0.5, 0.15), (0.5, 0.85)]


@contextlib.contextmanager
def page_of(workdir, scratch_dir, outside, pads=1):
  """The demo of `workdir` opened in headless Chromium; yields (server, page). Requests
  beyond this computer are refused and recorded in `outside`."""
  with demo_latency.demo_server(workdir, scratch_dir) as server, \
      sync_api.sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    try:
      page = browser.new_page(viewport={"width": 1280, "height": 1000})
      demo_latency.stay_local(page, outside)
      demo_latency.open_page(page, server.url, pads)
      yield server, page
    finally:
      browser.close()


def _probabilities(page, label):
  """The probabilities the bar chart with the element id `label` shows, by class."""
  return page.eval_on_selector_all(
      f"#{label} meter", "bars => Object.fromEntries(bars.map("
      "bar => [bar.getAttribute('aria-label'), bar.value]))")


def _read(page, slots=1):
  """The answer, the bar charts and the sizes of the network inputs the page shows."""
  page.wait_for_function("document.querySelectorAll('#sum-probabilities meter').length === 19")
  return {"answer": page.locator("#answer").inner_text(),
          "digits": [_probabilities(page, f"digit-probabilities-{i}") for i in range(slots)],
          "sums": _probabilities(page, "sum-probabilities"),
          "network_inputs": [page.eval_on_selector(
              f"#network-input-{i} img", "img => [img.naturalWidth, img.naturalHeight]")
                             for i in range(slots)]}


def _check_distributions(seen):
  for digits in seen["digits"]:
    assert sorted(digits, key=int) == [str(d) for d in range(10)]
    assert sum(digits.values()) == pytest.approx(1.0, abs=1e-3)
  assert sorted(seen["sums"], key=int) == [str(s) for s in range(19)]
  assert sum(seen["sums"].values()) == pytest.approx(1.0, abs=1e-3)
  assert seen["network_inputs"] == [[28 * 8, 28 * 8]] * len(seen["digits"])


def _check_stopped_cleanly(server, outside):
  assert outside == []
  # Ctrl-C stopped the server, and nothing it started outlived it.
  assert server.exit_status == 0, server.output()
  assert server.left_running is False


def use_the_page(workdir, screenshot, scratch_dir):
  """Picks NUMBER, draws a 7, checks and saves what the page shows, picks OTHER_NUMBER,
  then uploads a text file. Returns the digit and sum read with NUMBER."""
  outside = []
  with page_of(workdir, scratch_dir, outside) as (server, page):
    page.locator("#number label", has_text=str(NUMBER)).click()
    demo_latency.draw(page, "pad-0", demo_latency.SEVEN)
    demo_latency.wait_for_answer(page, f"+ {NUMBER} =")
    first = _read(page)
    page.screenshot(path=screenshot, full_page=True)
    page.locator("#number label", has_text=str(OTHER_NUMBER)).click()
    demo_latency.wait_for_answer(page, f"+ {OTHER_NUMBER} =")
    second = _read(page)
    page.get_by_role("tab", name="Upload").click()
    text_file = os.path.join(scratch_dir, "notes.txt")
    with open(text_file, "w") as f:
      f.write("not an image")
    page.locator("#upload-0 input[type=file]").set_input_files(text_file)
    demo_latency.wait_for_answer(page, "error")
    upload_answer = page.locator("#answer").inner_text()
  _check_stopped_cleanly(server, outside)

  match = re.match(rf"(\d) \+ {NUMBER} = (\d+)\n", first["answer"])
  assert match, first["answer"]
  digit, total = int(match.group(1)), int(match.group(2))
  _check_distributions(first)
  assert max(first["digits"][0], key=first["digits"][0].get) == str(digit)
  assert max(first["sums"], key=first["sums"].get) == str(total)
  # Another number: the same digit, a new sum.
  _check_distributions(second)
  assert second["answer"].startswith(f"{digit} + {OTHER_NUMBER} = ")
  assert second["digits"] == first["digits"] and second["sums"] != first["sums"]
  assert upload_answer == "error: notes.txt is not a PNG, JPEG or BMP image."
  return digit, total


@pytest.mark.slow
def test_a_drawn_digit_gets_an_answer(trained_workdir, tmp_path):
  use_the_page(trained_workdir, str(tmp_path / "demo.png"), str(tmp_path))
  assert (tmp_path / "demo.png").stat().st_size > 0


@pytest.mark.slow
def test_a_two_image_run_adds_the_digits_of_its_two_pads(two_image_workdir, tmp_path):
  outside = []
  with page_of(two_image_workdir, str(tmp_path), outside, pads=2) as (server, page):
    demo_latency.draw(page, "pad-0", demo_latency.SEVEN)
    demo_latency.wait_for_answer(page, "Draw a digit on each pad")
    demo_latency.draw(page, "pad-1", ONE)
    demo_latency.wait_for_answer(page, "=")
    seen = _read(page, slots=2)
  _check_stopped_cleanly(server, outside)
  match = re.match(r"(\d) \+ (\d) = (\d+)\n", seen["answer"])
  assert match, seen["answer"]
  _check_distributions(seen)
  for digits, digit in zip(seen["digits"], match.groups()[:2]):
    assert max(digits, key=digits.get) == digit
  assert max(seen["sums"], key=seen["sums"].get) == match.group(3)


@pytest.mark.slow
def test_a_drawn_seven_is_read_by_the_mnist_model(real_mnist_workdir, tmp_path):
  workdir = real_mnist_workdir
  screenshot = os.environ.get("ADDER_JAX_DEMO_SCREENSHOT") or str(tmp_path / "demo.png")
  assert use_the_page(workdir, screenshot, str(tmp_path)) == (7, 7 + NUMBER)
