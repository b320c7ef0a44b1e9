"""Which modules of adder_jax may import which (docs/design.md): read from the source,
so a change that breaks a rule fails here with the chain of imports that breaks it."""

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "adder_jax")

# Using a trained model (evaluate, predict, the demo, the Python API) imports none of
# the training code.
TRAINING = {"train", "steps", "optimizers", "kernels"}
ENTRY_POINTS = {"main", "evaluate", "predict", "demo"}


def _imports():
  """{module: the adder_jax modules it imports}, for every module of the package."""
  imports = {}
  for name in os.listdir(PACKAGE):
    if not name.endswith(".py"):
      continue
    with open(os.path.join(PACKAGE, name)) as f:
      tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module == "adder_jax":
        found |= {alias.name for alias in node.names}
      elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("adder_jax."):
        found.add(node.module.split(".")[1])
    imports[name[:-3]] = found
  return imports


def _chains(module, imports):
  """{module it imports directly or not: one chain of imports that leads there}."""
  chains = {module: [module]}
  frontier = [module]
  while frontier:
    current = frontier.pop()
    for imported in sorted(imports[current]):
      if imported not in chains:
        chains[imported] = chains[current] + [imported]
        frontier.append(imported)
  return chains


IMPORTS = _imports()


@pytest.mark.parametrize("module", ["inference", "evaluate", "predict", "demo",
                                    "evaluation_report", "tasks", "models"])
def test_using_a_model_imports_no_training_code(module):
  chains = _chains(module, IMPORTS)
  assert not [" -> ".join(chains[m]) for m in TRAINING & set(chains)]


def test_the_network_imports_only_the_task_sizes():
  assert IMPORTS["models"] <= {"constants"}


def test_only_training_chooses_the_gradient_kernels():
  assert {m for m, imported in IMPORTS.items() if "kernels" in imported} == {"train"}


def test_no_module_imports_an_entry_point():
  assert not {m: imported & ENTRY_POINTS for m, imported in IMPORTS.items()
              if imported & ENTRY_POINTS}


def test_no_task_is_named_outside_tasks_py():
  """Every difference between tasks is a method or attribute of its class."""
  named = []
  for name in os.listdir(PACKAGE):
    if name.endswith(".py") and name != "tasks.py":
      with open(os.path.join(PACKAGE, name)) as f:
        text = f.read()
      named += [f"{name}: {task}" for task in ("'image_plus_number'", "'two_images'",
                                               "'multi_digit'", '"image_plus_number"',
                                               '"two_images"', '"multi_digit"')
                if task in text]
  assert not named
