"""What StepFlow's API keeps that the state does not: definitions added through ``POST /api/step_flow/definitions``
(``<state>.definitions.json``) and each workflow's ``reference`` (``<state>.references.json``), both beside the
state file, written atomically, read when the service starts."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from stepflow_tui.core.definitions import DefinitionError, WorkflowDefinition, definition_from_dict
from stepflow_tui.store.storage import atomic_write

log = logging.getLogger("stepflow_tui.service")
POSTED_SOURCE = "POST /api/step_flow/definitions"


def beside(state_path: Path, suffix: str) -> Path:
    """``<state><suffix>``, in the state's folder."""
    return state_path.with_name(state_path.name + suffix)


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:  # the service still starts; the operator sees why in the log
        log.error("%s cannot be read (%s): ignored", path, exc)
        return default


def _write(path: Path | None, data: Any) -> None:
    if path is not None:
        atomic_write(path, json.dumps(data, indent=1, ensure_ascii=False).encode("utf-8"))


class StepFlowFiles:
    """Posted definitions and workflow references, kept across restarts (thread-safe); only in memory
    without a state path (a backend without a state file, in tests)."""

    def __init__(self, state_path: Path | None) -> None:
        self.definitions_path = beside(state_path, ".definitions.json") if state_path else None
        self.references_path = beside(state_path, ".references.json") if state_path else None
        self._lock = threading.Lock()
        self._posted: dict[str, dict[str, Any]] = {}
        self._references: dict[int, str] = {}

    def load(self) -> list[WorkflowDefinition]:
        """Read both files; return the posted definitions that are still valid (others are logged and left)."""
        found: list[WorkflowDefinition] = []
        if self.definitions_path is None or self.references_path is None:
            return found
        for raw in _read_json(self.definitions_path, {"workflows": []}).get("workflows", []):
            try:
                definition = definition_from_dict(raw, str(self.definitions_path))
            except DefinitionError as exc:
                log.error("a posted definition is no longer valid, ignored: %s", exc)
                continue
            self._posted[definition.identifier] = definition.raw
            found.append(definition)
        references = _read_json(self.references_path, {})
        self._references = {int(k): v for k, v in references.items() if k.isdigit() and isinstance(v, str)}
        return found

    def add_definition(self, raw: dict[str, Any]) -> WorkflowDefinition:
        """Validate ``raw`` (raises `DefinitionError`) and keep it, replacing one of the same identifier."""
        definition = definition_from_dict(raw, POSTED_SOURCE)
        with self._lock:
            self._posted[definition.identifier] = definition.raw
            _write(self.definitions_path, {"workflows": list(self._posted.values())})
        return definition

    def reference(self, workflow_id: int) -> str | None:
        """The reference a workflow was launched with."""
        return self._references.get(workflow_id)

    def set_reference(self, workflow_id: int, reference: str | None) -> None:
        """Remember (or, with None, forget) a workflow's reference."""
        with self._lock:
            if reference is None and workflow_id not in self._references:
                return
            if reference is None:
                del self._references[workflow_id]
            else:
                self._references[workflow_id] = reference
            _write(self.references_path, {str(k): v for k, v in self._references.items()})
