"""The backend as a service: an HTTP API (aiohttp) around a `Backend` — resources, commands, an event stream,
the endpoints Media Cloud AI workers call — and the credentials they fetch. See docs/service.md.

    app = create_app(backend, token=..., read_only_token=...)     # an aiohttp Application
    run_service(BackendConfig(...), listen="127.0.0.1:4000")      # `stepflow backend`: serve until SIGTERM
"""

from .app import DEFAULT_LISTEN, ServiceError, ServiceThread, create_app, parse_listen, run_service
from .credentials import CredentialError, CredentialStore

__all__ = ["DEFAULT_LISTEN", "CredentialError", "CredentialStore", "ServiceError", "ServiceThread", "create_app",
           "parse_listen", "run_service"]
