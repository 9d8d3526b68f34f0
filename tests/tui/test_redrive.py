"""The dead-letter row of the queues panel: R (or enter) -> a dry run -> a confirmation with the counts per
original queue -> the redrive, all without blocking the UI (thread workers on the backend's futures)."""

from __future__ import annotations

from stepflow_tui.ops import NO_ORIGIN
from stepflow_tui.tui.screens.confirm import ConfirmScreen
from stepflow_tui.tui.widgets.queues import QueuesPanel

from .fakes import FakeBackend
from .helpers import make_app, settle

SIZE = (120, 36)


async def focus_dead_letters(pilot) -> QueuesPanel:
    """Tab to the queues panel: its row cursor starts on job_dead_letter (listed first)."""
    await settle(pilot)
    panel = pilot.app.main_screen.query_one(QueuesPanel)
    panel.focus()
    await pilot.pause()
    assert panel.cursor_type == "row" and panel.cursor_queue == "job_dead_letter"
    return panel


async def test_redrive_from_the_dead_letter_row() -> None:
    backend = FakeBackend(dead_letters={"job_checksum": 2, "job_completed": 1, NO_ORIGIN: 1})
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        panel = await focus_dead_letters(pilot)

        # on another row, R says where to go; nothing is sent
        panel.move_cursor(row=panel.get_row_index("job_checksum"))
        await pilot.press("R")
        await settle(pilot)
        assert backend.calls == [] and not isinstance(app.screen, ConfirmScreen)

        panel.move_cursor(row=0)
        await pilot.press("R")
        await settle(pilot)
        assert backend.calls == [("redrive_dead_letters", None, True)]  # the dry run, for the counts
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question == "Redrive 3 dead letters to their queues?"
        assert "2  job_checksum" in app.screen.detail and "1  job_completed" in app.screen.detail

        await pilot.press("n")  # cancelled: nothing moves
        await settle(pilot)
        assert backend.calls == [("redrive_dead_letters", None, True)]
        assert backend.dead_letters["job_checksum"] == 2

        await pilot.press("enter")  # enter on the row does the same
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert backend.calls[-1] == ("redrive_dead_letters", None, False)
        assert backend.dead_letters == {NO_ORIGIN: 1}
        assert not isinstance(app.screen, ConfirmScreen)

        # again: only what has no x-death is left, so there is nothing to ask about
        await pilot.press("R")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        assert backend.calls[-1] == ("redrive_dead_letters", None, True)


async def test_read_only_refuses_redrive() -> None:
    backend = FakeBackend(read_only=True)
    async with make_app(backend, read_only=True).run_test(size=SIZE) as pilot:
        await focus_dead_letters(pilot)
        await pilot.press("R")
        await settle(pilot)
        assert backend.calls == []


def test_redrive_confirmation(snap_compare):
    """The confirmation over the main screen: the counts per original queue from the dry run."""

    async def run_before(pilot):
        await focus_dead_letters(pilot)
        await pilot.press("R")
        await settle(pilot)

    # as many as the panel's job_dead_letter row shows (2)
    backend = FakeBackend(dead_letters={"job_checksum": 1, "job_completed": 1})
    assert snap_compare(make_app(backend), terminal_size=SIZE, run_before=run_before)
