"""Every `python -m ...` command of the README and the pages it links parses: its module
exists, and its flags and --config.FIELD overrides are ones the module has. A renamed
flag or config field fails here rather than in a reader's terminal."""

import glob
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO_ROOT

PAGES = ["README.md", "docs/*.md", "benchmarks/README.md", "experiments/README.md"]
SHELL_BLOCK = re.compile(r"```(?:sh|bash|console)\n(.*?)```", re.DOTALL)

# Parses each (module, argv) in a fresh process, since modules define flags of the same
# names (--config) on absl's global FLAGS; prints the problems as a JSON list.
# ml_collections finds the --config.FIELD overrides in sys.argv.
_PARSE = textwrap.dedent("""
    import importlib, json, sys
    from absl import flags
    commands = json.loads(sys.argv[1])
    module = importlib.import_module(commands[0][0])
    if hasattr(module, "define_flags"):
      module.define_flags()
    problems = []
    for name, argv in commands:
      sys.argv = [name] + argv
      try:
        flags.FLAGS(sys.argv)
        if "config" in flags.FLAGS and flags.FLAGS.config is not None:
          flags.FLAGS.config.keys()  # A config file that does not load raises here.
      except BaseException as e:  # absl exits on --help; anything else is a problem.
        problems.append(f"{name} {' '.join(argv)}: {type(e).__name__}: {e}")
      flags.FLAGS.unparse_flags()
      for flag in [f for f in flags.FLAGS if f.startswith("config.")]:
        delattr(flags.FLAGS, flag)  # Defined by that command's overrides.
    print(json.dumps(problems))
""")


def documented_commands():
  """{module: [(page, argv), ...]} for every `python -m MODULE ARGS` in a shell block."""
  commands = {}
  for pattern in PAGES:
    for page in sorted(glob.glob(os.path.join(REPO_ROOT, pattern))):
      with open(page) as f:
        blocks = SHELL_BLOCK.findall(f.read())
      for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
          if "python -m " not in line:
            continue
          text = line[line.index("python -m "):].split(" #")[0].strip().rstrip("&").strip()
          words = shlex.split(re.sub(r"\$\w+", "0", text))  # Shell variables: $i, $SLURM_JOB_ID.
          commands.setdefault(words[2], []).append((os.path.relpath(page, REPO_ROOT), words[3:]))
  return commands


COMMANDS = documented_commands()


def test_the_pages_document_the_main_commands():
  assert {"adder_jax.main", "adder_jax.predict", "adder_jax.evaluate", "adder_jax.demo",
          "benchmarks.benchmark", "benchmarks.demo_latency"} <= set(COMMANDS)


@pytest.mark.parametrize("module", sorted(m for m in COMMANDS if m != "pytest"))
@pytest.mark.slow
def test_documented_commands_parse(module):
  commands = [(module, argv) for _, argv in COMMANDS[module]]
  result = subprocess.run([sys.executable, "-c", _PARSE, json.dumps(commands)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 0, result.stderr
  assert json.loads(result.stdout.strip().splitlines()[-1]) == []


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_relative_links_of_the_pages_exist():
  missing = []
  for pattern in PAGES:
    for page in glob.glob(os.path.join(REPO_ROOT, pattern)):
      with open(page) as f:
        targets = LINK.findall(f.read())
      for target in targets:
        if "://" not in target and not os.path.exists(
            os.path.join(os.path.dirname(page), target)):
          missing.append(f"{os.path.relpath(page, REPO_ROOT)}: {target}")
  assert not missing
