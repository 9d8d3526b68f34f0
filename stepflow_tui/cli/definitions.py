"""Commands on what is installed and defined: validate (workflow definitions), plugins."""

from __future__ import annotations

import argparse
import json
from typing import Any

from stepflow_tui.cli.options import EXIT_OK, VERBOSE, WORKFLOWS, Commands, UsageError
from stepflow_tui.cli.session import load_all_definitions, load_registry


def register(commands: Commands) -> None:
    """Add this group's commands."""
    p = commands.add("validate", cmd_validate, "check a workflows.json (default: --workflows, ./workflows.json, "
                                               "plugins')", uses=(WORKFLOWS, VERBOSE))
    p.add_argument("file", nargs="?", help="the file to check")

    p = commands.add("plugins", cmd_plugins, "installed plugins, their job types and workers, and load failures",
                     uses=(VERBOSE,))
    p.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a definitions file (or every definition this command line sees) and list what it defines."""
    from stepflow_tui.core.definitions import DefinitionError, load_definitions

    if args.file:
        try:
            definitions = {d.identifier: d for d in load_definitions(args.file)}
        except DefinitionError as exc:
            raise UsageError(str(exc)) from None
        source = args.file
    else:
        definitions = load_all_definitions(args.workflows, load_registry())
        source = "definitions"
    print(f"{source}: {len(definitions)} valid workflow definition(s)")
    for identifier in sorted(definitions):
        definition = definitions[identifier]
        params = ", ".join(f"{p.id}{'*' if p.required else ''}" for p in definition.start_parameters)
        print(f"  {identifier} v{definition.version}: {definition.label} — {len(definition.steps)} steps"
              f"{f'; start parameters: {params}' if params else ''}  [{definition.source}]")
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    """List the installed plugins, their job types (with or without a worker here) and load failures."""
    registry = load_registry()
    if args.json:
        print(json.dumps({
            "plugins": [vars(p) if not hasattr(p, "__dataclass_fields__") else _asdict(p) for p in registry.plugins],
            "job_types": {n: _asdict(t) for n, t in registry.job_types.items()},
            "workers": sorted(registry.workers),
            "failures": [_asdict(f) for f in registry.failures],
        }, indent=2, default=str))
        return EXIT_OK
    print("plugins:")
    for plugin in registry.plugins:
        print(f"  {plugin.name} {plugin.version or ''}".rstrip() + f"  hooks: {', '.join(plugin.hooks) or '-'}")
    print("job types:")
    for name in sorted(registry.job_types):
        job_type = registry.job_types[name]
        worker = "worker" if name in registry.workers else "no worker here"
        print(f"  {name:<18} {job_type.label}  [{job_type.plugin}; {worker}]")
    if registry.failures:
        print("load failures:")
        for failure in registry.failures:
            print(f"  ✘ {failure.name}: {failure.error}")
    return EXIT_OK


def _asdict(obj: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) else obj
