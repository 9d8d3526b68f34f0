"""Pure logic of the workbench: update coalescing, form validation, filter matching, line text."""

from __future__ import annotations

import threading

from stepflow_tui.backend.views import Update
from stepflow_tui.core.definitions import StartParameter
from stepflow_tui.tui.formatting import age, job_line, short_duration, workflow_line
from stepflow_tui.tui.screens.start import field_error
from stepflow_tui.tui.source import UpdateRelay
from stepflow_tui.tui.widgets.detail import short_value
from stepflow_tui.tui.widgets.tree import TreeFilter

from .fakes import NOW, FakeBackend


def test_relay_wakes_once_per_batch_and_merges_everything():
    wakes = []
    relay = UpdateRelay(lambda: wakes.append(1))
    threads = [threading.Thread(target=relay, args=(Update(workflow_ids=frozenset({n % 3}),
                                                           job_ids=frozenset({n}), messages=(f"m{n}",)),))
               for n in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wakes == [1]
    merged = relay.take()
    assert merged.workflow_ids == {0, 1, 2} and merged.job_ids == set(range(100)) and len(merged.messages) == 100
    assert relay.take() is None
    relay(Update(connection="reconnecting"))
    relay(Update(queues=True))
    assert wakes == [1, 1]
    merged = relay.take()
    assert merged.connection == "reconnecting" and merged.queues


def test_field_error():
    folder = StartParameter(id="source_dir", label="Folder", type="file", required=True)
    assert field_error(folder, "") == "Folder is required"
    assert field_error(folder, "/data") is None
    defaulted = StartParameter(id="n", label="Count", type="number", required=True, default=3)
    assert field_error(defaulted, "") is None
    assert field_error(defaulted, "three") == "Count must be a number, not 'three'"
    assert field_error(defaulted, "nan") == "Count must be a finite number"
    choice = StartParameter(id="a", label="Algorithm", type="choice", items=("sha256", "md5"))
    assert field_error(choice, "crc") == "Algorithm must be one of sha256, md5"


def test_tree_filter_matches_status_of_workflow_or_jobs_and_text():
    views = {view.id: view for view in FakeBackend().workflows()}
    assert [i for i, v in views.items() if TreeFilter(status="error").matches(v)] == [13, 14]
    assert [i for i, v in views.items() if TreeFilter(text="SLEEP").matches(v)] == [15]
    assert [i for i, v in views.items() if TreeFilter(text="#12").matches(v)] == [12]
    assert not TreeFilter().active and TreeFilter(text=" x ").active


def test_lines_and_ages():
    views = {view.id: view for view in FakeBackend().workflows()}
    assert workflow_line(views[12], NOW).plain == "#12 checksum_folder  ✔ completed  340/340  25m"
    assert workflow_line(views[13], NOW).plain == "#13 failing_demo  ✘ error  0/3  ✘ 3  15m"
    assert job_line(7, "error", 40, "boom\nmore").plain == "#7 ✘ error 40%  boom"
    assert short_duration(59) == "59s" and short_duration(7200) == "2h" and age(None, NOW) == "?"


def test_short_value_cuts_long_lists_and_text():
    assert short_value([f"/p/{n}" for n in range(100_000)]).endswith(", … (99,990 more)]")
    assert short_value("x" * 1000).endswith("… (1,000 characters)")
    assert short_value(3) == "3"
