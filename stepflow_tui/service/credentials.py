"""Credentials that workers fetch by key (Media Cloud AI's ``"store": "BACKEND"`` parameters): a JSON file
``<state>.credentials`` beside the state (never inside it), mode 0600, rewritten atomically. Values are never
logged or printed; `keys()` is what a listing shows.

The CLI (``stepflow credentials set KEY`` reading the value from standard input, ``list``, ``delete``) calls
`CredentialStore.set` / `keys` / `delete`."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .auth import write_secret_file

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")


class CredentialError(ValueError):
    """A bad key, or an unreadable credentials file (the message never holds a value)."""


@dataclass(frozen=True)
class Credential:
    id: int
    key: str
    value: str
    inserted_at: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "key": self.key, "value": self.value, "inserted_at": self.inserted_at}


def credentials_path(state_path: Path) -> Path:
    """``<state>.credentials``."""
    return state_path.with_name(state_path.name + ".credentials")


def read_value(stream: Any) -> str:
    """A credential value from ``stream`` (standard input, for ``stepflow credentials set KEY``): everything
    read, without the one trailing newline a shell or ``echo`` adds. Refuses an empty value."""
    value = stream.read()
    value = value[:-1] if value.endswith("\n") else value
    value = value[:-1] if value.endswith("\r") else value
    if not value:
        raise CredentialError("no value on standard input (pipe it in: stepflow credentials set KEY < file)")
    return value


def check_key(key: str) -> str:
    """``key`` if it is a valid credential key (letters, digits, ``_ . -``), else `CredentialError`."""
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise CredentialError(f"invalid credential key {str(key)[:40]!r}: use letters, digits, _ . - (1-200)")
    return key


class CredentialStore:
    """The credentials file of one state; safe to use from several threads of one process."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @classmethod
    def beside(cls, state_path: Path) -> CredentialStore:
        """The store of the state at ``state_path``."""
        return cls(credentials_path(Path(state_path)))

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise CredentialError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError:
            raise CredentialError(f"{self.path} is not valid JSON: fix or delete it") from None
        items = data.get("credentials") if isinstance(data, dict) else None
        if not isinstance(items, dict):
            raise CredentialError(f"{self.path} has no 'credentials' object: fix or delete it")
        return items

    def _save(self, items: dict[str, dict[str, Any]]) -> None:
        write_secret_file(self.path, json.dumps({"credentials": items}, indent=2, sort_keys=True) + "\n")

    def get(self, key: str) -> Credential | None:
        """The credential named ``key``, or None."""
        check_key(key)
        with self._lock:
            item = self._load().get(key)
        if item is None:
            return None
        return Credential(id=int(item["id"]), key=key, value=str(item["value"]), inserted_at=item["inserted_at"])

    def set(self, key: str, value: str) -> Credential:
        """Create or replace ``key`` (a replaced key keeps its id)."""
        check_key(key)
        if not isinstance(value, str):
            raise CredentialError("a credential value must be a string")
        with self._lock:
            items = self._load()
            old = items.get(key)
            next_id = max((int(i["id"]) for i in items.values()), default=0) + 1
            item = {"id": int(old["id"]) if old else next_id, "value": value,
                    "inserted_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
            items[key] = item
            self._save(items)
        return Credential(id=item["id"], key=key, value=value, inserted_at=item["inserted_at"])

    def keys(self) -> list[str]:
        """The keys, sorted (never the values)."""
        with self._lock:
            return sorted(self._load())

    def delete(self, key: str) -> bool:
        """Remove ``key``; False if there was none."""
        check_key(key)
        with self._lock:
            items = self._load()
            if key not in items:
                return False
            del items[key]
            self._save(items)
        return True
