"""Pilot tests on the fake backend: each key calls the right backend method, read-only refuses, the filter
hides what does not match, updates change only what they name and keep the selection."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta

import pytest
from rich.console import Console

from stepflow_tui.backend.views import Update
from stepflow_tui.tui.app import WorkbenchApp
from stepflow_tui.tui.formatting import STATUS_ICONS
from stepflow_tui.tui.screens.confirm import ConfirmScreen
from stepflow_tui.tui.screens.help import HelpScreen, help_renderable
from stepflow_tui.tui.screens.start import DefinitionPicker, StartForm
from stepflow_tui.tui.screens.workers import WorkersScreen
from stepflow_tui.tui.widgets.header import StatusHeader
from stepflow_tui.tui.widgets.log import LogPanel
from stepflow_tui.tui.widgets.tree import NodeRef, TreeFilter

from .fakes import NOW, FakeBackend
from .helpers import (
    big_step,
    detail_text,
    load_page,
    make_app,
    notifications,
    open_step,
    select,
    settle,
    tree_of,
)

SIZE = (120, 36)


def emit_from_thread(backend: FakeBackend, update: Update) -> None:
    """Send an update the way the backend does: from a thread that is not the UI's."""
    thread = threading.Thread(target=backend.emit, args=(update,))
    thread.start()
    thread.join(timeout=10)


async def test_start_from_the_form_calls_start_workflow_and_selects_it():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert isinstance(app.screen, DefinitionPicker)
        await pilot.press("enter")  # the first definition: checksum_folder
        await settle(pilot)
        assert isinstance(app.screen, StartForm)
        await pilot.press(*"/data/new", "enter")
        await settle(pilot)
        assert backend.calls == [("start_workflow", "checksum_folder",
                                  {"source_dir": "/data/new", "manifest_path": "manifest.sha256",
                                   "algorithm": "sha256"})]
        assert tree_of(pilot).selected_ref == NodeRef("workflow", 16)
        assert "started workflow #16 checksum_folder" in notifications(app)


async def test_start_form_refuses_missing_required_and_bad_number():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("s", "enter")
        await settle(pilot)
        form = app.screen
        form.query_one("#field-max_files").value = "lots"
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is form  # still open
        assert backend.calls == []
        errors = [str(widget.render()) for widget in form.query(".field-error.shown")]
        assert errors == ["Folder to checksum is required", "Stop after this many files must be a number, not 'lots'"]
        form.query_one("#field-source_dir").value = "/data"
        form.query_one("#field-max_files").value = "12"
        await pilot.press("enter")
        await settle(pilot)
        assert backend.calls[0][2]["max_files"] == "12"


async def test_retry_on_a_job_calls_retry_job():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_step(pilot, 13, 1)
        await select(pilot, NodeRef("job", 13, 1, 2001))
        await pilot.press("r")
        await settle(pilot)
        assert backend.calls == [("retry_job", 2001)]
        # the fake announced the change: the job's line follows without a rebuild
        assert "queued" in str(tree_of(pilot).node_for(NodeRef("job", 13, 1, 2001)).label)


async def test_retry_on_a_step_asks_with_the_count_then_retries():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, NodeRef("step", 13, 1))
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question == "Retry 3 failed jobs of step 'fail'?"
        await pilot.press("y")
        await settle(pilot)
        assert backend.calls == [("retry_failed", 13, 1)]


async def test_retry_with_nothing_failed_says_so():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, NodeRef("workflow", 12))
        await pilot.press("r")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        assert backend.calls == []
        assert "no failed jobs in workflow #12 checksum_folder" in notifications(app)


async def test_abort_confirmed_and_cancelled():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, NodeRef("workflow", 14))
        await pilot.press("a")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert backend.calls == []
        await pilot.press("a")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert backend.calls == [("abort", 14)]
        assert "aborted" in str(tree_of(pilot).node_for(NodeRef("workflow", 14)).label)


async def test_pause_then_resume():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, NodeRef("step", 14, 2))  # any node of the workflow will do
        await pilot.press("p")
        await settle(pilot)
        assert "paused" in str(tree_of(pilot).node_for(NodeRef("workflow", 14)).label)
        await pilot.press("p")
        await settle(pilot)
        assert backend.calls == [("pause", 14), ("resume", 14)]


async def test_delete_a_finished_workflow_removes_it_and_refuses_a_running_one():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, NodeRef("workflow", 14))
        await pilot.press("d")
        await settle(pilot)
        assert backend.calls == []
        assert "workflow #14 is processing: abort it before deleting it" in notifications(app)
        await select(pilot, NodeRef("workflow", 12))
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert backend.calls == [("delete", 12)]
        tree = tree_of(pilot)
        assert tree.node_for(NodeRef("workflow", 12)) is None
        assert [node.data.workflow_id for node in tree.root.children] == [13, 14, 15]


async def test_cancel_a_processing_job_but_not_a_finished_one():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_step(pilot, 14, 2)
        await select(pilot, NodeRef("job", 14, 2, 3001))  # completed
        await pilot.press("x")
        await settle(pilot)
        assert backend.calls == []
        await select(pilot, NodeRef("job", 14, 2, 3027))  # processing
        await pilot.press("x")
        await settle(pilot)
        assert backend.calls == [("cancel_job", 3027)]


@pytest.mark.parametrize(("key", "action"), [("s", "start"), ("r", "retry"), ("a", "abort"),
                                             ("p", "pause/resume"), ("d", "delete"), ("x", "cancel job")])
async def test_read_only_refuses_every_change(key, action):
    backend = FakeBackend()
    app = make_app(backend, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_step(pilot, 14, 2)
        await select(pilot, NodeRef("job", 14, 2, 3027))
        await pilot.press(key)
        await settle(pilot)
        assert backend.calls == []
        assert f"read-only mode: {action} refused" in notifications(app)
        assert app.screen is app.main_screen


async def test_backend_read_only_flag_is_honoured():
    app = make_app(FakeBackend(read_only=True))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert "read-only mode: start refused" in notifications(app)
        assert app.main_screen.query_one(StatusHeader).read_only


async def test_filter_dialog_hides_workflows_that_do_not_match():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await settle(pilot)
        await pilot.press(*"failing", "enter")
        await settle(pilot)
        tree = tree_of(pilot)
        assert [node.data.workflow_id for node in tree.root.children] == [13]
        await pilot.press("slash")
        await settle(pilot)
        await pilot.click("#clear")
        await settle(pilot)
        assert [node.data.workflow_id for node in tree.root.children] == [12, 13, 14, 15]


async def test_filter_typing_after_tab_goes_to_the_text_field():
    """Tab moves the focus from the text field to Apply; what is typed next was lost without a word."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await settle(pilot)
        await pilot.press("tab")
        assert app.screen.focused is app.screen.query_one("#apply")
        await pilot.press(*"failing")
        assert app.screen.query_one("#text").value == "failing"
        await pilot.press("enter")
        await settle(pilot)
        assert [node.data.workflow_id for node in tree_of(pilot).root.children] == [13]


async def test_status_filter_lists_only_matching_jobs():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        tree = tree_of(pilot)
        tree.set_filter(TreeFilter(status="error"))
        assert [node.data.workflow_id for node in tree.root.children] == [13, 14]
        await open_step(pilot, 14, 2)
        step = tree.node_for(NodeRef("step", 14, 2))
        assert [child.data.job_id for child in step.children] == [3026]


async def test_large_step_lists_a_page_then_more_on_demand():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        tree, step = await big_step(pilot)
        assert len(step.children) == 201  # 200 jobs + "load more"
        assert "(99,800 left)" in str(step.children[-1].label)
        await load_page(pilot, 15, 1)
        assert tree.loaded_count(15, 1) == 400
        assert tree.selected_ref == NodeRef("job", 15, 1, 100_200)
        assert "(99,600 left)" in str(step.children[-1].label)


async def test_paging_far_keeps_a_window_of_listed_jobs_and_pages_back():
    """Past MAX_LISTED lines, each next page drops the first one; "load earlier" brings it back and drops the
    last one; the cursor lands on the new job next to where the operator was."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        tree, step = await big_step(pilot)
        assert tree.MAX_LISTED == 1000 and tree.PAGE_SIZE == 200
        for _ in range(5):  # pages 2..6: the sixth page makes 1,200 listed, over the window
            await load_page(pilot, 15, 1)
        assert tree.listed_window(15, 1) == (200, 1200)
        jobs = [child.data.job_id for child in step.children if child.data.kind == "job"]
        assert jobs == list(range(100_200, 101_200))
        assert tree.node_for(NodeRef("job", 15, 1, 100_199)) is None  # dropped with its page
        assert tree.selected_ref == NodeRef("job", 15, 1, 101_000)
        assert str(step.children[0].label) == "… load 200 earlier (200 before)"
        assert "(98,800 left)" in str(step.children[-1].label)

        await load_page(pilot, 15, 1, "earlier")
        assert tree.listed_window(15, 1) == (0, 1000)
        assert [child.data.job_id for child in step.children[:-1]] == list(range(100_000, 101_000))
        assert tree.node_for(NodeRef("earlier", 15, 1)) is None
        assert tree.selected_ref == NodeRef("job", 15, 1, 100_199)  # just above where the cursor was
        assert "load 200 more (99,000 left)" in str(step.children[-1].label)
        # updates still reach every listed line, and only those
        assert tree.job_status(100_999) is not None and tree.job_status(101_100) is None
        # a page that drops the selected line leaves the cursor on the line that takes it back
        await select(pilot, NodeRef("job", 15, 1, 100_050))
        tree.load_page(15, 1, 1000)
        await settle(pilot)
        assert tree.listed_window(15, 1) == (200, 1200)
        assert tree.selected_ref == NodeRef("earlier", 15, 1, offset=0)


class GatedBackend(FakeBackend):
    """Job pages wait for ``gate`` (when set): a read still running while the operator does something else."""

    gate: threading.Event | None = None

    def jobs(self, *args, **kwargs):
        gate = self.gate
        if gate is not None:
            assert gate.wait(30), "the test never opened the gate"
        return super().jobs(*args, **kwargs)


async def test_a_page_read_before_the_filter_changed_is_not_listed_after_it():
    backend = GatedBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        tree, _step = await big_step(pilot)
        backend.gate = threading.Event()
        assert tree.reveal(NodeRef("more", 15, 1))
        await pilot.press("enter")  # the read of jobs 200..399 waits at the gate
        await pilot.pause()
        tree.set_filter(TreeFilter(status="queued"))  # rebuilds the tree: the step is read again, filtered
        backend.gate.set()
        backend.gate = None
        await settle(pilot)
        step = tree.node_for(NodeRef("step", 15, 1))
        listed = [child.data.job_id for child in step.children if child.data.kind == "job"]
        assert listed and {tree.job_status(job_id) for job_id in listed} == {"queued"}
        assert tree.listed_window(15, 1) == (0, len(listed))


async def test_under_a_status_filter_a_page_of_jobs_already_listed_changes_nothing_listed():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        tree = tree_of(pilot)
        tree.set_filter(TreeFilter(status="queued"))
        tree, step = await big_step(pilot)
        for _ in range(5):
            await load_page(pilot, 15, 1)
        start, end = tree.listed_window(15, 1)
        assert start == 200
        listed = [child.data.job_id for child in step.children if child.data.kind == "job"]
        # the queued jobs before the window finish: the earlier page now holds jobs already listed
        first_queued = [job.id for job in backend.jobs(15, 1, 0, 200, status="queued")]
        for job_id in first_queued:
            backend.set_job(job_id, "completed", 100, None)
        await load_page(pilot, 15, 1, "earlier")
        assert [child.data.job_id for child in step.children if child.data.kind == "job"] == listed
        assert tree.listed_window(15, 1)[1] == end
        assert tree.node_for(NodeRef("earlier", 15, 1)) is None  # no queued job before those listed now
        assert tree.selected_ref is not None and tree.selected_ref.kind == "job"
        # the next page starts right after the last listed job, although the offsets moved by 200: no gap
        wanted = [job.id for job in backend.jobs(15, 1, 0, 100_000, status="queued") if job.id > listed[-1]][:200]
        await load_page(pilot, 15, 1)
        now_listed = [child.data.job_id for child in step.children if child.data.kind == "job"]
        assert now_listed[-200:] == wanted and len(set(now_listed)) == len(now_listed)


async def test_updates_change_listed_jobs_and_keep_the_selection():
    """1,000 job updates in one coalesced update relabel every listed job; the cursor stays put."""
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_step(pilot, 15, 1)
        tree = tree_of(pilot)
        for _ in range(4):
            await load_page(pilot, 15, 1)
        assert tree.loaded_count(15, 1) == 1000
        await select(pilot, NodeRef("job", 15, 1, 100_500))
        job_ids = range(100_000, 101_000)
        for job_id in job_ids:
            backend.set_job(job_id, "error", 7, "disk full")
        for job_id in job_ids:  # many small updates, merged before the UI sees them
            if job_id % 100 == 0:
                emit_from_thread(backend, Update(workflow_ids=frozenset({15}),
                                                 job_ids=frozenset(range(job_id, job_id + 100))))
        await settle(pilot)
        labels = [str(tree.node_for(NodeRef("job", 15, 1, job_id)).label) for job_id in job_ids]
        assert all("error 7%" in label and "disk full" in label for label in labels)
        assert tree.selected_ref == NodeRef("job", 15, 1, 100_500)
        assert "✘ 1000" in str(tree.node_for(NodeRef("step", 15, 1)).label)


async def test_a_new_workflow_appears_and_a_deleted_one_goes_without_moving_the_cursor():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, NodeRef("workflow", 14))
        backend.start_workflow("failing_demo", {})  # announced from this (non-UI) call
        backend.delete(12)
        await settle(pilot)
        tree = tree_of(pilot)
        assert [node.data.workflow_id for node in tree.root.children] == [13, 14, 15, 16]
        assert tree.selected_ref == NodeRef("workflow", 14)
        assert tree.node_for(NodeRef("workflow", 16)).is_expanded  # its steps show at once


async def test_connection_state_and_messages_reach_the_header_and_notifications():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        emit_from_thread(backend, Update(connection="reconnecting", messages=("broker connection lost",)))
        await settle(pilot)
        assert app.main_screen.query_one(StatusHeader).connection == "reconnecting"
        assert "broker connection lost" in notifications(app)


async def test_a_failed_command_is_a_notification_not_a_crash():
    backend = FakeBackend()
    backend.fail_next = "broker unreachable"
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, NodeRef("workflow", 14))
        await pilot.press("p")
        await settle(pilot)
        assert "pause workflow #14 failed: broker unreachable" in notifications(app)
        assert app.is_running


async def test_workers_help_log_and_quit_keys():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("w")
        await settle(pilot)
        assert isinstance(app.screen, WorkersScreen)
        table = app.screen.query_one("#workers-table")
        assert table.row_count == 3
        assert "LOST" in str(table.get_row("worker-sleep-1")[1])  # second: on screen at any width
        await pilot.press("escape")
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        log = app.main_screen.query_one(LogPanel)
        assert not log.display
        await pilot.press("l")
        assert log.display
        logging.getLogger("stepflow_tui.test").warning("disk almost full")
        await pilot.pause()
        assert any("disk almost full" in line.text for line in log.lines)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value == 0


async def test_command_palette_lists_the_actions():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        for title in ("Start (s)", "Retry (r)", "Abort (a)", "Pause (p)", "Delete (d)", "Cancel (x)",
                      "Filter (/)", "Workers (w)", "Log (l)", "Help (?)", "Redrive dead letters (R)"):
            assert title in titles
        # the redrive command works from the tree (R itself needs the queues panel's dead-letter row)
        redrive = next(c for c in app.get_system_commands(app.screen) if c.title == "Redrive dead letters (R)")
        redrive.callback()
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question == "Redrive 1 dead letter to their queues?"


def test_help_lists_redrive_and_every_status():
    console = Console(width=120, force_terminal=False)
    with console.capture() as capture:
        console.print(help_renderable(read_only=False))
    text = capture.get()
    assert "R / enter" in text and "redrive" in text
    for key in ("s", "r", "a", "p", "d", "x", "/", "w", "l", "?", "q"):
        assert any(line.strip().startswith(key + " ") for line in text.splitlines()), key
    for status, icon in STATUS_ICONS.items():
        assert f"{icon} {status}" in text


async def test_detail_ages_follow_the_clock_while_the_item_is_live():
    """The tree's ages move every 10 s; the detail's "(0s ago)" of a running workflow moved only when the
    workflow changed. Now it is redrawn on a timer while the selection is live."""
    now = [NOW]
    app = WorkbenchApp(FakeBackend(), clock=lambda: now[0], cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, NodeRef("workflow", 14))
        assert "(0s ago)" in detail_text(app)  # updated_at is NOW in the fake
        now[0] = NOW + timedelta(seconds=7)
        for _ in range(100):  # the detail timer fires every 2 s: wait for it, at most 10 s
            if "(7s ago)" in detail_text(app):
                break
            await asyncio.sleep(0.1)
        assert "(7s ago)" in detail_text(app)
