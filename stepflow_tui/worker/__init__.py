"""Workers: what runs jobs, in-process (embedded broker) or headless (``stepflow worker``).

``Worker`` (`stepflow_tui.worker.runner`) is a facade over the connection loop (`loop`), the execution pool
(`pool`) and the outbox of results (`outbox`); ``run_headless`` (`headless`) runs one until a signal.
`context` is what an implementation receives; plugins get it from the package top (`stepflow_tui.api`).
This package exports nothing itself: importing the plugin API must not load the broker.
"""
