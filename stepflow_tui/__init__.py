"""stepflow-tui: a terminal workbench for running workflows of jobs on workers over RabbitMQ."""

import pluggy

__version__ = "0.1.0"

#: Decorator for plugin hook implementations: ``@stepflow_tui.hookimpl``.
hookimpl = pluggy.HookimplMarker("stepflow_tui")

__all__ = ["hookimpl", "__version__"]
