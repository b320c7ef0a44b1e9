r"""How fast the demo (python -m adder_jax.demo) answers a drawing.

  python -m benchmarks.demo_latency --workdir DIR --browser \
      --output benchmarks/results/cpu_demo_latency.json

1. The server's work for one drawing, `demo.read_drawing` (the preprocessing of predict)
   then `Demo.answer` (the network and the page's numbers), timed on --drawings MNIST
   test digits redrawn as the pad delivers them (`drawn_like`: strokes thinned to a line
   and retraced with the pad's brush), after a warm-up; with the share of them read right.
2. With --browser: the whole page in headless Chromium (Debian's `chromium`, driven by
   Playwright), --strokes times: clear the pad, draw a 7 with the mouse, and time from
   releasing the button to the answer on the page, and to the moment the page sends the
   drawing to the server. This adds the browser's export of the drawing, its upload and
   Gradio's queue to the server's work.

The MNIST test split is read from the data directory the run was trained with.
"""

import contextlib
import dataclasses
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Optional
import urllib.error
import urllib.request

from absl import flags
import numpy as np
from skimage import morphology
from skimage import transform

from adder_jax import cli
from adder_jax import demo
from adder_jax import inference
from adder_jax import mnist
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
    digits.append(digit_read(answer))
  return seconds, digits


def digit_read(answer):
  """The digit an image + number `answer` shows; -1 for a drawing refused as showing no
  digit (read wrong, for an accuracy)."""
  (probabilities,) = answer.digit_probabilities
  return int(max(probabilities, key=probabilities.get)) if probabilities else -1


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@dataclasses.dataclass
class DemoServer:
  """A running `python -m adder_jax.demo`; after it stops, how it stopped."""

  url: str
  process: subprocess.Popen
  log: str  # The file its output goes to.
  exit_status: Optional[int] = None
  left_running: Optional[bool] = None  # Whether any process of its group outlived it.

  def output(self):
    with open(self.log) as f:
      return f.read()


@contextlib.contextmanager
def demo_server(workdir, scratch_dir):
  """Runs `python -m adder_jax.demo` for `workdir` on a free port, in its own process
  group, its output and Gradio's temporary files in `scratch_dir`, and yields a
  `DemoServer` once the page answers. Leaving the block presses Ctrl-C, waits for the
  server to stop, records how it stopped, and then kills whatever of it is left.

  Raises:
    RuntimeError: the server exited or did not answer within START_SECONDS.
  """
  port = free_port()
  log = os.path.join(scratch_dir, "demo_server.log")
  environment = dict(os.environ, GRADIO_TEMP_DIR=os.path.join(scratch_dir, "gradio"))
  with open(log, "w") as output:
    process = subprocess.Popen(
        [sys.executable, "-m", "adder_jax.demo", "--workdir", workdir, "--port", str(port)],
        stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=environment,
        start_new_session=True)
  server = DemoServer(f"http://127.0.0.1:{port}", process, log)
  try:
    _wait_until_served(server)
    yield server
  finally:
    if process.poll() is None:
      process.send_signal(signal.SIGINT)
    try:
      server.exit_status = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
      pass
    server.left_running = _group_alive(process.pid)
    if server.left_running:
      os.killpg(process.pid, signal.SIGKILL)
      process.wait()


def _group_alive(group):
  try:
    os.killpg(group, 0)
    return True
  except ProcessLookupError:
    return False


def _wait_until_served(server):
  # Straight to the loopback address, whatever proxy the environment names.
  opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
  deadline = time.monotonic() + START_SECONDS
  while time.monotonic() < deadline:
    if server.process.poll() is not None:
      raise RuntimeError(f"the demo exited with status {server.process.returncode}:\n"
                         f"{server.output()}")
    try:
      with opener.open(server.url, timeout=5):
        return
    except (urllib.error.URLError, ConnectionError):
      time.sleep(0.5)
  raise RuntimeError(f"the demo did not answer on {server.url} within {START_SECONDS} s:\n"
                     f"{server.output()}")


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


def open_page(page, url, pads=1):
  """Opens the demo at `url` and waits until its `pads` pads can be drawn on."""
  page.goto(url)
  for pad in range(pads):
    wait_for_brush(page, f"pad-{pad}")
  time.sleep(1)  # For the layout to settle before the mouse aims at a pad.


def wait_for_brush(page, pad="pad-0"):
  """Waits until the brush of the pad with the element id `pad` is chosen: its brush
  options are shown beside the brush and eraser buttons."""
  page.wait_for_function(
      "pad => document.querySelectorAll(`#${pad} .toolbar-wrap button`).length > 2", arg=pad)


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
  """For each of `strokes` drawings of a 7 on a cleared pad, the seconds from releasing
  the mouse until the page sends the drawing to the server, and until it shows the
  answer; the Chromium version, and the requests that left the computer."""
  from playwright import sync_api  # pylint: disable=import-outside-toplevel
  sent, answered, outside = [], [], []
  with tempfile.TemporaryDirectory() as scratch_dir, \
      demo_server(workdir, scratch_dir) as server, \
      sync_api.sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    try:
      page = browser.new_page(viewport={"width": 1280, "height": 1000})
      stay_local(page, outside)
      # The editor sends the drawing as image blobs before the event that answers it.
      blob_times = []
      page.on("request", lambda request: blob_times.append(time.perf_counter())
              if "/component_server" in request.url else None)
      open_page(page, server.url)
      clear = page.locator("#pad-0 button[title='Clear canvas']")
      for _ in range(strokes):
        clear.click()
        wait_for_answer(page, "Draw a digit")
        wait_for_brush(page)
        draw(page, "pad-0", SEVEN)
        start = time.perf_counter()
        wait_for_answer(page, "=")
        answered.append(time.perf_counter() - start)
        sent.append(min(t for t in blob_times if t >= start) - start)
      version = browser.version
    finally:
      browser.close()
  return {"sent": sent, "answered": answered}, version, outside


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


def _versions(*packages):
  return {package: importlib.metadata.version(package) for package in packages}


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
    predictor = inference.Predictor(FLAGS.workdir, ("predict",),
                                    "benchmarks.demo_latency")
    page_demo = demo.Demo(predictor)
    test = mnist.load(predictor.config.data, splits=("test",))["test"]
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
      seconds, version, outside = browser_seconds(os.path.abspath(FLAGS.workdir),
                                                  FLAGS.strokes, chromium)
      results["machine"].update(chromium=version, **_versions("gradio", "playwright"))
      results["browser_drawing_sent"] = summary(seconds["sent"])
      results["browser"] = summary(seconds["answered"])
      results["requests_beyond_this_computer"] = len(outside)
      print(f"browser, mouse released to answer shown: median "
            f"{results['browser']['median_ms']:.0f} ms, 95th percentile "
            f"{results['browser']['p95_ms']:.0f} ms; of which until the drawing is sent: "
            f"median {results['browser_drawing_sent']['median_ms']:.0f} ms")
    if FLAGS.output:
      with open(FLAGS.output, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
