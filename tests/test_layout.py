"""The layout's promises: no import cycles between nst_tf's modules, and doors that check their
input before TensorFlow loads."""

import ast
import os
import subprocess
import sys

from conftest import REPO

PACKAGE = os.path.join(REPO, "nst_tf")


def _module_imports():
    """Each nst_tf module's imports of other nst_tf modules made when it is imported (module level,
    not inside functions)."""
    graph = {}
    for root, _, names in os.walk(PACKAGE):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".").removesuffix(".__init__")
            found = set()
            for node in ast.parse(open(path, encoding="utf-8").read()).body:
                if isinstance(node, ast.Import):
                    found |= {a.name for a in node.names if a.name.startswith("nst_tf.")}
                elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nst_tf"):
                    found |= {f"{node.module}.{a.name}" if node.module == "nst_tf" else node.module for a in node.names}
            graph[module] = found
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_no_module_imports_itself_through_others():
    graph = _module_imports()
    assert len(graph) > 40 and "nst_tf.plan" in graph["nst_tf.transfer"]  # the walk sees the package

    def cycle_from(start):
        stack, seen = [(start, [start])], set()
        while stack:
            module, path = stack.pop()
            for dep in graph[module]:
                if dep == start:
                    return path + [dep]
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, path + [dep]))
        return None

    cycles = [c for c in map(cycle_from, graph) if c]
    assert not cycles, " -> ".join(cycles[0])


def test_every_command_loads_without_tensorflow():
    """A command checks its flags and files before TensorFlow loads (seconds): importing any command's
    module, and the thin cli, must not import it."""
    code = (
        "import sys, nst_tf.cli\n"
        "for name in ('stylize', 'batch', 'evaluate', 'export', 'export_network', 'train', 'video'):\n"
        "    __import__('nst_tf.commands.' + name)\n"
        "import nst_tf.plan, nst_tf.planner, nst_tf.geometry, nst_tf.export, nst_tf.files, nst_tf.video.io\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
