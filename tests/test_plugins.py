"""The plugin manager, the registry's validation, entry points that fail, the job context, and the docs."""

from __future__ import annotations

import inspect
import logging
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest

from stepflow_tui import hookimpl, hookspecs
from stepflow_tui.plugins import (
    LOAD_PLUGINS_ENV,
    JobType,
    LoadFailure,
    get_plugin_manager,
    load_registry,
    reset_registry,
)
from stepflow_tui.worker.context import JobCancelled, JobContext, JobResult, normalize_result

DOCS = Path(__file__).parent.parent / "docs" / "plugins.md"


def echo(ctx: JobContext) -> dict[str, Any]:
    return {"destination_paths": [ctx.require("path")], "outputs": {"echoed": True}}


class EchoPlugin:
    """A small plugin, registered on a manager by the fixture below."""

    @hookimpl
    def register_job_types(self, register: Callable[[JobType], None]) -> None:
        register(JobType(name="job_echo", label="Echo", parameters={"type": "object"}))

    @hookimpl
    def register_workers(self, register: Callable[[str, Any], None]) -> None:
        register("echo", echo)

    @hookimpl
    def register_workflows(self, register: Callable[[Any], None]) -> None:
        register({"identifier": "echo_once", "label": "Echo", "steps": []})


class RaisingPlugin:
    @hookimpl
    def register_job_types(self, register: Callable[[JobType], None]) -> None:
        register(JobType(name="half_done", label="registered before the error"))
        raise RuntimeError("database unreachable\nsecond line")

    @hookimpl
    def register_workers(self, register: Callable[[str, Any], None]) -> None:
        register("ok_worker", echo)


@pytest.fixture
def pm(monkeypatch: pytest.MonkeyPatch) -> pluggy.PluginManager:
    """A plugin manager with only the built-ins (installed plugins must not change these tests)."""
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    return get_plugin_manager()


@pytest.fixture
def echo_plugin(pm: pluggy.PluginManager) -> Iterator[EchoPlugin]:
    plugin = EchoPlugin()
    pm.register(plugin, name="echo")
    yield plugin
    pm.unregister(plugin)


def failure(registry_failures: list[LoadFailure], name: str) -> str:
    errors = [item.error for item in registry_failures if item.name == name]
    assert len(errors) == 1, f"expected one failure for {name!r}, got {registry_failures}"
    return errors[0]


# -- registry ---------------------------------------------------------------------------------------------------
def test_builtins_register(pm: pluggy.PluginManager) -> None:
    registry = load_registry(pm)
    assert {"noop", "sleep", "fail"} <= set(registry.job_types)
    assert {"noop", "sleep", "fail"} <= set(registry.workers)
    assert registry.failures == []
    builtin = next(info for info in registry.plugins if info.name == "builtin")
    assert builtin.hooks == ["register_job_types", "register_workers"]
    assert builtin.job_types == ["noop", "sleep", "fail"]
    assert builtin.version


def test_a_registered_plugin_adds_and_unregistering_removes(pm: pluggy.PluginManager,
                                                             echo_plugin: EchoPlugin) -> None:
    registry = load_registry(pm)
    echo_type = registry.job_types["echo"]  # the job_ prefix is stripped
    assert (echo_type.plugin, echo_type.label, echo_type.queue) == ("echo", "Echo", "job_echo")
    assert registry.workers["echo"] is echo
    assert registry.workflow_sources == [("echo", {"identifier": "echo_once", "label": "Echo", "steps": []})]
    info = next(info for info in registry.plugins if info.name == "echo")
    assert info.hooks == ["register_job_types", "register_workers", "register_workflows"]
    assert info.workers == ["echo"]
    pm.unregister(echo_plugin)
    assert "echo" not in load_registry(pm).job_types
    pm.register(echo_plugin, name="echo")  # the fixture unregisters it again


def test_a_plugin_that_raises_is_reported_and_the_others_load(pm: pluggy.PluginManager,
                                                               echo_plugin: EchoPlugin) -> None:
    pm.register(RaisingPlugin(), name="raising")
    registry = load_registry(pm)
    error = failure(registry.failures, "raising")
    assert error == "hook register_job_types raised RuntimeError: database unreachable"
    # what it registered before raising is dropped; its other hook and the other plugins still count
    assert "half_done" not in registry.job_types
    assert registry.workers["ok_worker"] is echo
    assert "echo" in registry.workers and "noop" in registry.workers


def test_a_duplicate_job_type_names_both_plugins_and_the_first_wins(pm: pluggy.PluginManager) -> None:
    class Impostor:
        @hookimpl
        def register_job_types(self, register: Callable[[JobType], None]) -> None:
            register(JobType(name="noop", label="Another noop"))

        @hookimpl
        def register_workers(self, register: Callable[[str, Any], None]) -> None:
            register("sleep", echo)

    pm.register(Impostor(), name="impostor")
    registry = load_registry(pm)
    errors = [item.error for item in registry.failures if item.name == "impostor"]
    assert errors == [
        "job type 'noop' is already registered by plugin 'builtin'; the one from 'impostor' is ignored",
        "a worker for job type 'sleep' is already registered by plugin 'builtin'; "
        "the one from 'impostor' is ignored",
    ]
    assert registry.job_types["noop"].label == "No operation"
    assert registry.workers["sleep"] is not echo


def test_invalid_registrations_are_reported(pm: pluggy.PluginManager) -> None:
    class Sloppy:
        @hookimpl
        def register_job_types(self, register: Callable[[Any], None]) -> None:
            register(JobType(name="Bad Name", label="x"))
            register({"name": "dict_type"})

        @hookimpl
        def register_workers(self, register: Callable[[str, Any], None]) -> None:
            register("not_callable", 42)
            register("orphan", echo)  # a worker for a type nobody declared is allowed

        @hookimpl
        def register_workflows(self, register: Callable[[Any], None]) -> None:
            register("/no/such/workflows.json")

    pm.register(Sloppy(), name="sloppy")
    registry = load_registry(pm)
    errors = [item.error for item in registry.failures if item.name == "sloppy"]
    assert len(errors) == 4
    assert "'Bad Name' is invalid" in errors[0]
    assert "takes one JobType" in errors[1]
    assert "'not_callable' is not callable" in errors[2]
    assert "'/no/such/workflows.json' does not exist" in errors[3]
    orphan = registry.job_types["orphan"]
    assert (orphan.name, orphan.label, orphan.plugin) == ("orphan", "orphan", "sloppy")
    assert registry.workers["orphan"] is echo


def test_the_default_registry_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    reset_registry()
    try:
        first = load_registry()
        assert load_registry() is first
        assert "noop" in first.workers
    finally:
        reset_registry()  # other tests may see installed plugins in the default registry


# -- entry points -----------------------------------------------------------------------------------------------
@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A sys.path entry holding a tiny distribution with three stepflow_tui entry points: one good, one
    whose module does not exist, one that implements a misspelt hook."""
    root = tmp_path / "site"
    dist_info = root / "sftest_plugins-1.2.3.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: sftest-plugins\nVersion: 1.2.3\n")
    (dist_info / "entry_points.txt").write_text(textwrap.dedent("""\
        [stepflow_tui]
        sftest_good = sftest_good_plugin
        sftest_broken = sftest_no_such_module
        sftest_misspelt = sftest_misspelt_plugin
        """))
    (root / "sftest_good_plugin.py").write_text(textwrap.dedent("""\
        from stepflow_tui import hookimpl
        from stepflow_tui.plugins import JobType

        @hookimpl
        def register_job_types(register):
            register(JobType(name="good", label="Good"))
        """))
    (root / "sftest_misspelt_plugin.py").write_text(textwrap.dedent("""\
        from stepflow_tui import hookimpl

        @hookimpl
        def register_job_typos(register):
            pass
        """))
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in ("sftest_good_plugin", "sftest_misspelt_plugin"):
        sys.modules.pop(name, None)


def test_a_broken_entry_point_is_a_load_failure_and_the_rest_load(site: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "sftest_good,sftest_broken,sftest_misspelt")
    pm = get_plugin_manager()
    registry = load_registry(pm)
    broken = failure(registry.failures, "sftest_broken")
    assert "cannot load entry point 'sftest_no_such_module' (sftest-plugins)" in broken
    assert "ModuleNotFoundError" in broken
    assert "register_job_typos" in failure(registry.failures, "sftest_misspelt")
    assert pm.get_plugin("sftest_misspelt") is None
    assert registry.job_types["good"].plugin == "sftest_good"
    good = next(info for info in registry.plugins if info.name == "sftest_good")
    assert good.version == "1.2.3"
    assert "noop" in registry.workers  # the built-ins always load


def test_load_plugins_env_selects_entry_points(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOAD_PLUGINS_ENV, " sftest_good , not_installed,builtin")
    registry = load_registry(get_plugin_manager())
    assert [info.name for info in registry.plugins] == ["builtin", "sftest_good"]
    assert [item.name for item in registry.failures] == ["not_installed"]
    assert LOAD_PLUGINS_ENV in registry.failures[0].error

    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    registry = load_registry(get_plugin_manager())
    assert [info.name for info in registry.plugins] == ["builtin"]
    assert registry.failures == []


def test_all_entry_points_load_when_the_env_is_unset(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
    registry = load_registry(get_plugin_manager())
    assert "good" in registry.job_types
    assert {"sftest_broken", "sftest_misspelt"} <= {item.name for item in registry.failures}


# -- job context ------------------------------------------------------------------------------------------------
def make_context(tmp_path: Path, **kwargs: Any) -> JobContext:
    raw = [
        {"id": "path", "type": "string", "value": "/data/a"},
        {"id": "count", "type": "number", "default": 3},
        {"id": "empty", "type": "string", "value": None, "default": "fallback"},
    ]
    return JobContext(job_id=12, job_type="echo", raw_parameters=raw, work_dir=tmp_path / "work",
                      logger=logging.getLogger("test"), **kwargs)


def test_context_parameters(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    assert ctx.parameters == {"path": "/data/a", "count": 3, "empty": "fallback"}
    assert ctx.param("count") == 3
    assert ctx.param("missing", "x") == "x"
    assert ctx.require("path") == "/data/a"
    with pytest.raises(ValueError, match="job 12 \\(echo\\): missing required parameter 'missing'"):
        ctx.require("missing")


def test_context_work_dir_is_created_on_demand(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    assert not (tmp_path / "work").exists()
    assert ctx.work_dir.is_dir()


def test_progress_is_clamped_and_rate_limited(tmp_path: Path) -> None:
    reports: list[int] = []
    ctx = make_context(tmp_path, progress_callback=reports.append)
    now = [100.0]
    ctx.clock = lambda: now[0]
    ctx.progress(-5)  # clamped to 0
    ctx.progress(10)  # too soon after the previous report: dropped
    now[0] += 0.5
    ctx.progress(20.7)
    ctx.progress(30)  # too soon: dropped
    ctx.progress(250)  # 100 always goes through
    ctx.progress(100)  # same as the last report: dropped
    assert reports == [0, 20, 100]


def test_cancellation(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    ctx.check_cancelled()
    assert not ctx.is_cancelled
    ctx.cancelled.set()
    assert ctx.is_cancelled
    with pytest.raises(JobCancelled):
        ctx.check_cancelled()
    with pytest.raises(JobCancelled):
        ctx.wait(3600)


@pytest.mark.parametrize("value, expected", [
    (None, JobResult()),
    (["/a", Path("/b")], JobResult(destination_paths=["/a", "/b"])),
    ({"destination_paths": ["/a"], "outputs": {"sha256": "ab", "size": 3, "ok": True, "names": ["x"]}},
     JobResult(["/a"], [{"id": "sha256", "type": "string", "value": "ab"},
                        {"id": "size", "type": "number", "value": 3},
                        {"id": "ok", "type": "boolean", "value": True},
                        {"id": "names", "type": "array_of_strings", "value": ["x"]}])),
    ({"outputs": [{"id": "n", "value": 1.5}]}, JobResult([], [{"id": "n", "type": "number", "value": 1.5}])),
    (JobResult(["/a"]), JobResult(["/a"])),
])
def test_normalize_result_accepts(value: Any, expected: JobResult) -> None:
    assert normalize_result(value) == expected


@pytest.mark.parametrize("value, message", [
    ("/a/single/path", "not a single path"),
    (42, "got int 42"),
    ({"destination": ["/a"]}, "unknown key(s) 'destination'"),
    ({"destination_paths": [1]}, "must contain path strings"),
    ({"outputs": "x"}, "'outputs' must be a dict"),
    ({"outputs": [{"value": 1}]}, "with 'id' and 'value'"),
])
def test_normalize_result_refuses_with_a_clear_message(value: Any, message: str) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        normalize_result(value)


# -- documentation ----------------------------------------------------------------------------------------------
def hookspec_functions() -> list[Any]:
    return [function for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(function, "stepflow_tui_spec")]


def test_every_hook_has_a_docstring_and_a_heading_in_the_docs() -> None:
    hooks = hookspec_functions()
    # issue 15 added the three workbench hooks
    assert {hook.__name__ for hook in hooks} == {"register_job_types", "register_workers", "register_workflows",
                                                 "register_output_renderers", "register_job_columns",
                                                 "register_commands"}
    headings = re.findall(r"^#+ +`?([a-z_]+)\(", DOCS.read_text(), flags=re.MULTILINE)
    for hook in hooks:
        assert (hook.__doc__ or "").strip(), f"hook {hook.__name__} has no docstring"
        assert hook.__name__ in headings, f"hook {hook.__name__} has no heading in docs/plugins.md"
