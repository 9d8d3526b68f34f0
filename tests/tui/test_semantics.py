"""What the workbench says about how things ended: a cancel is not a failure, a step an abort kept from
starting did not lack inputs, a step waiting for another says so, a version reads as it was written."""

from __future__ import annotations

from rich.console import Console

from stepflow_tui.backend.views import StepView
from stepflow_tui.core.definitions import StepDefinition, WorkflowDefinition
from stepflow_tui.tui.formatting import failed_jobs_phrase, step_status_note
from stepflow_tui.tui.widgets.detail import step_detail, workflow_detail

from .fakes import NOW, FakeBackend


def rendered(renderable) -> str:
    console = Console(width=100, record=True)
    console.print(renderable)
    return console.export_text()


def test_retry_wording_names_stopped_jobs_as_stopped():
    assert failed_jobs_phrase(1, 0, 1) == "1 stopped job"
    assert failed_jobs_phrase(3, 3, 0) == "3 failed jobs"
    assert failed_jobs_phrase(4, 3, 1) == "4 failed or stopped jobs"


def test_a_skipped_step_tells_an_abort_from_a_lack_of_inputs():
    never_launched = StepView(3, "manifest", "manifest", "skipped", {}, 0)
    launched = StepView(3, "manifest", "manifest", "skipped", {}, 0, launched_at="2026-03-02T10:00:00Z")
    assert step_status_note(never_launched) == "aborted before it began"
    assert step_status_note(launched) == "no inputs: its parents produced none"
    assert step_status_note(StepView(1, "a", "a", "completed", {}, 1)) == ""


def test_step_detail_shows_what_a_step_waits_for():
    view = FakeBackend().workflow(14)
    definition = WorkflowDefinition("gate", "Gate", steps=(
        StepDefinition(1, "list_files", "list files"), StepDefinition(2, "checksum", "checksum"),
        StepDefinition(3, "manifest", "manifest", required_to_start=(2,))))
    text = rendered(step_detail(view, view.steps[2], definition))
    assert "inputs from  its parameters (no parent step)" in text
    assert "starts after 2 checksum" in text and "parents" not in text


def test_workflow_detail_shows_the_version_as_defined():
    view = FakeBackend().workflow(12)
    assert "version  v0.0.1" in rendered(workflow_detail(view, NOW))


def test_job_lines_show_input_duration_and_worker():
    from stepflow_tui.tui.formatting import job_line, job_view_of

    line = job_line(7, "completed", 100, input_path="/data/in/img_0042.jpg", duration=3.14,
                    worker="3fa2b9c1d4e5f60718293a4b5c6d7e8f")
    assert line.plain == "#7 ✔ completed 100%  img_0042.jpg  3.1s  3fa2b9c1"
    record = {"id": 7, "status": "error", "progress": 40, "error": "boom", "worker": "w-1",
              "execution_duration": 0.25, "parameters": [{"id": "source_path", "value": "/x/a.mov"}]}
    view = job_view_of(record)
    assert (view.input, view.duration, view.worker) == ("/x/a.mov", 0.25, "w-1")


def test_step_detail_shows_durations_and_the_slowest_jobs():
    backend = FakeBackend()
    view = backend.workflow(14)
    text = rendered(step_detail(view, view.steps[1], None, backend.step_stats(14, 2)))
    assert "min / median 0.40s / 3.0s" in text and "p95 / max    7.5s / 12.2s" in text
    assert "throughput   1.50 jobs/s" in text and "#3001  12.2s" in text


async def test_the_log_panel_shows_info_records_logged_while_it_was_hidden():
    import logging

    from stepflow_tui.tui.widgets.log import LogPanel

    from .helpers import make_app, settle

    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        logging.getLogger("stepflow_tui.worker").info("worker started")  # info: the root stops at warnings
        await settle(pilot)
        await pilot.press("l")
        await settle(pilot)
        panel = app.main_screen.query_one(LogPanel)
        assert panel.display and any("worker started" in str(line.text) for line in panel.lines)


def test_job_detail_shows_its_log_or_says_none():
    from stepflow_tui.tui.widgets.detail import LOG_LINES, job_detail

    record = FakeBackend().job(2002)
    text = rendered(job_detail(record, NOW))
    log = text.split("Log\n", 1)[1]
    assert log.startswith("10:01:03 INFO reading /data/photos/img_00001.jpg\n10:01:06 WARNING failed: no such")
    many = dict(record, logs=[f"line {n}" for n in range(LOG_LINES + 7)])
    assert "… 7 lines above\nline 7\n" in rendered(job_detail(many, NOW))
    assert "Log\nnone\n" in rendered(job_detail(dict(record, logs=[]), NOW))  # a foreign worker sends none
