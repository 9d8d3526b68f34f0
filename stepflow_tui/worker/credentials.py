"""Credential references resolved by a worker, as Media Cloud AI's SDK resolves them.

An order never holds a secret: a parameter of type ``credential``, or any parameter with a ``store``, names
one (its ``value`` is the key). ``ENV``: the worker's environment variable of that name. ``BACKEND`` (and a
``credential`` without a store): the service's ``GET /api/credentials/{key}``, found through ``STEPFLOW_API``
(``http://host:port``) or the SDK's ``BACKEND_HOSTNAME`` (``http://host:port/api``), with the full API token
from ``STEPFLOW_API_TOKEN`` or ``BACKEND_PASSWORD``. Values are returned, never logged.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

TIMEOUT = 10.0


class CredentialUnavailable(RuntimeError):
    """A credential could not be resolved (the message names the key and why, never a value)."""


def is_reference(parameter: Mapping[str, Any]) -> bool:
    """Whether an order's parameter names a credential instead of holding a value."""
    return parameter.get("type") == "credential" or bool(parameter.get("store"))


def _http_get(url: str, token: str | None) -> bytes:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 (the operator's API URL)
        return response.read()


def credentials_url(key: str, env: Mapping[str, str]) -> str:
    """Where the service serves credential ``key`` (CredentialUnavailable when no API is configured)."""
    quoted = urllib.parse.quote(key, safe="")
    if env.get("STEPFLOW_API"):
        return f"{env['STEPFLOW_API'].rstrip('/')}/api/credentials/{quoted}"
    if env.get("BACKEND_HOSTNAME"):
        return f"{env['BACKEND_HOSTNAME'].rstrip('/')}/credentials/{quoted}"
    raise CredentialUnavailable(f"credential {key!r} is in the BACKEND store, but neither STEPFLOW_API nor "
                                "BACKEND_HOSTNAME says where the service is")


def resolve(parameter: Mapping[str, Any], env: Mapping[str, str] | None = None,
            get: Callable[[str, str | None], bytes] = _http_get) -> str:
    """The secret a credential reference names."""
    env = os.environ if env is None else env
    key = parameter.get("value", parameter.get("default"))
    if not isinstance(key, str) or not key:
        raise CredentialUnavailable(f"parameter {parameter.get('id')!r} names no credential")
    store = str(parameter.get("store") or "BACKEND").upper()
    if store == "ENV":
        if key not in env:
            raise CredentialUnavailable(f"credential {key!r} (store ENV) is not set in the worker's environment")
        return env[key]
    if store != "BACKEND":
        raise CredentialUnavailable(f"credential {key!r}: store {store!r} is not supported (BACKEND or ENV)")
    url = credentials_url(key, env)
    try:
        body = json.loads(get(url, env.get("STEPFLOW_API_TOKEN") or env.get("BACKEND_PASSWORD")))
        value = body["data"]["value"]
    except urllib.error.HTTPError as exc:
        raise CredentialUnavailable(f"credential {key!r}: the service answered HTTP {exc.code}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CredentialUnavailable(f"credential {key!r}: cannot fetch it ({type(exc).__name__})") from None
    if not isinstance(value, str):
        raise CredentialUnavailable(f"credential {key!r}: the service's answer holds no value")
    return value
