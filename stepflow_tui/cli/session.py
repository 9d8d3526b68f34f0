"""Opening a backend session for a command — the one place that chooses between attached and embedded: a
`RemoteBackend` on the `stepflow backend` service running for the same --db (or at --api / STEPFLOW_API), else
plugins' registry, workflow definitions (plugins' and the user's) and a started `Backend` on the state file;
stopped when the command ends (an attached session only stops following the service)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stepflow_tui.cli.options import UsageError

if TYPE_CHECKING:
    from stepflow_tui.backend.backend import Backend, BackendConfig
    from stepflow_tui.backend.remote import RemoteBackend

    SessionBackend = Backend | RemoteBackend

log = logging.getLogger("stepflow_tui.cli")


def load_registry() -> Any:
    """The installed plugins' registry (job types, workers, shipped definitions, load failures)."""
    from stepflow_tui.plugins import load_registry as load

    return load()


def load_all_definitions(workflows: str | None, registry: Any) -> dict[str, Any]:
    """Plugin-shipped definitions first, then the user's file on top (same identifier: the file wins).
    A broken user file is an error (exit 2); a broken plugin definition is a warning."""
    from stepflow_tui.core.definitions import (
        DefinitionError,
        load_definitions,
        merge_definitions,
        parse_definitions,
    )

    sources = []
    for plugin_name, source in getattr(registry, "workflow_sources", []):
        try:
            if isinstance(source, (str, Path)):
                sources.append(load_definitions(source))
            else:
                sources.append(parse_definitions(source, f"plugin {plugin_name}"))
        except DefinitionError as exc:
            log.warning("plugin %s ships invalid definitions: %s", plugin_name, exc)
    path = Path(workflows) if workflows else Path("workflows.json")
    if workflows or path.exists():
        if not path.exists():
            raise UsageError(f"{path}: no such workflows file (--workflows / STEPFLOW_WORKFLOWS)")
        try:
            sources.append(load_definitions(path))
        except DefinitionError as exc:
            raise UsageError(str(exc)) from None
    return merge_definitions(sources)


@dataclass(frozen=True)
class Loaded:
    """What a backend session is opened with: the plugins' registry and every workflow definition."""

    registry: Any
    definitions: dict[str, Any]


def load(args: argparse.Namespace) -> Loaded:
    """The registry and the definitions of --workflows / STEPFLOW_WORKFLOWS on top of the plugins'."""
    registry = load_registry()
    return Loaded(registry, load_all_definitions(args.workflows, registry))


def backend_config(args: argparse.Namespace, loaded: Loaded, *, local_workers: bool | None = None,
                   concurrency: int = 4) -> BackendConfig:
    """The `BackendConfig` of --db, --broker, --queue-type and --read-only with the loaded definitions."""
    from stepflow_tui.backend.backend import BackendConfig

    return BackendConfig(broker_url=args.broker, db_path=args.db, definitions=loaded.definitions,
                         registry=loaded.registry, local_workers=local_workers,
                         local_concurrency=max(1, concurrency), read_only=args.read_only,
                         move_to_broker=getattr(args, "move_to_broker", False),
                         queue_type=args.queue_type)


def start_backend(args: argparse.Namespace, loaded: Loaded, *, local_workers: bool | None = None,
                  concurrency: int = 4, locked_hint: str = "") -> Backend:
    """A started `Backend` on --db and --broker; a state file in use or unreadable is a `UsageError`."""
    from stepflow_tui.backend.backend import Backend
    from stepflow_tui.broker.url import InvalidBrokerURL, parse_broker_url
    from stepflow_tui.store import StoreError, StoreLocked

    try:
        parse_broker_url(args.broker)  # before the state is opened: nothing is started that cannot be sent
    except InvalidBrokerURL as exc:
        raise UsageError(str(exc)) from None
    backend = Backend(backend_config(args, loaded, local_workers=local_workers, concurrency=concurrency))
    try:
        backend.start()
    except StoreLocked as exc:
        raise UsageError(f"{exc}{locked_hint}") from None
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    return backend


def attach(args: argparse.Namespace) -> RemoteBackend | None:
    """The running service to work through (--api / STEPFLOW_API, else the one recorded in --db's lock file),
    its health read; None when no service runs for --db. One named by --api that does not answer, or refuses
    the token, is a `UsageError`."""
    from stepflow_tui.backend.remote import RemoteBackend, RemoteCommandError, RemoteUnavailable, find_service

    found = find_service(args.db, args.api)
    if found is None:
        return None
    url, token = found
    try:
        remote = RemoteBackend(url, token)
        remote.start()
    except ValueError as exc:
        raise UsageError(f"--api: {exc}") from None
    except RemoteUnavailable:
        if not args.api:
            return None  # the service recorded in the lock file is stopping: open the state once it is free
        raise UsageError(f"no stepflow service answers at {url} (--api / STEPFLOW_API): start it with "
                         f"`stepflow backend`, or leave --api out to work embedded") from None
    except RemoteCommandError as exc:
        raise UsageError(f"the stepflow service at {url} refused this client: {exc} "
                         f"(give its token in STEPFLOW_API_TOKEN)") from None
    log.info("attached to %s", url)
    return remote


def is_attached(backend: object) -> bool:
    """True for a session that works through a service (the service owns the state and moves workflows)."""
    from stepflow_tui.backend.remote import RemoteBackend

    return isinstance(backend, RemoteBackend)


@contextmanager
def backend_session(args: argparse.Namespace, loaded: Loaded | None = None, *, local_workers: bool | None = None,
                    concurrency: int = 4, locked_hint: str = "",
                    attached: RemoteBackend | None = None) -> Iterator[SessionBackend]:
    """A started backend, stopped when the block ends, also on errors: attached to the service running for
    --db when there is one (`attach`, or ``attached`` when the caller already did), else embedded
    (definitions loaded unless given)."""
    backend = attached or attach(args)
    if backend is None:
        backend = start_backend(args, loaded or load(args), local_workers=local_workers, concurrency=concurrency,
                                locked_hint=locked_hint)
    elif local_workers:
        log.warning("attached to %s: the service runs the workers it was started with", backend.url)
    try:
        yield backend
    finally:
        backend.stop()


@contextmanager
def change_session(args: argparse.Namespace, change: Callable[[SessionBackend], Any], *,
                   local_workers: bool | None = False,
                   concurrency: int = 4) -> Iterator[tuple[SessionBackend, Any]]:
    """Open a session (attached, or owning the state), make one ``change(backend)`` (a future) and yield the
    backend with its result; stopped when the block ends. Refused in read-only mode; an `EngineError` (no such
    job, nothing to retry…, or refused by the service) is a `UsageError`."""
    from stepflow_tui.backend.remote import RemoteUnavailable
    from stepflow_tui.core.engine import EngineError

    if args.read_only:
        raise UsageError(f"read-only mode: {args.command} refused")
    hint = (f" (to {args.command} while it runs, use the workbench's keys: ? lists them; under `stepflow backend`"
            f" commands act at once)")
    with backend_session(args, local_workers=local_workers, concurrency=concurrency, locked_hint=hint) as backend:
        backend.wait_until_running(10.0)
        try:
            result = change(backend).result(timeout=30)
        except EngineError as exc:
            raise UsageError(str(exc)) from None
        except RemoteUnavailable as exc:
            raise UsageError(f"the service stopped answering: {exc}") from None
        yield backend, result


def make_change(args: argparse.Namespace, change: Callable[[SessionBackend], Any]) -> Any:
    """`change_session` for a change that needs nothing afterwards: its result, the backend already stopped."""
    with change_session(args, change) as (_, result):
        return result
