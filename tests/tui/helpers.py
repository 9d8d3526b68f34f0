"""Building the workbench on the fake backend, and waiting for it without sleeps."""

from __future__ import annotations

from rich.console import Console
from textual.pilot import Pilot

from stepflow_tui.tui.app import WorkbenchApp
from stepflow_tui.tui.widgets.detail import DetailPane
from stepflow_tui.tui.widgets.tree import NodeRef, WorkflowTree

from .fakes import FakeBackend, fixed_clock


def make_app(backend: FakeBackend | None = None, *, read_only: bool = False) -> WorkbenchApp:
    """The app as snapshot and pilot tests see it: fake data, a fixed clock, no cursor blink."""
    return WorkbenchApp(backend or FakeBackend(), read_only=read_only, clock=fixed_clock, cursor_blink=False)


def tree_of(pilot: Pilot) -> WorkflowTree:
    return pilot.app.main_screen.tree


async def settle(pilot: Pilot) -> None:
    """Wait until every worker has finished and the messages they posted were handled."""
    app = pilot.app
    for _ in range(50):
        await app.workers.wait_for_complete()
        await pilot.pause()
        busy = any(worker.is_running for worker in app.workers)
        if not busy and not app.main_screen.relay.pending and not app.main_screen._refreshing:
            return
    raise AssertionError("the app did not settle")


async def open_step(pilot: Pilot, workflow_id: int, step_id: int) -> None:
    """Expand a step (its first page of jobs loads) and put the cursor on it."""
    tree = tree_of(pilot)
    assert tree.reveal(NodeRef("step", workflow_id, step_id))
    node = tree.node_for(NodeRef("step", workflow_id, step_id))
    assert node is not None
    node.expand()
    await settle(pilot)


async def select(pilot: Pilot, ref: NodeRef) -> None:
    """Put the cursor on a listed node and wait for its detail."""
    assert tree_of(pilot).reveal(ref), f"{ref} is not in the tree"
    await settle(pilot)


async def load_page(pilot: Pilot, workflow_id: int, step_id: int, kind: str = "more") -> None:
    """Ask for a step's next page of jobs ("more") or the one before its listed window ("earlier")."""
    await select(pilot, NodeRef(kind, workflow_id, step_id))
    await pilot.press("enter")
    await settle(pilot)


async def big_step(pilot: Pilot):
    """The tree and the node of the fake's step of 100,000 jobs (workflow 15, step 1), expanded: its first page
    listed."""
    await settle(pilot)
    await open_step(pilot, 15, 1)
    tree = tree_of(pilot)
    return tree, tree.node_for(NodeRef("step", 15, 1))


def notifications(app) -> list[str]:
    """The messages of the app's notifications, oldest first."""
    return [notification.message for notification in app._notifications]


def detail_text(app) -> str:
    """The detail pane's text as a terminal shows it (Rich renders the pane's renderable at its width)."""
    pane = app.main_screen.query_one(DetailPane)
    console = Console(width=pane.size.width or 60, force_terminal=False)
    with console.capture() as capture:
        console.print(pane.query_one("#detail-body").content)
    return capture.get()


async def search(pilot: Pilot, text: str) -> None:
    """Type ``text`` in the filter dialog (``/``) and apply it."""
    await pilot.press("slash")
    await settle(pilot)
    await pilot.press(*text, "enter")
    await settle(pilot)
