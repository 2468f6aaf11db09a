"""The layout: short functions, modules of one job, imports that point one way, a test file per module."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "videoseq"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
ONE_JOB = {  # modules allowed past MAX_MODULE_LINES, and the one job they hold
    "videoseq.cli": "the command line: one parser and one thin function per command",
    "videoseq.video.decoder": "decoding files and frame folders to upright frames",
    "videoseq.synth": "the synthetic gesture dataset",
    "videoseq.engine.trainer": "the run: assembly, epochs, checkpoints",
}
# Module name -> test file, where it is not tests/test_<last part of the name>.py
TESTED_IN = {
    "videoseq.models.backbones": "test_backbones.py", "videoseq.models.fx_cut": "test_backbones.py",
    "videoseq.models.classifier": "test_models.py", "videoseq.exported": "test_export.py",
    "videoseq.report": "test_evaluation.py",
    "videoseq.models.fusion": "test_fusion.py",  # with videoseq.fusion: the fused model and its checkpoint
    # videoseq serve's rooms are tested through the app, with FastAPI's test client, as a client meets them:
    # uploads, parameters, limits and metrics over HTTP; the stream session over the WebSocket
    **{f"videoseq.serve.{room}": "test_serve.py" for room in ("app", "uploads", "params", "limits", "metrics")},
    "videoseq.serve.session": "test_serve_stream.py",
    "videoseq.errors": "test_cli_errors.py",
    "videoseq.cli_motion": "test_fusion.py",  # videoseq fuse; synth camera-motion in test_camera_motion.py
    "videoseq.cli_predict": "test_cli.py",
}
TESTED_WITH_THEIR_PACKAGE = ("videoseq.prepare.", "videoseq.bench.")  # test_prepare.py, test_bench.py


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> set[str]:
    """The videoseq modules a module imports when it is imported (not inside functions or TYPE_CHECKING)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("videoseq"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if n in MODULES} or {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("videoseq")}
    return found & set(MODULES)


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def test_no_function_is_longer_than_60_lines():
    long = [f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for name, path in MODULES.items() for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_modules_hold_one_job_in_at_most_400_lines():
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert [name for name, lines in sizes.items() if lines > MAX_MODULE_LINES and name not in ONE_JOB] == []
    assert all(sizes[name] <= 1.5 * MAX_MODULE_LINES for name in ONE_JOB)


def test_imports_have_no_cycles():
    def cycle_from(start: str, node: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in GRAPH[node]:
            if nxt == start:
                return seen + (nxt,)
            if nxt not in seen and (found := cycle_from(start, nxt, seen + (nxt,))):
                return found
        return None

    assert [cycle for name in MODULES if (cycle := cycle_from(name, name, (name,)))] == []


def imported_by(prefix: str) -> dict[str, set[str]]:
    return {name: deps for name, deps in GRAPH.items() if name == prefix or name.startswith(prefix + ".")}


def test_model_code_imports_no_data_code():
    allowed = ("videoseq.models", "videoseq.config", "videoseq.text", "videoseq.errors", "videoseq.validation")
    outside = {name: {d for d in deps if not d.startswith(allowed)}
               for name, deps in imported_by("videoseq.models").items()}
    assert {name: deps for name, deps in outside.items() if deps} == {}


def test_the_decoder_room_imports_only_itself_and_the_errors():
    outside = {name: {d for d in deps if not d.startswith("videoseq.video") and d != "videoseq.errors"}
               for name, deps in imported_by("videoseq.video").items()}
    assert {name: deps for name, deps in outside.items() if deps} == {}


def test_inference_needs_no_training_code():
    for name in ("videoseq.predict", "videoseq.live", "videoseq.export", "videoseq.exported", "videoseq.stream",
                 *imported_by("videoseq.serve")):
        assert not any(d.startswith("videoseq.engine") for d in GRAPH[name]), name


def test_only_the_server_and_its_benchmark_import_the_server():
    outside = {name: {d for d in deps if d.startswith("videoseq.serve")} for name, deps in GRAPH.items()
               if not name.startswith(("videoseq.serve", "videoseq.bench."))}
    assert {name: deps for name, deps in outside.items() if deps} == {}


def test_only_the_entry_points_import_the_commands_and_benchmarks():
    for name, deps in GRAPH.items():
        if name != "videoseq.__main__":
            assert "videoseq.cli" not in deps, name
        if not name.startswith("videoseq.bench"):
            assert not any(d.startswith("videoseq.bench") for d in deps), name


def expected_test_file(name: str) -> str | None:
    """The test file of a module (None: a package's own file or the entry point)."""
    last = name.rsplit(".", 1)[-1]
    if last in ("__main__", "videoseq", "engine", "video", "models", "bench", "prepare"):
        return None
    test = "test_prepare.py" if name.startswith(TESTED_WITH_THEIR_PACKAGE[0]) else None
    test = "test_bench.py" if name.startswith(TESTED_WITH_THEIR_PACKAGE[1]) else test
    return TESTED_IN.get(name, test or f"test_{last}.py")


def test_every_module_has_its_test_file():
    missing = [f"{name}: {test}" for name in MODULES
               if (test := expected_test_file(name)) and not (REPO / "tests" / test).is_file()]
    assert missing == []


def test_modules_of_one_name_in_two_rooms_say_where_they_are_tested():
    """``videoseq.metrics`` and ``videoseq.serve.metrics`` would both fall to test_metrics.py: one needs an entry."""
    claims: dict[str, list[str]] = {}
    for name in MODULES:
        if name in TESTED_IN or name.startswith(TESTED_WITH_THEIR_PACKAGE):
            continue  # said where, or tested with their package
        if test := expected_test_file(name):
            claims.setdefault(test, []).append(name)
    assert {test: names for test, names in claims.items() if len(names) > 1} == {}


HELP_WITHOUT_TORCH = """
import sys
from videoseq.cli import build_parser

for argv in {commands!r}:
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        pass
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "albumentations", "sklearn")))
"""


@pytest.mark.parametrize("commands", [[["--help"]], [["predict", "--help"]],
                                      [[c, "--help"] for c in ("train", "eval", "prepare", "doctor", "features",
                                                               "metrics", "compare", "export", "demo", "synth")]
                                      + [["serve", "--help"]]
                                      + [["bench", k, "--help"]
                                         for k in ("stream", "loader", "train", "heads", "serve", "predict",
                                                   "threads")]],
                         ids=["videoseq", "predict", "every-command"])
def test_help_imports_no_torch(commands):
    code = HELP_WITHOUT_TORCH.format(commands=commands)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip().splitlines()[-1] == "[]"
