"""The layering contract (tests/layering.py) holds on the real tree, fails on a planted violation, and the
runtime agrees: importing core or the worker loads none of the libraries their layer must not use."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import layering

PACKAGE = Path(__file__).resolve().parents[1] / "stepflow_tui"


def test_the_package_keeps_its_layers() -> None:
    assert layering.check(PACKAGE) == []


def test_a_forbidden_import_is_reported(tmp_path: Path) -> None:
    copy = tmp_path / "stepflow_tui"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "core" / "planted.py").write_text("import pika\nfrom ..tui import app\n")
    (copy / "tui" / "planted.py").write_text("from stepflow_tui.store import Store\n"
                                             "from stepflow_tui import plugins\n")
    problems = layering.check(copy)
    assert any("core/planted.py:1: stepflow_tui.core.planted imports pika" in p for p in problems)
    assert any("imports stepflow_tui.tui" in p and "core/planted.py:2" in p for p in problems)
    assert any("tui/planted.py:1" in p and "stepflow_tui.store" in p for p in problems)
    assert any("tui/planted.py:2" in p and "stepflow_tui.plugins" in p for p in problems)  # not on the allow-list
    assert len([p for p in problems if "planted" not in p]) == 0


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(out.stdout))


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules} | {".".join(m.split(".")[:2]) for m in modules}


def test_core_loads_no_io_library() -> None:
    loaded = _top(_loaded_after("import stepflow_tui.core.engine, stepflow_tui.core.definitions"))
    assert not loaded & {"pika", "textual", "tinydb", "aiohttp", "stepflow_tui.broker", "stepflow_tui.store",
                         "stepflow_tui.tui", "stepflow_tui.backend"}


def test_headless_worker_loads_no_workbench_backend_or_store() -> None:
    loaded = _top(_loaded_after("import stepflow_tui.worker.runner"))
    assert not loaded & {"textual", "tinydb", "stepflow_tui.tui", "stepflow_tui.backend", "stepflow_tui.store"}


def test_service_and_backend_rules_are_checked(tmp_path: Path) -> None:
    copy = tmp_path / "stepflow_tui"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "service" / "planted.py").write_text("import textual\nfrom stepflow_tui.cli import main\n"
                                                 "from ..tui import app\n")
    (copy / "backend" / "planted.py").write_text("from aiohttp import web\nfrom ..service import create_app\n")
    problems = [p for p in layering.check(copy) if "planted" in p]
    assert [p.split(":")[1] for p in problems if "service/planted.py" in p] == ["1", "2", "3"]
    assert [p.split(":")[1] for p in problems if "backend/planted.py" in p] == ["1", "2"]


def test_the_service_client_loads_no_server_and_the_service_no_workbench() -> None:
    assert not _top(_loaded_after("import stepflow_tui.backend.remote")) & {"aiohttp", "stepflow_tui.service"}
    loaded = _top(_loaded_after("import stepflow_tui.service"))
    assert not loaded & {"textual", "stepflow_tui.tui", "stepflow_tui.cli"}
