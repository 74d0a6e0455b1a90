"""The shape of the house: imports run one way, each module says its one job, and the library leaves the
process as it found it (no printing, no exits, no global seeds, timeouts, allocators or logger levels)."""

from __future__ import annotations

import ast
import logging
import socket
import warnings
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest
import torch

import styletx

PACKAGE = Path(styletx.__file__).resolve().parent

#: Layers, bottom first: a module may import only modules of its own layer or below (and never in a cycle).
LAYERS: List[Tuple[str, ...]] = [
    ("styletx._version", "styletx.errors"),
    ("styletx.atomic", "styletx.options", "styletx.paths", "styletx.memory", "styletx.results", "styletx.runtime",
     "styletx.tensors"),
    ("styletx.cache", "styletx.color", "styletx.losses", "styletx.temporal"),
    ("styletx.device",),
    ("styletx.features", "styletx.io"),
    ("styletx.engines", "styletx.metrics"),
    ("styletx.export",),
    ("styletx.api",),
    ("styletx.video",),
    ("styletx.cli", "styletx.process", "styletx"),
]
#: Function-level imports are for optional dependencies only.
OPTIONAL = {"onnxruntime", "onnx", "onnxscript", "av"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path) -> List[Tuple[str, int, bool]]:
    """(imported styletx module, line, inside a function) for every import in the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    known = modules()
    is_package = path.name == "__init__.py"
    found = []
    in_function: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(sub) for sub in ast.walk(node))
    for node in ast.walk(tree):
        targets: List[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node)
            # "from . import device" names a module; "from .x import f" names a module x
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            found.append((target, node.lineno, id(node) in in_function))
    return found


def layer_of(module: str) -> int:
    best, depth = None, -1
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = i, len(prefix)
    assert best is not None, f"{module} is in no layer of LAYERS: add it"
    return best


def styletx_graph() -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {}
    for name, path in modules().items():
        graph[name] = {t for t, _, _ in imports_of(name, path) if t == "styletx" or t.startswith("styletx.")}
    return graph


def test_every_module_is_in_a_layer_and_imports_only_downward():
    problems = []
    for name, path in modules().items():
        own = layer_of(name)
        for target, line, _ in imports_of(name, path):
            if target.startswith("styletx.") and layer_of(target) > own:
                problems.append(f"{name}:{line} imports {target} (layer {layer_of(target)} > {own})")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    graph = styletx_graph()
    state: Dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: List[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt == "styletx":
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]) if nxt in stack else f"{node}->{nxt}")
            elif nxt in graph and state.get(nxt) is None:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if state.get(start) is None:
            visit(start, [start])
    assert not cycles, "\n".join(cycles)


def test_engines_never_import_io_or_each_other():
    problems = []
    for name, path in modules().items():
        if not name.startswith("styletx.engines."):
            continue
        room = name.split(".")[2]  # "optimize" or "feedforward"
        for target, line, _ in imports_of(name, path):
            if target.startswith("styletx.io") or target in ("styletx.api", "styletx.cli", "styletx.export"):
                problems.append(f"{name}:{line} imports {target}")
            if target.startswith("styletx.engines.") and target.split(".")[2] != room:
                problems.append(f"{name}:{line} imports another engine, {target}")
    assert not problems, "\n".join(problems)


def test_function_level_imports_are_only_for_optional_dependencies():
    problems = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import):
                    tops = {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom):
                    tops = {"." if node.level else (node.module or "").split(".")[0]}
                else:
                    continue
                if not tops <= OPTIONAL:
                    problems.append(f"{name}:{node.lineno} imports {sorted(tops)} inside {func.name}()")
    assert not problems, "\n".join(problems)


def test_every_module_says_its_one_job_in_its_first_line():
    for name, path in modules().items():
        if name == "styletx._version":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc, f"{name} has no docstring"
        first = doc.splitlines()[0]
        assert len(first.split()) >= 5, f"{name}: first line {first!r} does not say what the module is for"


def test_nothing_below_the_cli_prints_or_exits():
    problems = []
    for name, path in modules().items():
        if name == "styletx.cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                called = f.id if isinstance(f, ast.Name) else (
                    f"{getattr(f.value, 'id', '?')}.{f.attr}" if isinstance(f, ast.Attribute) else "")
                if called in ("print", "exit", "quit", "sys.exit", "os._exit", "click.echo"):
                    problems.append(f"{name}:{node.lineno} calls {called}")
    assert not problems, "\n".join(problems)


def test_only_runtime_changes_the_allocator_and_only_the_cli_calls_it():
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        if name != "styletx.runtime":
            assert "mallopt" not in text, name
        if name not in ("styletx.runtime", "styletx.cli"):
            assert "retain_freed_memory" not in text and "release_freed_memory" not in text, name


def _process_state() -> dict:
    return {
        "rng": torch.random.get_rng_state().clone(),
        "socket_timeout": socket.getdefaulttimeout(),
        "loggers": {n: logging.getLogger(n).level for n in ("torch.onnx", "torch.export", "onnxscript", "")},
        "warning_filters": list(warnings.filters),
        "threads": torch.get_num_threads(),
        "grad": torch.is_grad_enabled(),
    }


def test_the_library_leaves_process_wide_state_as_it_found_it(tmp_path, content_image, style_image):
    folder = tmp_path / "data"
    folder.mkdir()
    content_image.save(folder / "a.png")
    before = _process_state()
    styletx.stylize(content_image, style_image, size=32, iterations=2, backbone="random")
    result = styletx.train(style_image, folder, tmp_path / "m.pth", steps=1, size=32, batch_size=1,
                           arch="slim", backbone="random", checkpoint_every=0)
    model = styletx.load_transformer(result.path).compile(backend="onnxruntime", cache_dir=tmp_path)
    model.stylize(torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0)))
    styletx.export(result.path, tmp_path / "m.onnx")
    after = _process_state()
    assert torch.equal(before.pop("rng"), after.pop("rng")), "the global torch RNG was advanced or reseeded"
    assert before == after


@pytest.mark.parametrize("old, new", [("Transformer", "FeedForwardModel")])
def test_old_names_stay_importable_for_one_release(old, new):
    assert getattr(styletx, old) is getattr(styletx, new)
    assert not issubclass(styletx.FeedForwardModel, torch.nn.Module)  # no clash with torch.nn.Transformer
