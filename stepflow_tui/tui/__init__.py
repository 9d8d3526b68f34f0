"""The Textual workbench: the only package of stepflow_tui that imports textual.

Entry point: `run_workbench(backend, read_only)` (see `app.py`); the app talks to anything that fits the
`stepflow_tui.backend.WorkbenchBackend` protocol (the real `Backend`, or the test fake). It imports the backend's
interface (`stepflow_tui.backend`) and nothing deeper: tests/tui/test_layering.py checks it.
"""
