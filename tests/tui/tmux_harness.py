"""The real `stepflow` in tmux (not a test module): a tmux server of the test's own (`Tmux`, the `tmux`
fixture), the screen as text and colours, and the workbench's usual moves (open it, pick a definition, tab to a
field). Synchronisation is always "wait until the screen shows X", never a fixed sleep."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows.json"
WIDTH, HEIGHT = 120, 36
TIMEOUT = 20.0


def stepflow_command() -> list[str]:
    """The installed ``stepflow`` script next to this interpreter, or ``python -m stepflow_tui``."""
    script = Path(sys.executable).parent / "stepflow"
    return [str(script)] if script.exists() else [sys.executable, "-m", "stepflow_tui"]


_SGR = re.compile(r"\x1b\[([0-9;:]*)m")
_OTHER_ESCAPE = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07|[()][0-9A-Za-z])")


def cells(line: str) -> list[tuple[str, str]]:
    """A ``capture-pane -e`` line as (character, background) pairs; the background as its SGR parameters."""
    result: list[tuple[str, str]] = []
    background = ""
    position = 0
    for match in _SGR.finditer(line):
        text = _OTHER_ESCAPE.sub("", line[position:match.start()])
        result.extend((char, background) for char in text)
        position = match.end()
        codes = match.group(1).replace(":", ";").split(";") if match.group(1) else ["0"]
        index = 0
        while index < len(codes):
            code = codes[index]
            if code in ("0", ""):
                background = ""
            elif code == "49":
                background = ""
            elif code == "48" and index + 1 < len(codes):  # 48;5;N or 48;2;R;G;B
                width = 3 if codes[index + 1] == "5" else 5
                background = ";".join(codes[index:index + width])
                index += width - 1
            elif code == "38" and index + 1 < len(codes):  # skip a foreground colour's arguments
                index += 2 if codes[index + 1] == "5" else 4
            elif code.isdigit() and (40 <= int(code) <= 47 or 100 <= int(code) <= 107):
                background = code
            index += 1
    result.extend((char, background) for char in _OTHER_ESCAPE.sub("", line[position:]))
    return result


def background_of(line: str, text: str) -> str | None:
    """The background behind the first character of ``text`` on a ``capture-pane -e`` line, or None."""
    line_cells = cells(line)
    plain = "".join(char for char, _ in line_cells)
    at = plain.find(text)
    return None if at < 0 else line_cells[at][1]


class Tmux:
    """One tmux server and session running one command, with helpers to type and to read the screen."""

    def __init__(self, socket: str, session: str) -> None:
        self.socket = socket
        self.session = session

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=check,
                              timeout=10)

    def start(self, command: list[str], cwd: Path, env: dict[str, str], exit_file: Path) -> None:
        """Run ``command`` in a new detached session; its exit code lands in ``exit_file``."""
        exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
        # env -i: nothing from the caller's environment (STEPFLOW_* settings, a tmux it runs in) leaks in
        shell = (f"cd {shlex.quote(str(cwd))} && env -i {exports} {shlex.join(command)}; "
                 f"echo $? > {shlex.quote(str(exit_file))}")
        self.tmux("new-session", "-d", "-s", self.session, "-x", str(WIDTH), "-y", str(HEIGHT), shell)
        # every byte the program writes to the terminal, also the ones the next repaint draws over
        self.output = exit_file.with_name("terminal-output")
        self.tmux("pipe-pane", "-t", self.session, f"cat >> {shlex.quote(str(self.output))}")

    def alive(self) -> bool:
        return self.tmux("has-session", "-t", self.session, check=False).returncode == 0

    def screen(self, escapes: bool = False) -> str:
        """The visible screen as text (with ``escapes``, with its colours as SGR sequences)."""
        args = ["capture-pane", "-p", "-t", self.session] + (["-e"] if escapes else [])
        result = self.tmux(*args, check=False)
        return result.stdout if result.returncode == 0 else ""

    def key(self, key: str) -> None:
        """One key, by tmux name (``Enter``, ``Tab``, ``Down``, ``C-u``) or a single character."""
        self.tmux("send-keys", "-t", self.session, key)

    def type(self, text: str) -> None:
        """Literal text (``-l``: no key-name lookup)."""
        self.tmux("send-keys", "-t", self.session, "-l", text)

    def wait_for(self, condition: Callable[[str], bool], what: str, timeout: float = TIMEOUT,
                 escapes: bool = False) -> str:
        """Poll the screen until ``condition(screen)`` holds; fail naming ``what`` and showing the screen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(escapes)
            if condition(screen):
                return screen
            if time.monotonic() > deadline:
                plain = self.screen() if escapes else screen
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; the screen:\n{plain}")
            time.sleep(0.05)  # polling interval, not synchronisation: the condition above is

    def wait_text(self, text: str, what: str | None = None, timeout: float = TIMEOUT) -> str:
        return self.wait_for(lambda screen: text in screen, what or repr(text), timeout)

    def wait_gone(self, what: str, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; the screen:\n"
                                     f"{self.screen()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """Stop this test's tmux server (and the workbench in it) and remove its socket file."""
        self.tmux("kill-server", check=False)
        # tmux 3.3 leaves the socket file of a killed server behind: one file a test run otherwise
        socket_dir = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
        (socket_dir / self.socket).unlink(missing_ok=True)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    name = f"stepflow-test-{uuid.uuid4().hex[:10]}"
    session = Tmux(socket=name, session=name)
    try:
        yield session
    finally:
        session.kill()  # the server of this test's own socket: the workbench in it dies with it


def environment(tmp_path: Path) -> dict[str, str]:
    """Variables for the workbench: nothing from the caller's STEPFLOW_* settings, its state under tmp."""
    env = {"TERM": "xterm-256color", "HOME": str(tmp_path / "home"), "XDG_STATE_HOME": str(tmp_path / "xdg")}
    for key in ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    env.setdefault("LANG", "C.UTF-8")
    return env


def start_workbench(tmux: Tmux, tmp_path: Path, *extra: str) -> Path:
    """``stepflow --db tmp/state.json`` in ``tmp/cwd`` (no workflows.json there); wait for "connected"."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    exit_file = tmp_path / "exit-code"
    tmux.start([*stepflow_command(), "--db", str(tmp_path / "state.json"), *extra], cwd,
               environment(tmp_path), exit_file)
    tmux.wait_for(lambda screen: "connected" in screen.splitlines()[0] if screen else False,
                  'the header saying "connected"')
    return exit_file


def pick_definition(tmux: Tmux, identifier: str) -> None:
    """``s``, then move the picker's highlight onto ``identifier`` (found by its text) and press Enter."""
    tmux.key("s")
    screen = tmux.wait_text("Start a workflow: pick one", "the definition picker")
    lines = screen.splitlines()
    options = [i for i, line in enumerate(lines) if re.search(r"\S+  v\d+\.\d+\.\d+  ", line)]
    assert options, f"no definitions listed in the picker:\n{screen}"
    target = next((i for i in options if f" {identifier}  v" in lines[i]), None)
    assert target is not None, f"{identifier} is not in the picker:\n{screen}"

    def highlighted(colored: str) -> int | None:
        # the highlighted option is the one whose background differs from the other options'
        colored_lines = colored.splitlines()
        backgrounds = {i: background_of(colored_lines[i], lines[i].split("  v")[0].split()[-1])
                       for i in options if i < len(colored_lines)}
        if len(backgrounds) == 1:
            return options[0]
        counts: dict[str | None, int] = {}
        for background in backgrounds.values():
            counts[background] = counts.get(background, 0) + 1
        odd = [i for i, background in backgrounds.items() if counts[background] == 1]
        return odd[0] if len(odd) == 1 else None

    current = tmux.wait_for(lambda colored: highlighted(colored) is not None, "an option highlighted",
                            escapes=True)
    position = highlighted(current)
    assert position is not None
    while position != target:
        tmux.key("Down" if position < target else "Up")
        step = 1 if position < target else -1
        expected = options[options.index(position) + step]
        tmux.wait_for(lambda colored, expected=expected: highlighted(colored) == expected,
                      f"the highlight on line {expected}", escapes=True)
        position = expected
    tmux.key("Enter")
    tmux.wait_text(f"Start {identifier}", f"the start form of {identifier}")


def tab_to_field(tmux: Tmux, label: str) -> None:
    """Tab, then wait until the field under ``label`` looks focused (its line is drawn differently).

    Typing right after Tab raced: Textual hands each key to the widget focused when it reads the key, and the
    Tab that moves focus is handled later, by that widget; so the path meant for the next field went on the
    end of the previous one."""

    def field_line(colored: str) -> str:
        lines = colored.splitlines()
        plain = [_OTHER_ESCAPE.sub("", _SGR.sub("", line)) for line in lines]
        index = next((i for i, line in enumerate(plain) if label in line), None)
        return lines[index + 1] if index is not None and index + 1 < len(lines) else ""

    before = field_line(tmux.screen(escapes=True))
    assert before, f"no field labelled {label!r} on the screen:\n{tmux.screen()}"
    tmux.key("Tab")
    tmux.wait_for(lambda colored: field_line(colored) not in ("", before), f"the {label!r} field focused",
                  escapes=True)


def workflow_line(screen: str, identifier: str) -> str:
    """The tree line of the (only) workflow ``identifier``, or ''."""
    return next((line for line in screen.splitlines() if re.search(rf"[▶▼] #\d+ {identifier} ", line)), "")
