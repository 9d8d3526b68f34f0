"""Snapshots of every screen and state that matters, on the fake backend (fixed ids, clock, no blink).

Update with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at each changed SVG first."""

from __future__ import annotations

from stepflow_tui.backend.views import Update
from stepflow_tui.tui.widgets.tree import NodeRef, TreeFilter

from .fakes import FakeBackend, add_ended_workflows
from .helpers import load_page, make_app, open_step, search, select, settle, tree_of

SIZE = (120, 36)


def test_main_running_workflow(snap_compare):
    """The running workflow #14 selected, its checksum step expanded with its 40 jobs."""

    async def run_before(pilot):
        await settle(pilot)
        await open_step(pilot, 14, 2)
        await select(pilot, NodeRef("workflow", 14))

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_failed_job_selected(snap_compare):
    """A failed job: error, traceback excerpt, parameters, history, worker, duration in the detail pane."""

    async def run_before(pilot):
        await settle(pilot)
        await open_step(pilot, 13, 1)
        await select(pilot, NodeRef("job", 13, 1, 2002))

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_large_step_expanded(snap_compare):
    """A step of 100,000 jobs: counts at once, the first 200 jobs listed, a "load more" line."""

    async def run_before(pilot):
        await settle(pilot)
        await open_step(pilot, 15, 1)
        await select(pilot, NodeRef("more", 15, 1))
        await pilot.press("enter")  # the next page: the cursor lands on its first job
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_large_step_paged_far(snap_compare):
    """Six pages into a step of 100,000 jobs: the first page dropped, a "load earlier" line above the rest."""

    async def run_before(pilot):
        await settle(pilot)
        await open_step(pilot, 15, 1)
        for _ in range(5):
            await load_page(pilot, 15, 1)
        await select(pilot, NodeRef("earlier", 15, 1))

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_definition_picker(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_start_form(snap_compare):
    """The form of checksum_folder: defaults filled in, required fields marked, the choice as a select."""

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("s", "enter")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_start_form_validation_error(snap_compare):
    """Submitting without the required folder and with a bad number shows both errors inline."""

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("s", "enter")
        await settle(pilot)
        pilot.app.screen.query_one("#field-max_files").value = "many"
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_retry_confirmation_with_count(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await select(pilot, NodeRef("step", 13, 1))
        await pilot.press("r")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_workers_screen(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("w")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_filter_dialog(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("slash")
        await settle(pilot)
        await pilot.press(*"checksum")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_filter_applied(snap_compare):
    """Status filter "error": only workflows with failed jobs; an expanded step lists only its failed jobs."""

    async def run_before(pilot):
        await settle(pilot)
        tree_of(pilot).set_filter(TreeFilter(status="error"))
        await open_step(pilot, 14, 2)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_read_only_refusal(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)

    assert snap_compare(make_app(read_only=True), terminal_size=SIZE, run_before=run_before)


def test_reconnecting_header(snap_compare):
    """The broker went away: the header says so, the tree keeps what it has."""
    backend = FakeBackend()

    async def run_before(pilot):
        await settle(pilot)
        backend.connection_state = "reconnecting"
        backend.emit(Update(connection="reconnecting"))
        await settle(pilot)

    assert snap_compare(make_app(backend), terminal_size=SIZE, run_before=run_before)


def test_narrow_terminal(snap_compare):
    async def run_before(pilot):
        await settle(pilot)
        await open_step(pilot, 14, 2)
        await select(pilot, NodeRef("job", 14, 2, 3026))

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)


def test_search_jumps_to_a_job_of_a_large_step(snap_compare):
    """/ 154321: job 54,321 of the 100,000-job step, its page listed alone with pager lines both ways."""

    async def run_before(pilot):
        await settle(pilot)
        await search(pilot, "154321")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_search_without_a_match(snap_compare):
    """/ with a text nothing matches: an empty tree that says so, in its border and in the detail pane."""

    async def run_before(pilot):
        await settle(pilot)
        await search(pilot, "nothing-like-this")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_step_durations(snap_compare):
    """A step selected: inputs from / starts after, durations (min, median, p95, max, throughput, slowest)."""

    async def run_before(pilot):
        await settle(pilot)
        await open_step(pilot, 14, 2)
        await select(pilot, NodeRef("step", 14, 2))

    assert snap_compare(make_app(), terminal_size=(120, 50), run_before=run_before)


def test_stopped_workflow_retry_wording(snap_compare):
    """A workflow whose cancelled job ended it "stopped", not "error"; r says "1 stopped job"."""
    backend = FakeBackend()
    add_ended_workflows(backend)

    async def run_before(pilot):
        await settle(pilot)
        await select(pilot, NodeRef("workflow", 17))
        await pilot.press("r")
        await settle(pilot)

    assert snap_compare(make_app(backend), terminal_size=SIZE, run_before=run_before)


def test_step_skipped_by_an_abort(snap_compare):
    """A step an abort kept from starting: "skipped (aborted before it began)", not "no inputs"."""
    backend = FakeBackend()
    add_ended_workflows(backend)

    async def run_before(pilot):
        await settle(pilot)
        tree_of(pilot).node_for(NodeRef("workflow", 18)).expand()
        await settle(pilot)
        await select(pilot, NodeRef("step", 18, 2))

    assert snap_compare(make_app(backend), terminal_size=SIZE, run_before=run_before)


def test_queues_rates_and_sparklines(snap_compare):
    """Rates in and out and five minutes of depth, from readings of published / delivered totals."""
    from stepflow_tui.backend import QueueState
    from stepflow_tui.tui.queue_rates import QueueRates
    from stepflow_tui.tui.widgets.queues import QueuesPanel

    from .fakes import NOW

    depths = [0, 400, 1_200, 2_600, 2_616, 2_500, 2_100, 1_800, 1_200, 900, 900]

    def word_count(n: int) -> QueueState:  # 100 messages/s in; out is what did not stay
        return QueueState("job_word_count", True, depths[n], 8, 2, published=3_000 * n,
                          delivered=3_000 * n - depths[n])

    async def run_before(pilot):
        await settle(pilot)
        panel = pilot.app.main_screen.query_one(QueuesPanel)
        panel.rates = QueueRates()  # only the readings below: one every 30 s up to now
        for n in range(len(depths) - 1):
            panel.rates.record([word_count(n), QueueState("job_checksum", True, 10, 4, 2, published=5 * n,
                                                          delivered=5 * n)],
                               NOW.timestamp() - (len(depths) - 1 - n) * 30)
        others = [s for s in pilot.app.main_screen.backend.queue_states() if s.name != "job_checksum"]
        panel.show([word_count(len(depths) - 1), QueueState("job_checksum", True, 10, None, 2, published=50,
                                                            delivered=50), *others])
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_rerun_form(snap_compare):
    """e on workflow #14: the start form again, its fields holding the parameters #14 was started with."""

    async def run_before(pilot):
        await settle(pilot)
        await select(pilot, NodeRef("workflow", 14))
        await pilot.press("e")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_plugin_renderer_and_column(snap_compare):
    """A plugin's renderer above a checksum job's outputs, and its column at the end of job lines."""
    from stepflow_tui.tui.app import WorkbenchApp
    from stepflow_tui.tui.extensions import WorkbenchExtensions

    from .fakes import fixed_clock

    extensions = WorkbenchExtensions(
        renderers={"checksum": lambda record: f"sha256 {record['outputs'][0]['value'][:16]}… (verified)"},
        columns={"parity": lambda job: "even" if job.id % 2 == 0 else "odd"})
    app = WorkbenchApp(FakeBackend(), clock=fixed_clock, cursor_blink=False, extensions=extensions)

    async def run_before(pilot):
        await settle(pilot)
        await open_step(pilot, 14, 2)
        await select(pilot, NodeRef("job", 14, 2, 3002))

    assert snap_compare(app, terminal_size=(120, 50), run_before=run_before)
