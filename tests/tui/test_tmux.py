"""The real `stepflow` process, driven through tmux as a person would: keys in, screen text out.

Each test runs the workbench in its own tmux server (``tmux -L <unique socket>``) so that it never touches a
tmux the user runs, and kills that server at the end whatever happens. Synchronisation is always "wait until
the screen shows X" (polling ``capture-pane`` with a timeout), never a fixed sleep. Keys go one per
``send-keys`` call, each after the screen showed the state it needs: Textual may otherwise read a key before
focus moved to the screen that should get it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .tmux_harness import (
    REPO_WORKFLOWS,
    Tmux,
    pick_definition,
    start_workbench,
    tab_to_field,
    workflow_line,
)

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed: the tmux tests need it"),
    pytest.mark.timeout(60),
]


def test_checksum_folder_from_the_form_then_the_manifest_verifies(tmux: Tmux, tmp_path: Path):
    source = tmp_path / "data"
    expected = []
    for index in range(50):
        path = source / f"dir{index % 4}" / f"sub{index % 3}" / f"file{index:02d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"content of file {index}\n" * (index + 1))
        expected.append(path.relative_to(source).as_posix())
    manifest = tmp_path / "MANIFEST.sha256"
    exit_file = start_workbench(tmux, tmp_path)

    pick_definition(tmux, "checksum_folder")  # from the stepflow-files plugin: the cwd has no workflows.json
    tmux.type(str(source))
    tmux.wait_text(str(source)[-50:], "the source folder typed into the form")  # a long value scrolls
    tab_to_field(tmux, "Manifest file")
    tmux.type(str(manifest))
    tmux.wait_text(str(manifest)[-50:], "the manifest path typed into the form")
    tmux.key("Enter")
    screen = tmux.wait_for(lambda s: "completed" in workflow_line(s, "checksum_folder"),
                           "checksum_folder completed in the tree")
    assert "52/52" in workflow_line(screen, "checksum_folder")  # list + 50 checksums + manifest

    tmux.key("q")
    tmux.wait_gone("the workbench to exit after q")
    assert exit_file.read_text().strip() == "0"
    listed = sorted(line.split("  ", 1)[1] for line in manifest.read_text().splitlines())
    assert listed == sorted(expected)
    check = subprocess.run(["sha256sum", "-c", str(manifest)], cwd=source, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 50


def test_failing_demo_fails_then_a_retry_from_the_step_completes_it(tmux: Tmux, tmp_path: Path):
    marker = tmp_path / "fixed"
    exit_file = start_workbench(tmux, tmp_path, "--workflows", str(REPO_WORKFLOWS))

    pick_definition(tmux, "failing_demo")
    tmux.wait_text("/tmp/stepflow-fix-me", "the marker field's default")
    tmux.key("C-u")  # clear the default (the cursor is at its end)
    tmux.wait_for(lambda s: "/tmp/stepflow-fix-me" not in s, "the marker field cleared")
    tmux.type(str(marker))
    tmux.wait_text(str(marker)[-50:], "the marker path typed into the form")
    tmux.key("Enter")
    screen = tmux.wait_for(lambda s: "error" in workflow_line(s, "failing_demo"), "failing_demo in error")
    workflow_id = re.search(r"#(\d+) failing_demo", workflow_line(screen, "failing_demo")).group(1)
    tmux.wait_text(f"Workflow #{workflow_id}", "the new workflow selected (its detail shown)")

    if "▶" in workflow_line(screen, "failing_demo"):  # it may have failed before the tree first showed it
        tmux.key("Enter")
        tmux.wait_for(lambda s: "▼" in workflow_line(s, "failing_demo"), "the workflow expanded")
    tmux.key("Down")
    tmux.wait_text("Step 1 Prepare", "the cursor on step 1")
    tmux.key("Down")
    tmux.wait_text("Step 2 Fail unless", "the cursor on step 2")

    marker.write_text("now the job can succeed\n")
    tmux.key("r")
    tmux.wait_text("Retry 1 failed job", "the retry confirmation with the count")
    tmux.key("Enter")
    screen = tmux.wait_for(lambda s: "completed" in workflow_line(s, "failing_demo"),
                           "failing_demo completed after the retry")
    assert "✘" not in workflow_line(screen, "failing_demo")
    # the failed job's warning went to the (hidden) log panel, not through stderr over the screen
    assert "WARNING stepflow_tui" not in tmux.output.read_text(errors="replace")

    tmux.key("q")
    tmux.wait_gone("the workbench to exit after q")
    assert exit_file.read_text().strip() == "0"


def clear_filter_text(tmux: Tmux) -> None:
    """In the filter dialog, once its text field shows the current text: empty it (ctrl+u)."""
    tmux.wait_for(lambda s: "e.g. checksum" not in s, "the field showing the current filter's text")
    tmux.key("End")
    tmux.key("C-u")
    tmux.wait_text("e.g. checksum", "the text field emptied (its placeholder shown)")


def test_search_jumps_to_a_job_by_id_says_no_match_and_clears(tmux: Tmux, tmp_path: Path):
    start_workbench(tmux, tmp_path, "--workflows", str(REPO_WORKFLOWS))
    pick_definition(tmux, "failing_demo")
    tmux.key("Enter")
    screen = tmux.wait_for(lambda s: re.search(r"(error|completed)", workflow_line(s, "failing_demo")),
                           "failing_demo ended")
    workflow_id = re.search(r"#(\d+) failing_demo", workflow_line(screen, "failing_demo")).group(1)

    tmux.key("/")
    tmux.wait_text("Filter workflows", "the filter dialog")
    tmux.wait_text("e.g. checksum", "the text field empty, focused")
    tmux.type("#2")  # the second job: step 2, the one that fails
    tmux.wait_for(lambda s: "e.g. checksum" not in s, "the job id typed")
    tmux.key("Enter")
    tmux.wait_text("Job #2  fail", "the job found and its detail shown")
    tmux.wait_text("job #2 selected", "the search saying where it went")

    tmux.key("/")
    tmux.wait_text("Filter workflows", "the filter dialog again")
    clear_filter_text(tmux)
    tmux.type("nothing-like-this")
    tmux.wait_text("nothing-like-this", "the text typed")
    tmux.key("Enter")
    tmux.wait_text("no match for text='nothing-like-this'", "no match said")
    assert workflow_line(tmux.screen(), "failing_demo") == ""

    tmux.key("/")
    tmux.wait_text("Filter workflows", "the filter dialog a third time")
    clear_filter_text(tmux)
    tmux.key("Enter")  # an empty filter: everything again, the selection of before the filter back
    tmux.wait_for(lambda s: workflow_line(s, "failing_demo") != "", "the workflow listed again")
    tmux.wait_text(f"Workflow #{workflow_id}", "the workflow selected again, as before the search")


def test_rerun_with_the_same_parameters_then_export(tmux: Tmux, tmp_path: Path):
    start_workbench(tmux, tmp_path, "--workflows", str(REPO_WORKFLOWS))
    pick_definition(tmux, "failing_demo")
    tmux.key("Enter")
    tmux.wait_for(lambda s: re.search(r"(error|completed)", workflow_line(s, "failing_demo")), "#1 ended")
    tmux.wait_text("Workflow #1", "workflow #1 selected")

    tmux.key("e")
    tmux.wait_text("With the parameters of #1", "the start form again, holding #1's parameters")
    tmux.key("Enter")
    tmux.wait_text("started workflow #2 failing_demo", "the re-run started")
    tmux.wait_for(lambda s: re.search(r"#2 failing_demo\s+\S+ (error|completed)", s), "#2 ended")

    tmux.key("E")
    tmux.wait_text("exported to", "the export done")
    exported = sorted(path.name for path in (tmp_path / "cwd").glob("workflow-*"))
    assert exported == ["workflow-2.csv", "workflow-2.json"]
    assert "failing_demo" in (tmp_path / "cwd" / "workflow-2.json").read_text()
