"""The demo page in a real headless browser: `python -m adder_jax.demo` is started on a
free local port, Chromium (driven by Playwright) draws a 7 on the pad, picks a number,
reads the page and uploads a file that is not an image; then the server is stopped with
Ctrl-C and must leave no process behind.

Needs Debian's `chromium` (or ADDER_JAX_CHROMIUM naming a Chromium executable), the
`[demo]` extra and Playwright (`[test]`); without them the tests skip, saying which is
missing. The page may fetch nothing beyond this computer: any other request fails the
test. The slow test runs the model trained on real MNIST (see
test_real_world_images.py) and saves its screenshot to ADDER_JAX_DEMO_SCREENSHOT when set.
"""

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

NUMBER = 5


def _probabilities(page, label):
  """The probabilities the bar chart with the element id `label` shows, by class."""
  return page.eval_on_selector_all(
      f"#{label} meter", "bars => Object.fromEntries(bars.map("
      "bar => [bar.getAttribute('aria-label'), bar.value]))")


def use_the_page(workdir, screenshot, scratch_dir):
  """Picks NUMBER, draws a 7, reads what the page shows and saves a screenshot; then
  uploads a text file. Returns what was read, with the server's exit status and
  whether any process of it was left."""
  outside = []
  with demo_latency.demo_server(workdir) as (url, process), \
      sync_api.sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    try:
      page = browser.new_page(viewport={"width": 1280, "height": 1000})
      demo_latency.stay_local(page, outside)
      demo_latency.open_page(page, url)
      page.locator("#number label", has_text=str(NUMBER)).click()
      demo_latency.draw(page, "pad-0", demo_latency.SEVEN)
      demo_latency.wait_for_answer(page, f"+ {NUMBER} =")
      seen = {"answer": page.locator("#answer").inner_text(),
              "digits": _probabilities(page, "digit-probabilities-0"),
              "sums": _probabilities(page, "sum-probabilities"),
              "network_input": page.locator("#network-input-0 img").count()}
      page.screenshot(path=screenshot, full_page=True)
      page.get_by_role("tab", name="Upload").click()
      text_file = os.path.join(scratch_dir, "notes.txt")
      with open(text_file, "w") as f:
        f.write("not an image")
      page.locator("#upload-0 input[type=file]").set_input_files(text_file)
      demo_latency.wait_for_answer(page, "error")
      seen["upload_answer"] = page.locator("#answer").inner_text()
    finally:
      browser.close()
  seen["outside"] = outside
  seen["exit_status"] = process.returncode
  try:
    os.killpg(process.pid, 0)
    seen["left_running"] = True
  except ProcessLookupError:
    seen["left_running"] = False
  return seen


def check_page(seen):
  """What every model's page must show, whatever digit it reads: returns (digit, sum)."""
  match = re.match(rf"(\d) \+ {NUMBER} = (\d+)\n", seen["answer"])
  assert match, seen["answer"]
  digit, total = int(match.group(1)), int(match.group(2))
  assert sorted(seen["digits"], key=int) == [str(d) for d in range(10)]
  assert sorted(seen["sums"], key=int) == [str(s) for s in range(19)]
  assert sum(seen["digits"].values()) == pytest.approx(1.0, abs=1e-3)
  assert sum(seen["sums"].values()) == pytest.approx(1.0, abs=1e-3)
  assert max(seen["digits"], key=seen["digits"].get) == str(digit)
  assert max(seen["sums"], key=seen["sums"].get) == str(total)
  assert seen["network_input"] == 1
  assert seen["upload_answer"] == "error: notes.txt is not a PNG, JPEG or BMP image."
  assert seen["outside"] == []
  # Ctrl-C stopped the server cleanly, and nothing it started outlived it.
  assert seen["exit_status"] == 0 and not seen["left_running"]
  return digit, total


def test_a_drawn_digit_gets_an_answer(trained_workdir, tmp_path):
  check_page(use_the_page(trained_workdir, str(tmp_path / "demo.png"), str(tmp_path)))
  assert (tmp_path / "demo.png").stat().st_size > 0


@pytest.mark.slow
def test_a_drawn_seven_is_read_by_the_mnist_model(tmp_path):
  workdir = os.environ.get("ADDER_JAX_TRAINED_WORKDIR")
  if not workdir:
    pytest.fail("set ADDER_JAX_TRAINED_WORKDIR to run the slow tests (see "
                "test_real_world_images.py)")
  screenshot = os.environ.get("ADDER_JAX_DEMO_SCREENSHOT") or str(tmp_path / "demo.png")
  assert check_page(use_the_page(workdir, screenshot, str(tmp_path))) == (7, 7 + NUMBER)
