"""The Textual workbench: the only package of stepflow_tui that imports textual.

Entry point: `run_workbench(backend, read_only)` (see `app.py`); the app talks to anything that fits the
`WorkbenchBackend` protocol of `source.py` (the real `Backend`, or the test fake).
"""
