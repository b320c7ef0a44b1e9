r"""How fast the demo (python -m adder_jax.demo) answers a drawing.

  python -m benchmarks.demo_latency --workdir DIR --browser \
      --output benchmarks/results/cpu_demo_latency.json

1. The server's work for one drawing, `demo.read_drawing` (the preprocessing of predict)
   then `Demo.answer` (the network and the page's numbers), timed on --drawings MNIST
   test digits redrawn as the pad delivers them (`drawn_like`: strokes thinned to a line
   and retraced with the pad's brush), after a warm-up; with the share of them read right.
2. With --browser: the whole page in headless Chromium (Debian's `chromium`, driven by
   Playwright), --strokes times: clear the pad, draw a 7 with the mouse, and time from
   releasing the button to the answer on the page. This adds the browser's export of the
   drawing, its upload and Gradio's queue to the server's work.

The MNIST test split is read from the data directory the run was trained with.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from absl import flags
import numpy as np
from skimage import morphology
from skimage import transform

from adder_jax import cli
from adder_jax import demo
from adder_jax import inference
from adder_jax import input_pipeline
from adder_jax import runtime
from adder_jax.errors import UserError
from benchmarks import machine

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("workdir", None, "Training workdir of an image + number run.")
  flags.DEFINE_integer("drawings", 300, "MNIST test digits to redraw and time.", lower_bound=1)
  flags.DEFINE_bool("browser", False, "Also time the page in headless Chromium.")
  flags.DEFINE_integer("strokes", 20, "Drawings timed in the browser.", lower_bound=1)
  flags.DEFINE_string("chromium", "chromium", "The Chromium executable.")
  flags.DEFINE_string("output", None, "Where to write the JSON results.")
  flags.mark_flags_as_required(["workdir"])


# A 7 as a person draws it, in fractions of the drawing square: a bar and a slanted stem.
SEVEN = ((0.25, 0.2), (0.75, 0.2), (0.45, 0.85))
# Starting the server loads the checkpoint and compiles the prediction.
START_SECONDS = 180


def drawn_like(digit, size=demo.CANVAS_SIZE, radius=demo.BRUSH_RADIUS):
  """A 28x28 MNIST-style digit as the pad delivers it drawn by hand: its strokes thinned
  to a line, retraced with the pad's round brush on a size x size canvas, black on
  white ({'composite': uint8 [size, size]}, Gradio's sketchpad value)."""
  large = transform.resize(np.asarray(digit, np.float32) / 255.0, (size, size), order=1)
  line = morphology.skeletonize(large > 0.5)
  ink = morphology.dilation(line, morphology.disk(radius))
  return {"composite": np.where(ink, 0, 255).astype(np.uint8)}


def server_seconds(page_demo, drawings):
  """Seconds of `read_drawing` + `answer` for each drawing, and the digits read."""
  seconds, digits = [], []
  for drawing in drawings:
    start = time.perf_counter()
    answer = page_demo.answer([demo.read_drawing(drawing)], 3)
    seconds.append(time.perf_counter() - start)
    (probabilities,) = answer.digit_probabilities
    digits.append(int(max(probabilities, key=probabilities.get)) if probabilities else -1)
  return seconds, digits


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def demo_server(workdir):
  """Runs `python -m adder_jax.demo` for `workdir` on a free port, in its own process
  group, and yields (url, process) once the page answers. Leaving the block presses
  Ctrl-C if the server still runs, and waits for it to stop.

  Raises:
    RuntimeError: the server exited or did not answer within START_SECONDS.
  """
  port = free_port()
  process = subprocess.Popen(
      [sys.executable, "-m", "adder_jax.demo", "--workdir", workdir, "--port", str(port)],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      start_new_session=True)
  url = f"http://127.0.0.1:{port}"
  try:
    _wait_until_served(url, process)
    yield url, process
  finally:
    if process.poll() is None:
      process.send_signal(signal.SIGINT)
    try:
      process.wait(timeout=60)
    except subprocess.TimeoutExpired:
      os.killpg(process.pid, signal.SIGKILL)
      raise


def _wait_until_served(url, process):
  deadline = time.monotonic() + START_SECONDS
  while time.monotonic() < deadline:
    if process.poll() is not None:
      raise RuntimeError(f"the demo exited with status {process.returncode}:\n"
                         f"{process.stdout.read()}")
    try:
      with urllib.request.urlopen(url, timeout=5):
        return
    except (urllib.error.URLError, ConnectionError):
      time.sleep(0.5)
  raise RuntimeError(f"the demo did not answer on {url} within {START_SECONDS} s")


def stay_local(page, outside):
  """Lets `page` reach only this computer's loopback address; other requests are
  refused and recorded in the list `outside`."""
  def route(request_route):
    url = request_route.request.url
    if url.startswith(("http://127.0.0.1:", "data:", "blob:")):
      request_route.continue_()
    else:
      outside.append(url)
      request_route.abort()
  page.route("**/*", route)


def open_page(page, url):
  """Opens the demo at `url` and waits until its first pad can be drawn on."""
  page.goto(url)
  wait_for_brush(page)
  time.sleep(1)


def wait_for_brush(page):
  """Waits until the first pad's brush is chosen: its brush options are shown beside the
  brush and eraser buttons."""
  page.wait_for_function("document.querySelectorAll('#pad-0 .toolbar-wrap button').length > 2")


def draw(page, pad, stroke):
  """Draws `stroke` (points in fractions of the drawing square) on the pad with the
  element id `pad`, with the mouse."""
  box = page.locator(f"#{pad} canvas").first.bounding_box()
  # The square canvas is shown centred in its element, a little smaller than it.
  side = 0.8 * min(box["width"], box["height"])
  left = box["x"] + (box["width"] - side) / 2
  top = box["y"] + (box["height"] - side) / 2
  points = [(left + u * side, top + v * side) for u, v in stroke]
  page.mouse.move(*points[0])
  page.mouse.down()
  for (x0, y0), (x1, y1) in zip(points, points[1:]):
    for k in range(1, 11):
      page.mouse.move(x0 + (x1 - x0) * k / 10, y0 + (y1 - y0) * k / 10)
  page.mouse.up()


def wait_for_answer(page, text, timeout_ms=30_000):
  """Waits until the page's answer contains `text`."""
  page.wait_for_function("text => document.querySelector('#answer').innerText.includes(text)",
                         arg=text, timeout=timeout_ms)


def browser_seconds(workdir, strokes, chromium):
  """Seconds from releasing the mouse after drawing a 7 to the answer on the page, for
  each of `strokes` drawings on a cleared pad; and the requests that left the computer."""
  from playwright import sync_api  # pylint: disable=import-outside-toplevel
  seconds, outside = [], []
  with demo_server(workdir) as (url, _), sync_api.sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    try:
      page = browser.new_page(viewport={"width": 1280, "height": 1000})
      stay_local(page, outside)
      open_page(page, url)
      clear = page.locator("#pad-0 button[title='Clear canvas']")
      for _ in range(strokes):
        clear.click()
        wait_for_answer(page, "Draw a digit")
        wait_for_brush(page)
        draw(page, "pad-0", SEVEN)
        start = time.perf_counter()
        wait_for_answer(page, "=")
        seconds.append(time.perf_counter() - start)
    finally:
      browser.close()
  return seconds, outside


def find_chromium(name):
  """The path of the Chromium executable `name`, with Playwright importable to drive it."""
  path = shutil.which(name)
  if path is None:
    raise UserError(f"Chromium ({name}) is not installed: apt-get install chromium, or name "
                    "its executable with --chromium.")
  try:
    import playwright  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError as e:
    raise UserError('--browser needs Playwright: pip install -e ".[test]".') from e
  return path


def summary(seconds):
  milliseconds = 1000 * np.asarray(seconds)
  return {"count": len(seconds), "median_ms": float(np.median(milliseconds)),
          "p95_ms": float(np.percentile(milliseconds, 95)), "max_ms": float(milliseconds.max())}


def main(argv):
  del argv
  cli.quiet_library_logs()
  with cli.exit_on_user_error():
    chromium = find_chromium(FLAGS.chromium) if FLAGS.browser else None
    runtime.setup()
    predictor = inference.Predictor(FLAGS.workdir)
    page_demo = demo.Demo(predictor)
    test = input_pipeline.load(predictor.config.data, splits=("test",))["test"]
    order = np.random.default_rng(0).permutation(len(test))[:FLAGS.drawings]
    drawings = [drawn_like(image) for image in test.images[order]]
    server_seconds(page_demo, drawings[:5])  # Warm-up.
    seconds, digits = server_seconds(page_demo, drawings)
    results = {"command": machine.recorded_command("benchmarks.demo_latency", sys.argv,
                                                   ("workdir",)),
               "machine": machine.describe(), "step": predictor.step,
               "server": summary(seconds),
               "drawn_digit_accuracy": 100.0 * float(np.mean(
                   np.asarray(digits) == test.labels[order]))}
    print(f"server, per drawing: median {results['server']['median_ms']:.1f} ms, 95th "
          f"percentile {results['server']['p95_ms']:.1f} ms; redrawn MNIST test digits "
          f"read right: {results['drawn_digit_accuracy']:.1f}%")
    if FLAGS.browser:
      seconds, outside = browser_seconds(os.path.abspath(FLAGS.workdir), FLAGS.strokes,
                                         chromium)
      results["browser"] = summary(seconds)
      results["requests_beyond_this_computer"] = len(outside)
      print(f"browser, mouse released to answer shown: median "
            f"{results['browser']['median_ms']:.0f} ms, 95th percentile "
            f"{results['browser']['p95_ms']:.0f} ms")
    if FLAGS.output:
      with open(FLAGS.output, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
