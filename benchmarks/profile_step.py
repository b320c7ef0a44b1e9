r"""Where a training step's time goes: XLA's own per-operation timing of a compiled chunk.

    python -m benchmarks.profile_step --config configs/default.py

compiles the config's train chunk, runs one chunk to warm up, then records one chunk of
--steps steps with jax.profiler and reads the trace back (jax.profiler.ProfileData, no
TensorBoard needed). Every operation XLA runs on a device thread is an event; an
operation's own time is its duration less that of the operations inside it (a loop's
body), summed over all device threads, so the shares add up to 100% of the threads' busy
time. Each operation is named by the layer it belongs to (from the compiled HLO's
metadata) and put in one of CATEGORIES. Prints the shares by category and the --top
operations; --output FILE.json keeps them with the machine and command.
"""

import collections
import glob
import json
import re
import sys
import tempfile
import time

from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags

from adder_jax import checkpointing
from adder_jax import cli
from adder_jax import config_checks
from adder_jax import mnist
from adder_jax import runtime
from adder_jax import sharding
from adder_jax import train
from benchmarks import machine

FLAGS = flags.FLAGS


def define_flags():
  config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                  lock_config=True)
  flags.DEFINE_integer("steps", 100, "Train steps in the recorded chunk.", lower_bound=1)
  flags.DEFINE_integer("top", 15, "Operations to list.", lower_bound=1)
  flags.DEFINE_string("output", None, "Where to write the JSON results.")
  flags.mark_flags_as_required(["config"])

# (category, test on (opcode, fusion kind, event name)), the first that matches.
CATEGORIES = (
    ("convolutions and matmuls",
     lambda op, kind, name: op in ("convolution", "dot") or kind == "__ynn_fusion"),
    ("all-reduce across devices", lambda op, kind, name: op.startswith("all-")),
    ("waiting for another device or thread",
     lambda op, kind, name: name.startswith(("Wait", "Rendezvous"))),
    ("layout copies", lambda op, kind, name: op in ("copy", "transpose", "concatenate")),
    ("loops and their bookkeeping",
     lambda op, kind, name: op in ("while", "conditional", "call") or name.startswith("Thunk")),
    ("elementwise and reductions", lambda op, kind, name: True),
)

_INSTRUCTION = re.compile(r"\s*(?:ROOT )?%?([\w.\-]+) = (\(.*?\)|\S+) ([\w\-]+)\(")
_COMPUTATION = re.compile(r"\s*(?:ENTRY )?%?([\w.\-]+) .*\{\s*$")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_FUSION_KIND = re.compile(r'"kind":"(\w+)"')


def read_hlo(text):
  """{instruction name: (opcode, shape, fusion kind, layer)} from compiled HLO text. An
  instruction without metadata is named by the first instruction of its body (a fusion's)
  that has some, else by the layer of its first operand that has one."""
  instructions = {}
  bodies = collections.defaultdict(list)
  computation = None
  for line in text.splitlines():
    match = _INSTRUCTION.match(line)
    if not match:
      header = _COMPUTATION.match(line)
      computation = header.group(1) if header else computation
      continue
    name, shape, opcode = match.groups()
    op_name, calls, kind = (_OP_NAME.search(line), _CALLS.search(line),
                            _FUSION_KIND.search(line))
    arguments = line[match.end():].split(")", 1)[0]
    instructions[name] = {"opcode": opcode, "shape": shape, "kind": kind.group(1) if kind else "",
                          "op_name": op_name.group(1) if op_name else "",
                          "calls": calls.group(1) if calls else None,
                          "operands": re.findall(r"%([\w.\-]+)", arguments)}
    bodies[computation].append(name)
  for record in instructions.values():
    if not record["op_name"] and record["calls"]:
      record["op_name"] = next((instructions[n]["op_name"] for n in bodies[record["calls"]]
                                if instructions[n]["op_name"]), "")
  for record in instructions.values():
    if not record["op_name"]:
      named = [instructions[n]["op_name"] for n in record["operands"]
               if n in instructions and instructions[n]["op_name"]]
      record["op_name"] = named[0].rpartition("/")[0] if named else ""
  return {name: (r["opcode"], r["shape"], r["kind"], layer(r["op_name"]))
          for name, r in instructions.items()}


def layer(op_name):
  """'jit(train_chunk)/while/body/closed_call/transpose(jvp(AdderNet))/digit_net/Conv_1/
  conv_general_dilated' -> 'backward: digit_net/Conv_1/conv_general_dilated'."""
  if not op_name:
    return ""
  direction = "backward: " if "transpose(" in op_name else ""
  parts = [p for p in op_name.split("/") if p not in ("while", "body", "closed_call")
           and not p.startswith(("jit(", "jvp(", "transpose("))]
  return direction + "/".join(parts)


def own_times(events_by_thread):
  """{event name: (own nanoseconds, count)} from each thread's (start, duration, name)
  events: an event's duration less that of the events nested inside it."""
  own, counts = collections.Counter(), collections.Counter()
  for events in events_by_thread:
    stack = []  # [end, name, duration, nested duration]

    def close():
      _, name, duration, nested = stack.pop()
      own[name] += duration - nested

    for start, duration, name in sorted(events, key=lambda e: (e[0], -e[1])):
      while stack and stack[-1][0] <= start:
        close()
      if stack:
        stack[-1][3] += duration
      stack.append([start + duration, name, duration, 0])
      counts[name] += 1
    while stack:
      close()
  return {name: (own[name], counts[name]) for name in own}


def categorise(opcode, kind, name):
  return next(category for category, test in CATEGORIES if test(opcode, kind, name))


def profile(trainer, steps):
  """Records one chunk of `steps` steps; returns (seconds per step, {name: (own ns, count)},
  compiled HLO text)."""
  target = checkpointing.restore_target(trainer.abstract_state, sharding.replicated(trainer.mesh))
  plan_shape = jax.eval_shape(trainer.epoch_plan, 0)
  compiled = trainer.chunk_fn(steps).lower(
      target, (trainer.train_images, trainer.train_labels), plan_shape, jnp.int32(0)).compile()
  state, plan = trainer.init_state(), trainer.epoch_plan(0)
  state, _ = trainer.run_chunk(state, plan, 0, steps)
  jax.block_until_ready(state)
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      t0 = time.perf_counter()
      state, _ = trainer.run_chunk(state, plan, 0, steps)
      jax.block_until_ready(state)
      seconds = time.perf_counter() - t0
    path, = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
    data = jax.profiler.ProfileData.from_file(path)
  host = data.find_plane_with_name("/host:CPU")
  # XLA:CPU runs each device's operations on its Eigen threads; other platforms record
  # theirs on device planes.
  planes = [host] if host is not None else []
  planes += [p for p in data.planes if p.name.startswith("/device:")]
  threads = [[(e.start_ns, e.duration_ns, e.name) for e in line.events]
             for plane in planes for line in plane.lines
             if plane is not host or line.name.startswith("tf_XLAEigen")]
  return seconds / steps, own_times(threads), compiled.as_text()


def summarise(times, hlo, top):
  """Shares by category and the `top` operations, each with its layer and shape."""
  total = sum(ns for ns, _ in times.values())
  by_category = collections.Counter()
  rows = []
  for name, (ns, count) in sorted(times.items(), key=lambda item: -item[1][0]):
    opcode, shape, kind, where = hlo.get(name, ("", "", "", ""))
    category = categorise(opcode, kind, name)
    by_category[category] += ns
    rows.append({"operation": name, "share": round(ns / total, 4), "ms": round(ns / 1e6, 1),
                 "count": count, "category": category, "layer": where, "shape": shape})
  return {"categories": {c: round(ns / total, 4) for c, ns in by_category.most_common()},
          "top": rows[:top], "busy_thread_ms": round(total / 1e6, 1)}


def main(argv):
  del argv
  cli.quiet_library_logs()
  config = FLAGS.config
  with cli.exit_on_user_error():
    train.check_config(config)
    runtime.setup([config.batch_size, config.eval_batch_size])
    config_checks.check_batches_split(config, jax.device_count())
    trainer = train.Trainer(config, mnist.load(config.data))
    seconds, times, hlo_text = profile(trainer, FLAGS.steps)
  results = {"command": machine.recorded_command("benchmarks.profile_step", sys.argv,
                                                  ("config.data.data_dir",
                                                   "config.data.manual_dir")),
             "machine": machine.describe(), "steps": FLAGS.steps,
             "seconds_per_step": round(seconds, 5),
             **summarise(times, read_hlo(hlo_text), FLAGS.top)}
  print(f"{1000 * seconds:.1f} ms a step of {config.batch_size} images on "
        f"{jax.device_count()} {jax.devices()[0].platform} devices; busy device-thread time:")
  for category, share in results["categories"].items():
    print(f"  {100 * share:5.1f}%  {category}")
  print(f"\n{'share':>6s}  {'operation':32s} {'category':28s} layer, shape")
  for row in results["top"]:
    print(f"{100 * row['share']:5.1f}%  {row['operation']:32s} {row['category'][:28]:28s} "
          f"{_shorten(row['layer'] or '-')}, {_shorten(row['shape'])}")
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      json.dump(results, f, indent=2)


def _shorten(text, width=60):
  return text if len(text) <= width else text[:width - 3] + "..."


if __name__ == "__main__":
  define_flags()
  cli.run(main)
