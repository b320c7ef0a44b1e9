"""A web page to try a trained model by hand: draw a digit, pick a number, read the sum.

  pip install -e ".[demo]"
  python -m adder_jax.demo --workdir DIR

serves the page on http://127.0.0.1:7860 (`--port` to change it; `--host 0.0.0.0` or
another address serves it beyond this computer, only when given). A drawing on the pad,
or an uploaded image file, goes through the preprocessing of `predict` (preprocess.py),
and every stroke or change shows the predicted digit and sum, bar charts of the
probabilities of the 10 digits and 19 sums, and the 28x28 image the network read. A
two-image run gets two pads and the sum of their digits. The checkpoint is loaded and
the prediction compiled once, before the page is served; Ctrl-C stops the server.

`Demo` holds what the page does, without the page: tests and notebooks call it directly.
"""

import dataclasses
import os
import socket
from typing import Optional, Sequence, Tuple, Union

from absl import flags
import numpy as np

from adder_jax import cli
from adder_jax import inference
from adder_jax import preprocess
from adder_jax import runtime
from adder_jax.constants import IMAGE_SHAPE, NUM_DIGITS
from adder_jax.errors import UserError, first_line

INSTALL_HINT = 'pip install -e ".[demo]"'
# The network input is shown this many times larger, each pixel a square.
ZOOM = 8
# Drawing canvas in pixels. The brush radius makes strokes about as thick, relative to a
# digit filling the pad, as MNIST's pen strokes are.
CANVAS_SIZE = 280
BRUSH_RADIUS = 10
# The number chosen when the page opens.
FIRST_NUMBER = 3

# What one image slot of the page holds: the 28x28 network input, None before anything
# is drawn or uploaded, or the one-line error that the drawing or file gave.
SlotInput = Union[np.ndarray, None, str]


def define_flags(flag_values=flags.FLAGS):
  flags.DEFINE_string("workdir", None, "Training workdir whose latest checkpoint the page "
                      "shows.", flag_values=flag_values)
  flags.DEFINE_string("host", "127.0.0.1", "Address to serve on; 0.0.0.0 serves every "
                      "network this computer is on.", flag_values=flag_values)
  flags.DEFINE_integer("port", 7860, "Port to serve on.", lower_bound=1, upper_bound=65535,
                       flag_values=flag_values)
  flags.mark_flags_as_required(["workdir"], flag_values=flag_values)


@dataclasses.dataclass(frozen=True)
class Answer:
  """What the page shows for its current inputs."""

  text: str  # Markdown: the digits and sum, or what is missing or wrong.
  network_inputs: Tuple[Optional[np.ndarray], ...]  # Per slot, enlarged by ZOOM.
  digit_probabilities: Tuple[Optional[dict], ...]  # Per slot, {'0': p, ..., '9': p}.
  sum_probabilities: Optional[dict]  # {'0': p, ..., '18': p}.


def read_drawing(value):
  """The network input for a sketchpad's value (Gradio's {'composite': uint8 [H, W]}
  grey image of the drawing on white, or None), preprocessed as `predict` does."""
  composite = None if value is None else value.get("composite")
  if composite is None or np.ptp(composite) < preprocess.MIN_CONTRAST:
    return None  # Nothing drawn yet, or the pad was cleared.
  try:
    return preprocess.mnist_style(composite, name="the drawing")
  except UserError as e:
    return str(e)


def read_upload(path):
  """The network input for an uploaded image file, read as `predict` reads a file."""
  if not path:
    return None
  try:
    return preprocess.load_digit(path)
  except UserError as e:
    # The upload sits in a temporary folder; its own name is what the person knows.
    return str(e).replace(path, os.path.basename(path))


def read_number(value):
  """The number 0-9 to add, from the page's choice or an API call: an int, or a string
  of one digit (Gradio's API description lists the choices as strings). Anything else
  is the one-line error the page shows."""
  if isinstance(value, str) and len(value.strip()) == 1 and value.strip() in "0123456789":
    return int(value)
  if (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
      and 0 <= value < NUM_DIGITS):
    return int(value)
  return f"the number to add must be one of 0-9, as an int or a string such as '5'; got {value!r}."


class Demo:
  """The page's answers, from a `inference.Predictor` of an image + number or a
  two-image run."""

  def __init__(self, predictor):
    self.predictor = predictor
    self.slots = predictor.task.image_slots
    self.two_images = self.slots == 2
    # Compiles the prediction now, so that the first drawing is answered at once.
    blank = np.zeros(IMAGE_SHAPE, np.uint8)
    self._predict([blank] * self.slots, 0)

  def answer(self, inputs: Sequence[SlotInput], number=None) -> Answer:
    """What the page shows for the slots' `inputs` and, for an image + number run, the
    `number` 0-9 to add (as `read_number` reads it)."""
    if len(inputs) != self.slots:
      raise ValueError(f"expected {self.slots} inputs, one per image slot; got {len(inputs)}.")
    errors = [x for x in inputs if isinstance(x, str)]
    if not self.two_images:
      number = read_number(number)
      if isinstance(number, str):
        errors.append(number)
    if errors or any(x is None for x in inputs):
      prompt = "Draw a digit on each pad" if self.two_images else "Draw a digit"
      return Answer(text="\n\n".join(f"**error:** {e}" for e in errors) or
                    f"{prompt} (or upload an image file).",
                    network_inputs=tuple(_enlarge(x) for x in inputs),
                    digit_probabilities=(None,) * self.slots, sum_probabilities=None)
    prediction = self._predict(inputs, number)
    return Answer(text=_describe(prediction, number),
                  network_inputs=tuple(_enlarge(x) for x in inputs),
                  digit_probabilities=tuple(_by_class(p) for p in _digit_probabilities(prediction)),
                  sum_probabilities=_by_class(prediction.sum_probabilities))

  def _predict(self, images, number):
    if self.two_images:
      return self.predictor.predict_pairs(images[:1], images[1:])[0]
    return self.predictor.predict(np.stack(images), number)[0]


def _digit_probabilities(prediction):
  if isinstance(prediction, inference.PairPrediction):
    return prediction.digit_probabilities
  return (prediction.digit_probabilities,)


def _describe(prediction, number):
  """'## 7 + 3 = 10' and how sure the network is of each part."""
  if isinstance(prediction, inference.PairPrediction):
    (first, second), (p_first, p_second) = prediction.digits, prediction.digit_probabilities
    return (f"## {first} + {second} = {prediction.sum}\n\n"
            f"digits {first} ({_percent(p_first[first])}) and {second} "
            f"({_percent(p_second[second])}), sum {prediction.sum} "
            f"({_percent(prediction.sum_probability)})")
  return (f"## {prediction.digit} + {number} = {prediction.sum}\n\n"
          f"digit {prediction.digit} ({_percent(prediction.digit_probability)}), plus "
          f"{number} makes sum {prediction.sum} ({_percent(prediction.sum_probability)})")


def _percent(p):
  return f"{100 * p:.1f}%"


def _by_class(probabilities):
  return {str(i): float(p) for i, p in enumerate(probabilities)}


def _enlarge(network_input):
  if not isinstance(network_input, np.ndarray):
    return None
  return np.kron(network_input, np.ones((ZOOM, ZOOM), np.uint8))


def import_gradio():
  """The gradio module, or a UserError that says how to install it."""
  # Gradio would otherwise report usage to its makers' servers.
  os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
  try:
    import gradio  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise UserError(f"the demo needs Gradio ({first_line(e)}); install it with "
                    f"{INSTALL_HINT}.") from e
  return gradio


# Gradio's editor starts with no tool chosen, and returns to none when cleared; a pad
# with no tool shows just its two tool buttons (brush, eraser, in that order), and then
# this chooses the brush, so that a digit can always be drawn at once.
_CHOOSE_BRUSH = """() => {
  const lastClick = new Map();
  const chooseBrush = () => {
    for (const pad of document.querySelectorAll('.digit-pad')) {
      const buttons = pad.querySelectorAll('.toolbar-wrap button');
      const now = Date.now();
      if (buttons.length === 2 && now - (lastClick.get(pad) || 0) > 500) {
        lastClick.set(pad, now);
        buttons[0].click();
      }
    }
  };
  new MutationObserver(chooseBrush).observe(document.body, {childList: true, subtree: true});
  chooseBrush();
}"""


def build_page(gr, demo):
  """The Gradio page of `demo`: pads (and uploads) per slot, the number for an image +
  number run, and the answer, updated on every change."""
  predictor = demo.predictor
  # Uploads and the shown network inputs are files in Gradio's cache: deleted after an
  # hour, and when the server stops.
  with gr.Blocks(title="adder_jax demo", analytics_enabled=False,
                 delete_cache=(3600, 3600)) as page:
    gr.Markdown(f"# adder_jax\nThe model of the run `{os.path.basename(predictor.workdir)}` "
                f"(step {predictor.step}, task `{predictor.config.task}`). "
                + ("Draw a digit on each pad, or upload images of them." if demo.two_images
                   else "Draw a digit, or upload an image of one."))
    slots = [gr.State(None) for _ in range(demo.slots)]
    with gr.Row():
      sources = [_image_source(gr, i, demo.slots) for i in range(demo.slots)]
      with gr.Column():
        number = None
        if not demo.two_images:
          number = _number_choice(gr)
        text = gr.Markdown(demo.answer([None] * demo.slots, FIRST_NUMBER).text,
                           elem_id="answer")
        with gr.Row():
          network_inputs = [gr.Image(label=_slot_label("network input (28x28)", i, demo.slots),
                                     elem_id=f"network-input-{i}", interactive=False,
                                     height=28 * ZOOM + 48,
                                     buttons=[]) for i in range(demo.slots)]
    with gr.Row():
      digit_labels = [gr.Label(label=_slot_label("digit probabilities", i, demo.slots),
                               num_top_classes=NUM_DIGITS, elem_id=f"digit-probabilities-{i}",
                               show_heading=False) for i in range(demo.slots)]
      sum_label = gr.Label(label="sum probabilities", num_top_classes=2 * NUM_DIGITS - 1,
                           elem_id="sum-probabilities", show_heading=False)
    outputs = [text, *network_inputs, *digit_labels, sum_label]
    number_inputs = [number] if number is not None else []

    def show(slot_inputs, number_value=None):
      answer = demo.answer(slot_inputs, number_value)
      return [answer.text, *answer.network_inputs, *answer.digit_probabilities,
              answer.sum_probabilities]

    def on_input(read, slot):
      def handler(value, *rest):
        slot_inputs = list(rest[:demo.slots])
        slot_inputs[slot] = read(value)
        return [slot_inputs[slot], *show(slot_inputs, *rest[demo.slots:])]
      return handler

    events = dict(trigger_mode="always_last", show_progress="hidden", concurrency_id="model")
    # API endpoints: /draw and /upload (/draw_1, /draw_2, ... for two pads), /number.
    suffix = (lambda i: f"_{i + 1}") if demo.slots > 1 else (lambda i: "")
    for i, (pad, upload) in enumerate(sources):
      pad.change(on_input(read_drawing, i), [pad, *slots, *number_inputs],
                 [slots[i], *outputs], api_name=f"draw{suffix(i)}", **events)
      upload.change(on_input(read_upload, i), [upload, *slots, *number_inputs],
                    [slots[i], *outputs], api_name=f"upload{suffix(i)}", **events)
    if number is not None:
      number.change(lambda slot_input, value: show([slot_input], value), [*slots, number],
                    outputs, api_name="number", **events)
    page.load(None, js=_CHOOSE_BRUSH)
  return page


def _number_choice(gr):
  """The number to add: Gradio's Radio, except that a value an API call sends reaches
  `Demo.answer` as it is (Radio refuses "5" for 5 with a traceback on the server's
  terminal), which answers anything but 0-9 with the page's one-line error."""
  number = gr.Radio([(str(n), n) for n in range(NUM_DIGITS)], value=FIRST_NUMBER,
                    label="number to add", elem_id="number")
  # On this one component: a subclass would make Gradio write a stub file beside this one.
  number.preprocess = lambda payload: payload
  return number


def _slot_label(text, slot, slots):
  return f"{('first', 'second')[slot]} {text}" if slots == 2 else text


def _image_source(gr, slot, slots):
  """A tab to draw on and a tab to upload an image file, for one slot."""
  with gr.Column():
    with gr.Tabs():
      with gr.Tab(_slot_label("draw", slot, slots).capitalize()):
        pad = gr.Sketchpad(image_mode="L", type="numpy", canvas_size=(CANVAS_SIZE, CANVAS_SIZE),
                           brush=gr.Brush(default_size=BRUSH_RADIUS, colors=["#000000"],
                                          color_mode="fixed"),
                           layers=False, transforms=(), show_label=False, height=360,
                           elem_id=f"pad-{slot}", elem_classes=["digit-pad"])
      with gr.Tab(_slot_label("upload", slot, slots).capitalize()):
        upload = gr.File(label="a PNG, JPEG or BMP image of one digit", type="filepath",
                         elem_id=f"upload-{slot}")
  return pad, upload


def check_address(host, port):
  """Raises a UserError, before the model loads, unless a server can listen on
  host:port (the port is free, the host is an address of this computer)."""
  try:
    family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind) as probe:
      # As the server's own socket does: a port left in TIME_WAIT can be reused.
      probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      probe.bind(address)
  except OSError as e:
    raise UserError(f"cannot serve the demo on {host}:{port} ({e.strerror or e}); choose "
                    "another --port or --host.") from e


def page_address(host, port):
  """Where a browser finds the page served on host:port."""
  if host in ("0.0.0.0", "::"):
    return (f"port {port} of every address of this computer "
            f"(http://127.0.0.1:{port} from this computer)")
  return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(page, host, port):
  """Serves `page` until Ctrl-C."""
  try:
    page.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, prevent_thread_lock=True, quiet=True,
        ssr_mode=False, footer_links=[])
  except OSError as e:
    raise UserError(f"cannot serve the demo on {host}:{port} ({first_line(e)}); "
                    "choose another --port or --host.") from e
  print(f"Serving the demo on {page_address(host, port)} (Ctrl-C stops it).", flush=True)
  try:
    page.block_thread()  # Until Ctrl-C; then Gradio closes the server.
  except KeyboardInterrupt:
    pass  # Ctrl-C again while it closes: stop now, without a traceback.


def main(argv, flag_values=flags.FLAGS):
  del argv  # cli.run refuses positional arguments.
  cli.quiet_library_logs()
  with cli.exit_on_user_error():
    gr = import_gradio()
    check_address(flag_values.host, flag_values.port)
    runtime.setup()
    demo = Demo(inference.Predictor(flag_values.workdir, user="the demo"))
    page = build_page(gr, demo)
    serve(page, flag_values.host, flag_values.port)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
