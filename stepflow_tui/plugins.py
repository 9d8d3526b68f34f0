"""The plugin manager and the registry of job types, worker implementations and workflow sources.

    pm = get_plugin_manager()          # entry points of group "stepflow_tui" + the built-in default plugins
    registry = load_registry()         # cached default registry; load_registry(pm) builds a fresh one
    registry.job_types["checksum"]     # JobType
    registry.workers["checksum"]       # WorkerImplementation: callable(JobContext)
    registry.workflow_sources          # [(plugin name, Path | parsed JSON)]
    registry.plugins, registry.failures

Plugins are loaded one entry point at a time so that one broken plugin is reported as a `LoadFailure` (shown by
``stepflow plugins`` and the TUI) while the others still load. ``STEPFLOW_LOAD_PLUGINS`` limits which entry
points load (unset: all; empty: none); the built-in plugins always load.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

import stepflow_tui
from stepflow_tui import hookspecs

if TYPE_CHECKING:
    from stepflow_tui.worker.context import WorkerImplementation

__all__ = [
    "ENTRY_POINT_GROUP",
    "LOAD_PLUGINS_ENV",
    "JobType",
    "LoadFailure",
    "PluginInfo",
    "Registry",
    "failures_text",
    "get_plugin_manager",
    "load_registry",
    "normalize_job_type_name",
    "reset_registry",
]

PROJECT_NAME = "stepflow_tui"
ENTRY_POINT_GROUP = "stepflow_tui"
LOAD_PLUGINS_ENV = "STEPFLOW_LOAD_PLUGINS"
#: Name under which the built-in job types (noop, sleep, fail) are registered; reserved.
BUILTIN_PLUGIN_NAME = "builtin"

_JOB_TYPE_NAME = re.compile(r"^[a-z0-9_]+$")


@dataclass
class JobType:
    """A kind of job: its queue is ``job_<name>``; ``parameters`` is a JSON schema of its order parameters."""

    name: str
    label: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    plugin: str = ""  # filled by the registry: the plugin that registered it

    @property
    def queue(self) -> str:
        """The job queue's name (and routing key)."""
        return f"job_{self.name}"


@dataclass(frozen=True)
class WorkbenchCommand:
    """A command a plugin adds to the workbench's palette (`hookspecs.register_commands`)."""

    name: str
    help: str
    run: Callable[[dict[str, int | None]], str | None]
    plugin: str = ""  # filled by the registry


@dataclass
class PluginInfo:
    """A loaded plugin, as ``stepflow plugins`` shows it."""

    name: str
    version: str
    hooks: list[str] = field(default_factory=list)
    job_types: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)


@dataclass
class LoadFailure:
    """A plugin (or a part of one) that could not be loaded; ``error`` is one line naming what went wrong."""

    name: str
    error: str


@dataclass
class Registry:
    """Everything the installed plugins registered, validated."""

    job_types: dict[str, JobType] = field(default_factory=dict)
    workers: dict[str, WorkerImplementation] = field(default_factory=dict)
    workflow_sources: list[tuple[str, str | Path | dict[str, Any] | list[Any]]] = field(default_factory=list)
    plugins: list[PluginInfo] = field(default_factory=list)
    failures: list[LoadFailure] = field(default_factory=list)
    #: What plugins add to the workbench: a renderer of outputs per job type, job line columns, commands.
    output_renderers: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)
    job_columns: dict[str, Callable[[Any], str | None]] = field(default_factory=dict)
    commands: list[WorkbenchCommand] = field(default_factory=list)

    def job_type(self, name: str) -> JobType:
        """The job type ``name`` (``job_`` prefix allowed); `KeyError` with a helpful message if unknown."""
        key = normalize_job_type_name(name)
        try:
            return self.job_types[key]
        except KeyError:
            known = ", ".join(sorted(self.job_types)) or "none"
            raise KeyError(f"unknown job type {name!r} (installed: {known})") from None


class StepflowPluginManager(pluggy.PluginManager):
    """A pluggy PluginManager that also remembers entry points that failed and plugin versions."""

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.load_failures: list[LoadFailure] = []
        self.plugin_versions: dict[str, str] = {}


def normalize_job_type_name(name: str) -> str:
    """``job_transfer`` -> ``transfer`` (a StepFlow step name that starts with ``job_`` is the same type)."""
    return name.removeprefix("job_")


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    message = text[0] if text else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _selected_entry_points() -> set[str] | None:
    """Entry-point names allowed by ``STEPFLOW_LOAD_PLUGINS``; None means all."""
    raw = os.environ.get(LOAD_PLUGINS_ENV)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _default_plugin_modules() -> list[Any]:
    from stepflow_tui.default_plugins import builtin

    return [builtin]


def get_plugin_manager() -> StepflowPluginManager:
    """A plugin manager with the hookspecs, every allowed entry point of group ``stepflow_tui`` and the
    built-in plugins. Entry points that fail to import or register are recorded in ``pm.load_failures``."""
    pm = StepflowPluginManager()
    pm.add_hookspecs(hookspecs)
    selected = _selected_entry_points()
    seen: dict[str, str] = {}  # entry-point name -> distribution, to name both sides of a clash
    for entry_point in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        name = entry_point.name
        dist = entry_point.dist.name if entry_point.dist is not None else "?"
        if selected is not None and name not in selected:
            continue
        if name == BUILTIN_PLUGIN_NAME:
            pm.load_failures.append(LoadFailure(name, f"entry point {name!r} of {dist} uses a reserved name"))
            continue
        if name in seen:
            pm.load_failures.append(LoadFailure(
                name, f"entry point {name!r} is provided by both {seen[name]} and {dist}; {dist}'s is ignored"))
            continue
        seen[name] = dist
        try:
            plugin = entry_point.load()
            pm.register(plugin, name=name)
        except Exception as error:  # noqa: BLE001 - any import error of a third-party plugin must not stop us
            if pm.get_plugin(name) is not None:  # older pluggy may leave a half-registered plugin behind
                pm.unregister(name=name)
            pm.load_failures.append(LoadFailure(
                name, f"cannot load entry point {entry_point.value!r} ({dist}): {_one_line(error)}"))
            continue
        try:
            # check each plugin on its own so a misspelt hook blames the right plugin and drops only it.
            pm.check_pending()
        except pluggy.PluginValidationError as error:
            pm.unregister(name=name)
            pm.load_failures.append(LoadFailure(name, _one_line(error)))
            continue
        pm.plugin_versions[name] = entry_point.dist.version if entry_point.dist is not None else ""
    if selected:
        for name in sorted(selected - seen.keys() - {BUILTIN_PLUGIN_NAME}):  # built-ins load anyway
            pm.load_failures.append(LoadFailure(
                name, f"{LOAD_PLUGINS_ENV} names {name!r} but no installed plugin has that entry point"))
    # Built-ins go through the very same pm.register: they prove the public hooks are enough.
    for module in _default_plugin_modules():
        pm.register(module, name=BUILTIN_PLUGIN_NAME)
        pm.plugin_versions[BUILTIN_PLUGIN_NAME] = stepflow_tui.__version__
    pm.check_pending()
    return pm


class _Builder:
    """Calls each plugin's hook implementations one plugin at a time and validates what they register."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.registry = Registry(failures=list(getattr(pm, "load_failures", [])))
        self.job_types_by_plugin: dict[str, list[str]] = {}
        self.workers_by_plugin: dict[str, list[str]] = {}
        self.worker_owner: dict[str, str] = {}

    def plugin_order(self) -> list[str]:
        # Built-ins first, then plugins in registration order: "first one wins" on duplicate names.
        names = [name for name, plugin in self.pm.list_name_plugin() if plugin is not None]
        return sorted(names, key=lambda name: 0 if name == BUILTIN_PLUGIN_NAME else 1)

    def call_hook(self, hook_name: str, accept: Callable[[str, tuple[Any, ...]], None]) -> None:
        """Call ``hook_name`` of each plugin with a collecting ``register``; commit the collected items only if
        the implementation returned normally, so a hook that raises contributes nothing (and is reported)."""
        hook = getattr(self.pm.hook, hook_name)
        impls = {impl.plugin_name: impl for impl in hook.get_hookimpls()
                 if not (impl.hookwrapper or impl.wrapper)}
        for plugin_name in self.plugin_order():
            impl = impls.get(plugin_name)
            if impl is None:
                continue
            collected: list[tuple[Any, ...]] = []

            def register(*args: Any, _collected: list[tuple[Any, ...]] = collected) -> None:
                _collected.append(args)

            try:
                impl.function(**({"register": register} if "register" in impl.argnames else {}))
            except Exception as error:  # noqa: BLE001 - a broken plugin must not stop the others
                self.fail(plugin_name, f"hook {hook_name} raised {_one_line(error)}")
                continue
            for args in collected:
                accept(plugin_name, args)

    def fail(self, plugin_name: str, error: str) -> None:
        self.registry.failures.append(LoadFailure(plugin_name, error))

    def valid_name(self, plugin_name: str, name: Any, what: str) -> str | None:
        if not isinstance(name, str):
            self.fail(plugin_name, f"{what} name must be a string, got {type(name).__name__} {name!r}")
            return None
        key = normalize_job_type_name(name)
        if not _JOB_TYPE_NAME.match(key):
            self.fail(plugin_name, f"{what} name {name!r} is invalid: use lowercase letters, digits and _")
            return None
        return key

    def accept_job_type(self, plugin_name: str, args: tuple[Any, ...]) -> None:
        if len(args) != 1 or not isinstance(args[0], JobType):
            self.fail(plugin_name, f"register_job_types: register() takes one JobType, got {args!r:.120}")
            return
        given: JobType = args[0]
        key = self.valid_name(plugin_name, given.name, "job type")
        if key is None:
            return
        if not isinstance(given.parameters, dict):
            self.fail(plugin_name, f"job type {key!r}: parameters must be a JSON-schema dict")
            return
        existing = self.registry.job_types.get(key)
        if existing is not None:
            self.fail(plugin_name, f"job type {key!r} is already registered by plugin {existing.plugin!r}; "
                                   f"the one from {plugin_name!r} is ignored")
            return
        job_type = JobType(name=key, label=given.label or key, description=given.description,
                           parameters=dict(given.parameters), version=given.version or self.version(plugin_name),
                           plugin=plugin_name)
        self.registry.job_types[key] = job_type
        self.job_types_by_plugin.setdefault(plugin_name, []).append(key)

    def accept_worker(self, plugin_name: str, args: tuple[Any, ...]) -> None:
        if len(args) != 2:
            self.fail(plugin_name, f"register_workers: register() takes (job_type, implementation), "
                                   f"got {len(args)} argument(s)")
            return
        key = self.valid_name(plugin_name, args[0], "worker job type")
        if key is None:
            return
        implementation = args[1]
        if not callable(implementation):
            self.fail(plugin_name, f"worker for {key!r} is not callable: {implementation!r:.80}")
            return
        if key in self.registry.workers:
            self.fail(plugin_name, f"a worker for job type {key!r} is already registered by plugin "
                                   f"{self.worker_owner[key]!r}; the one from {plugin_name!r} is ignored")
            return
        if key not in self.registry.job_types:
            # Allowed: a worker for a type nobody declared gets a minimal JobType so it can be listed and run.
            self.registry.job_types[key] = JobType(name=key, label=key, version=self.version(plugin_name),
                                                   plugin=plugin_name)
            self.job_types_by_plugin.setdefault(plugin_name, []).append(key)
        self.registry.workers[key] = implementation
        self.worker_owner[key] = plugin_name
        self.workers_by_plugin.setdefault(plugin_name, []).append(key)

    def accept_workflows(self, plugin_name: str, args: tuple[Any, ...]) -> None:
        if len(args) != 1:
            self.fail(plugin_name, f"register_workflows: register() takes one argument, got {len(args)}")
            return
        source = args[0]
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            if not path.is_file():
                self.fail(plugin_name, f"register_workflows: file {str(path)!r} does not exist")
                return
            self.registry.workflow_sources.append((plugin_name, path))
        elif isinstance(source, dict | list):
            self.registry.workflow_sources.append((plugin_name, source))
        else:
            self.fail(plugin_name, f"register_workflows: expected a path or parsed JSON (dict or list), "
                                   f"got {type(source).__name__}")

    def accept_named_callable(self, hook: str, into: dict[str, Any], plugin_name: str,
                              args: tuple[Any, ...]) -> None:
        """``register(name, function)`` of `register_output_renderers` and `register_job_columns`."""
        if len(args) != 2 or not isinstance(args[0], str) or not args[0] or not callable(args[1]):
            self.fail(plugin_name, f"{hook}: register() takes (name, function), got {args!r:.120}")
            return
        if args[0] in into:
            self.fail(plugin_name, f"{hook}: {args[0]!r} is already registered; the one from {plugin_name!r} "
                                   "is ignored")
            return
        into[args[0]] = args[1]

    def accept_command(self, plugin_name: str, args: tuple[Any, ...]) -> None:
        if len(args) != 1 or not isinstance(args[0], WorkbenchCommand) or not callable(args[0].run):
            self.fail(plugin_name, f"register_commands: register() takes one WorkbenchCommand, got {args!r:.120}")
            return
        if any(command.name == args[0].name for command in self.registry.commands):
            self.fail(plugin_name, f"register_commands: a command {args[0].name!r} is already registered; the "
                                   f"one from {plugin_name!r} is ignored")
            return
        self.registry.commands.append(dataclasses.replace(args[0], plugin=plugin_name))

    def version(self, plugin_name: str) -> str:
        versions = getattr(self.pm, "plugin_versions", {})
        if plugin_name in versions:
            return versions[plugin_name]
        return str(getattr(self.pm.get_plugin(plugin_name), "__version__", ""))

    def build(self) -> Registry:
        self.call_hook("register_job_types", self.accept_job_type)
        self.call_hook("register_workers", self.accept_worker)
        self.call_hook("register_workflows", self.accept_workflows)
        self.call_hook("register_output_renderers", functools.partial(
            self.accept_named_callable, "register_output_renderers", self.registry.output_renderers))
        self.call_hook("register_job_columns", functools.partial(
            self.accept_named_callable, "register_job_columns", self.registry.job_columns))
        self.call_hook("register_commands", self.accept_command)
        for plugin_name in self.plugin_order():
            plugin = self.pm.get_plugin(plugin_name)
            hooks = sorted(caller.name for caller in (self.pm.get_hookcallers(plugin) or []))
            self.registry.plugins.append(PluginInfo(
                name=plugin_name,
                version=self.version(plugin_name),
                hooks=hooks,
                job_types=self.job_types_by_plugin.get(plugin_name, []),
                workers=self.workers_by_plugin.get(plugin_name, []),
            ))
        return self.registry


_default_lock = threading.Lock()


@functools.cache
def _default_registry() -> Registry:
    return _Builder(get_plugin_manager()).build()


def load_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    """The registry of everything the plugins register.

    Without ``pm``: the default registry (installed entry points + built-ins), built once per process and
    cached. With ``pm``: a fresh registry from that manager (tests register their own plugins on it).
    """
    if pm is not None:
        return _Builder(pm).build()
    with _default_lock:  # functools.cache alone could build it twice when two threads ask at once
        return _default_registry()


def reset_registry() -> None:
    """Forget the cached default registry (after installing a plugin or changing STEPFLOW_LOAD_PLUGINS)."""
    with _default_lock:
        _default_registry.cache_clear()


def failures_text(failures: Iterable[LoadFailure]) -> list[str]:
    """One line per failure, ``plugin: error``, for logs and the CLI."""
    return [f"{failure.name}: {failure.error}" for failure in failures]
