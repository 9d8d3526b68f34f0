"""Built-in plugins, registered by `stepflow_tui.plugins.get_plugin_manager` through the same hooks as any
installed plugin (proof that the public hooks are enough).

- `builtin`: the demo and benchmark job types ``noop``, ``sleep`` and ``fail``.
"""
