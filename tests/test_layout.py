"""The layout's promises: no import cycles between nst_tf's modules, and doors that check their
input before TensorFlow loads."""

import ast
import os
import subprocess
import sys

from conftest import REPO

PACKAGE = os.path.join(REPO, "nst_tf")


PACKAGES = {"nst_tf", "nst_tf.networks", "nst_tf.video", "nst_tf.app", "nst_tf.commands"}
# Libraries that take a second or more to import, or are optional: a command's start-up and `import
# nst_tf` stay without them, so an nst_tf module that loads one is imported inside functions only.
HEAVY = {
    "tensorflow",
    "keras",
    "cv2",
    "av",
    "aiohttp",
    "apache_beam",
    "matplotlib",
    "h5py",
    "scipy",
    "onnx",
    "onnxruntime",
}


def _imported(node) -> set:
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name.startswith("nst_tf")}
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nst_tf"):
        return {f"{node.module}.{a.name}" if node.module in PACKAGES else node.module for a in node.names}
    return set()


def _heavy_library(node) -> bool:
    if isinstance(node, ast.Import):
        return any(a.name.split(".")[0] in HEAVY for a in node.names)
    return isinstance(node, ast.ImportFrom) and bool(node.module) and node.module.split(".")[0] in HEAVY


def _modules():
    """`(module name, source)` of every nst_tf module."""
    for root, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".").removesuffix(".__init__")
                yield module, open(path, encoding="utf-8").read()


def _layout():
    """Per nst_tf module: `(module-level imports, function-level imports as (line, text, modules),
    whether it imports a heavy library at module level)`, nst_tf modules only."""
    found = {}
    for module, source in _modules():
        tree = ast.parse(source)
        top = {id(node) for node in tree.body}
        module_level, local, heavy = set(), [], False
        for node in ast.walk(tree):
            if id(node) in top:
                module_level |= _imported(node)
                heavy |= _heavy_library(node)
            elif _imported(node):
                local.append((node.lineno, source.splitlines()[node.lineno - 1], _imported(node)))
        found[module] = (module_level, local, heavy)
    modules = set(found)
    return {
        m: (
            {d for d in top if d in modules and d != m},
            [(n, t, {d for d in ds if d in modules}) for n, t, ds in local],
            h,
        )
        for m, (top, local, h) in found.items()
    }


def _module_imports():
    """Each nst_tf module's imports of other nst_tf modules, at module level and inside functions."""
    return {m: top | {d for _, _, ds in local for d in ds} - {m} for m, (top, local, _) in _layout().items()}


def _loads_heavy(layout) -> set:
    """The modules whose import loads a heavy library (themselves, or through their module-level imports)."""
    heavy = {m for m, (_, _, h) in layout.items() if h}
    grown = True
    while grown:
        grown = False
        for m, (top, _, _) in layout.items():
            if m not in heavy and top & heavy:
                heavy.add(m)
                grown = True
    return heavy


def test_no_module_imports_itself_through_others():
    graph = _module_imports()
    assert len(graph) > 40 and "nst_tf.plan" in graph["nst_tf.transfer"]  # the walk sees the package
    assert "nst_tf.painters" in graph["nst_tf.app.studio"]  # and the imports inside functions

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


def test_imports_inside_functions_only_keep_a_heavy_library_out_of_start_up_and_say_so():
    """A function-level import of an nst_tf module is there because the module loads TensorFlow (or
    another heavy library) and the importer does not: anything else is imported at module level,
    where the reader sees it. Each says why on its line."""
    layout = _layout()
    heavy = _loads_heavy(layout)
    wrong = [
        f"{m}:{line}: {text.strip()}"
        for m, (_, local, _) in layout.items()
        for line, text, deps in local
        if m in heavy or not deps & heavy or "#" not in text
    ]
    assert not wrong, "\n".join(wrong)


def test_nothing_below_imports_a_door_or_the_video_package():
    """Data flows one way: the library below the doors imports no command (the page writes its command
    line with the command line's own code), and no module outside `nst_tf.video` (the clip door)
    imports from it."""
    graph = _module_imports()
    for module, deps in graph.items():
        if not module.startswith(("nst_tf.commands", "nst_tf.cli", "nst_tf.beam", "nst_tf.app")):
            assert not {d for d in deps if d.startswith("nst_tf.commands")}, module
        if not module.startswith(("nst_tf.video", "nst_tf.commands", "nst_tf.cli")):
            assert not {d for d in deps if d.startswith("nst_tf.video")}, module


# The modules that may read the whole `Config`: the option module, the plan, the doors (commands,
# the page, batch and Beam, the clip runner, the SavedModel export), the painter registry, the
# painting options' reader, and the run a plan configures (`transfer`); the trainer's `plan_for`
# builds its plan's Config. Everything else takes an option group or built objects.
WHOLE_CONFIG = (
    "nst_tf.config",
    "nst_tf.plan",
    "nst_tf.planner",
    "nst_tf.commands",
    "nst_tf.app",
    "nst_tf.batch",
    "nst_tf.beam",
    "nst_tf.video.run",
    "nst_tf.serving",
    "nst_tf.painters",
    "nst_tf.painting",
    "nst_tf.transfer",
    "nst_tf.networks.train",
    "nst_tf.budget",  # what a budget buys: a Config made at the door, as the plan is
)
GROUPS = {"objective", "picture", "optimisation", "outputs", "runtime", "options"}


def _whole_config_reads(tree) -> set:
    """What in `tree` reaches for the whole Config: the names `cfg` or `Config`, or an attribute
    `.config` (other than TensorFlow's and Keras's) not narrowed at once to one group."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def narrowed(node):
        up = parents.get(node)
        return isinstance(up, ast.Attribute) and up.attr in GROUPS

    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in ("cfg", "Config") and not narrowed(node):
            found.add(f"line {node.lineno}: {node.id}")
        elif isinstance(node, ast.ImportFrom) and any(a.name == "Config" for a in node.names):
            found.add(f"line {node.lineno}: imports Config")
        elif isinstance(node, ast.Attribute) and node.attr == "config" and not narrowed(node):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("tf", "keras")):
                found.add(f"line {node.lineno}: .config")
    return found


def test_below_the_doors_code_takes_option_groups_or_built_objects_not_the_whole_config():
    """Losses, features, optimisers, the schedule, tiling, checkpoints, callbacks, devices, the
    autotuner and the networks take `config.Objective`, `Optimisation`, `Outputs`... or built objects:
    changing an option touches its group's readers, which this test keeps countable."""
    offenders = {}
    for module, source in _modules():
        found = set() if module.startswith(WHOLE_CONFIG) else _whole_config_reads(ast.parse(source))
        if found:
            offenders[module] = sorted(found)
    assert not offenders, offenders


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


# Graphs written once for others to run (SavedModels, TF Lite, the tiled network's signature) keep
# AutoGraph; every step nst_tf traces to run itself does without it.
EXPORTS = {"serving.py", "networks/export.py", "networks/lite.py", "networks/tiled.py"}


def test_steps_are_traced_without_autograph():
    """AutoGraph rewrote Keras' layer calls one by one on every trace (1.3 s of the adaptation's first
    step) for steps that branch only on Python values: a step that must branch on a tensor uses
    `tf.cond` or `tf.while_loop` and still passes `autograph=False`."""
    missing = []
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            path = os.path.join(folder, name)
            if not name.endswith(".py") or os.path.relpath(path, PACKAGE) in EXPORTS:
                continue
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                bare = [d for d in getattr(node, "decorator_list", []) if ast.unparse(d) == "tf.function"]
                called = (
                    isinstance(node, ast.Call)
                    and ast.unparse(node.func) == "tf.function"
                    and not any(k.arg == "autograph" for k in node.keywords)
                )
                if bare or called:
                    missing.append(f"{os.path.relpath(path, REPO)}:{node.lineno}")
    assert not missing, missing
