"""The workbench app: wires a backend to the main screen. Read this file as the table of contents.

- `source.py`        `UpdateRelay`: the backend's updates, coalesced, into the UI thread
- `screens/main.py`  header, tree, detail, queues, log; its actions (s r a p d x / w l ? q) in `main_commands.py`
- `screens/*.py`     start (picker + form), confirm, filter, workers, help — one per module
- `widgets/*.py`     the tree (`fast_tree.py`: its Textual overrides), the detail, queues, header and log panes
- `keys.py`          every key with its help text (footer, command palette, help screen)
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from textual import events
from textual.app import App, SystemCommand
from textual.message import Message
from textual.screen import Screen

from stepflow_tui.backend import WorkbenchBackend
from stepflow_tui.tui.collector import IdleCollector
from stepflow_tui.tui.extensions import WorkbenchExtensions
from stepflow_tui.tui.keys import WORKBENCH_KEYS, display_key
from stepflow_tui.tui.screens.main import MainScreen
from stepflow_tui.tui.source import UpdateRelay


def utc_now() -> datetime:
    return datetime.now(UTC)


class BackendUpdated(Message):
    """The backend announced changes; the merged update waits in the app's `UpdateRelay`."""


class WorkbenchApp(App[int]):
    """``stepflow`` with no subcommand: the live workflow → step → job tree, queues, workers, actions."""

    CSS_PATH = "app.tcss"
    TITLE = "stepflow"
    #: Screens get ``-narrow`` below 100 columns: the tree gets more room than the detail (at 80 columns the
    #: tree lines were cut after their status).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]

    def __init__(self, backend: WorkbenchBackend, *, read_only: bool = False,
                 clock: Callable[[], datetime] | None = None, cursor_blink: bool = True,
                 extensions: WorkbenchExtensions | None = None) -> None:
        super().__init__()
        self.backend = backend
        #: What plugins add: renderers of outputs, job line columns, palette commands.
        self.extensions = extensions or WorkbenchExtensions()
        self.read_only = read_only or bool(getattr(backend, "read_only", False))
        self.clock = clock or utc_now
        #: False in snapshot tests: a blinking cursor makes screenshots differ.
        self.cursor_blink = cursor_blink
        # the backend calls the relay from its own thread; the relay only posts a message (thread-safe)
        self.relay = UpdateRelay(lambda: self.post_message(BackendUpdated()))
        self.main_screen = MainScreen(backend, self.relay, self.clock, self.read_only, self.extensions)
        #: Full garbage collections wait for a pause in the operator's input (see collector.py).
        self.collector = IdleCollector()

    def on_mount(self) -> None:
        self.push_screen(self.main_screen)
        self.backend.subscribe(self.relay)
        self.collector.start()
        self.set_interval(0.5, self.collector.tick)

    def on_unmount(self) -> None:
        self.collector.stop()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.MouseDown, events.MouseScrollDown, events.MouseScrollUp)):
            self.collector.input_seen()
        await super().on_event(event)

    def on_backend_updated(self, _: BackendUpdated) -> None:
        self.main_screen.pump_updates()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p) lists every workbench action beside Textual's own commands."""
        yield from super().get_system_commands(screen)
        for key in WORKBENCH_KEYS:
            if key.action == "quit":
                continue
            action = getattr(self.main_screen, f"action_{key.action}")
            yield SystemCommand(f"{key.label} ({display_key(key.key)})", key.help, action)
        # R lives on the queues panel (on the job_dead_letter row); the palette reaches it from anywhere
        yield SystemCommand("Redrive dead letters (R)", "Send job_dead_letter's messages back to the queues they "
                            "died in, after a confirmation with the counts", self.main_screen.action_redrive)
        for command in self.extensions.commands:  # a plugin's (register_commands)
            yield SystemCommand(command.name, f"{command.help} (plugin {command.plugin})" if getattr(
                command, "plugin", "") else command.help, functools.partial(self.main_screen.run_plugin_command,
                                                                            command))


@contextmanager
def logging_off_the_terminal() -> Iterator[None]:
    """While the workbench owns the terminal, the root logger's handlers that write to it are set aside.

    A record a worker thread logged to stderr (``WARNING stepflow_tui.job.fail: ...``) was drawn over the
    screen. The log panel still gets stepflow's records; a NullHandler stands in so that ``logging.lastResort``
    does not print other libraries' records to stderr instead. The handlers come back when the app exits."""
    root = logging.getLogger()
    terminal = {sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__}
    aside = [handler for handler in root.handlers
             if type(handler) is logging.StreamHandler and handler.stream in terminal]
    stand_in = logging.NullHandler()
    for handler in aside:
        root.removeHandler(handler)
    if aside:
        root.addHandler(stand_in)
    try:
        yield
    finally:
        if aside:
            root.removeHandler(stand_in)
        for handler in aside:
            root.addHandler(handler)


def run_workbench(backend: WorkbenchBackend, read_only: bool = False,
                  extensions: WorkbenchExtensions | None = None) -> int:
    """Run the workbench on ``backend`` until the operator quits; return the exit code."""
    with logging_off_the_terminal():
        result = WorkbenchApp(backend, read_only=read_only, extensions=extensions).run()
    return result if isinstance(result, int) else 0
