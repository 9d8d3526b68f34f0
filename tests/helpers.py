"""Small helpers for tests that run the `stepflow` CLI as a real process.

    result = run_cli("status", "--json", db=tmp_path / "state.json", cwd=tmp_path)
    proc = start_cli("run", "slow", "--wait", db=db, cwd=tmp_path)       # a Popen, stdout/stderr piped
    wait_for(lambda: completed_count() >= 5, timeout=20, what="5 jobs completed")
    files = make_tree(tmp_path / "data", {"a/b.txt": b"x", "empty": b""})
    write_workflows(tmp_path / "workflows.json", [workflow("w", [step(1, "noop")])])
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: The repository root (it holds workflows.json with checksum_folder, fanout_demo and failing_demo).
REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_WORKFLOWS = REPO_ROOT / "workflows.json"
#: Variables that would make a CLI run depend on the developer's environment.
STEPFLOW_ENV = ("STEPFLOW_BROKER_URL", "STEPFLOW_DB", "STEPFLOW_WORKFLOWS", "STEPFLOW_API", "STEPFLOW_API_TOKEN")
#: Upper bound for one CLI command that should finish quickly (startup is ~0.5 s; CI machines are slow).
DEFAULT_TIMEOUT = 60.0


def cli_env(extra: Mapping[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    """The environment for a CLI process: STEPFLOW_* removed, then ``extra`` added.

    ``home`` (when given) becomes XDG_STATE_HOME, so a command run without --db can never touch the
    developer's real state file.
    """
    env = {k: v for k, v in os.environ.items() if k not in STEPFLOW_ENV}
    env["PYTHONUNBUFFERED"] = "1"  # the id line must reach the test as soon as it is printed
    if home is not None:
        env["XDG_STATE_HOME"] = str(home)
    if extra:
        env.update(extra)
    return env


def cli_command(*args: str | os.PathLike[str], script: bool = False) -> list[str]:
    """The argv of `python -m stepflow_tui ARGS` (or of the `stepflow` console script with ``script``)."""
    if script:
        found = shutil.which("stepflow", path=str(Path(sys.executable).parent)) or shutil.which("stepflow")
        if found is None:
            raise RuntimeError("the `stepflow` console script is not installed next to " + sys.executable)
        return [found, *map(str, args)]
    return [sys.executable, "-m", "stepflow_tui", *map(str, args)]


def _with_db(args: Iterable[str | os.PathLike[str]], db: Path | None) -> list[str | os.PathLike[str]]:
    # --db goes after the subcommand's arguments: global options are accepted there too.
    return [*args, "--db", str(db)] if db is not None else list(args)


def run_cli(*args: str | os.PathLike[str], db: Path | None = None, cwd: Path | None = None,
            env: Mapping[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT,
            script: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the CLI to its end and return the completed process (text stdout / stderr captured)."""
    home = (Path(cwd) if cwd is not None else Path.cwd()) / ".xdg-state"
    return subprocess.run(cli_command(*_with_db(args, db), script=script), cwd=cwd, env=cli_env(env, home),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def start_cli(*args: str | os.PathLike[str], db: Path | None = None, cwd: Path | None = None,
              env: Mapping[str, str] | None = None, script: bool = False) -> subprocess.Popen[str]:
    """Start the CLI in the background (stdout and stderr piped, text, line-buffered)."""
    home = (Path(cwd) if cwd is not None else Path.cwd()) / ".xdg-state"
    return subprocess.Popen(cli_command(*_with_db(args, db), script=script), cwd=cwd, env=cli_env(env, home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, bufsize=1)


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """A failure message showing what a CLI run printed."""
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Call ``condition`` until it returns something truthy and return that; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)  # polling interval of a condition wait, not synchronisation by itself


def make_tree(root: Path, files: Mapping[str, bytes]) -> list[str]:
    """Create ``root/<relative path>`` for each entry (folders as needed); return the sorted relative paths."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return sorted(files)


def step(step_id: int, name: str, **fields: Any) -> dict[str, Any]:
    """A step definition (label defaults to the name)."""
    return {"id": step_id, "name": name, "label": fields.pop("label", name), **fields}


def workflow(identifier: str, steps: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """A workflow definition (label defaults to the identifier)."""
    return {"identifier": identifier, "label": fields.pop("label", identifier), "version_major": 1,
            "version_minor": 0, "version_micro": 0, "steps": steps, **fields}


def write_workflows(path: Path, workflows: list[dict[str, Any]]) -> Path:
    """Write a workflows.json holding ``workflows``; return its path."""
    path.write_text(json.dumps({"workflows": workflows}, indent=2), encoding="utf-8")
    return path


class LineReader:
    """Reads a process's stdout lines on a thread, so a test can wait for a line with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        import threading

        self.proc = proc
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def wait_line(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        """The first line for which ``predicate`` is true; fails after ``timeout`` or if the process ended
        without printing it."""

        def found() -> str | None:
            with self._lock:
                for line in self.lines:
                    if predicate(line):
                        return line
            if self.proc.poll() is not None and not self._thread.is_alive():
                stderr = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"the process exited ({self.proc.returncode}) before printing {what}; "
                                     f"stdout: {self.lines!r}; stderr: {stderr}")
            return None

        return wait_for(found, timeout, what)

    def text(self) -> str:
        """Everything read so far."""
        with self._lock:
            return "\n".join(self.lines)

