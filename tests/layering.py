"""The layering contract of stepflow_tui (DESIGN.md "Layers"), checked on the source: which package may
import which. `check(root)` returns one line per forbidden import; tests/test_layering.py runs it on the real
tree and on a tree with a planted violation, so the check is known to fail when it should."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

#: Third-party libraries that belong to one layer only.
IO_LIBRARIES = ("pika", "textual", "tinydb", "aiohttp", "rich", "http", "urllib.request", "socket")


@dataclass(frozen=True)
class Rule:
    """Modules under ``package`` must not import anything starting with one of ``forbidden``."""

    package: str
    forbidden: tuple[str, ...]
    why: str
    #: When set, the only ``stepflow_tui`` modules allowed (exact names, or ``name.*`` for a whole package).
    only: tuple[str, ...] = ()

    def breaks(self, name: str) -> str | None:
        """The forbidden prefix (or allow-list) ``name`` breaks, or None."""
        bad = next((f for f in self.forbidden if _matches(name, f)), None)
        if bad is None and self.only and _matches(name, "stepflow_tui") and not any(
                name == allowed or (allowed.endswith(".*") and _matches(name, allowed[:-2]))
                for allowed in self.only):
            bad = "outside " + ", ".join(self.only)
        return bad


RULES: tuple[Rule, ...] = (
    Rule("stepflow_tui.core", IO_LIBRARIES + (
        "stepflow_tui.broker", "stepflow_tui.store", "stepflow_tui.backend", "stepflow_tui.tui",
        "stepflow_tui.worker", "stepflow_tui.cli", "stepflow_tui.service", "stepflow_tui.ops",
    ), "core is pure logic: no I/O library, no outer layer"),
    Rule("stepflow_tui.tui", (
        "stepflow_tui.broker", "stepflow_tui.store", "stepflow_tui.core", "stepflow_tui.worker",
        "stepflow_tui.ops", "stepflow_tui.cli", "stepflow_tui.service", "pika", "tinydb",
    ), "the workbench talks to the backend's interface only",
         only=("stepflow_tui", "stepflow_tui.api", "stepflow_tui.tui.*", "stepflow_tui.backend",
               "stepflow_tui.backend.views", "stepflow_tui.backend.interface")),
    Rule("stepflow_tui.worker", (
        "textual", "tinydb", "stepflow_tui.backend", "stepflow_tui.store", "stepflow_tui.tui",
        "stepflow_tui.cli", "stepflow_tui.service",
    ), "a headless worker never loads the workbench, the backend or the state"),
    Rule("stepflow_tui.broker", (
        "textual", "tinydb", "stepflow_tui.backend", "stepflow_tui.store", "stepflow_tui.tui",
        "stepflow_tui.worker", "stepflow_tui.cli", "stepflow_tui.service",
    ), "the broker layer knows messages, not who sends them"),
    Rule("stepflow_tui.store", (
        "pika", "textual", "stepflow_tui.broker", "stepflow_tui.backend", "stepflow_tui.tui",
        "stepflow_tui.worker", "stepflow_tui.cli", "stepflow_tui.service",
    ), "the store persists state and nothing else"),
    Rule("stepflow_tui.backend", ("textual", "aiohttp", "stepflow_tui.tui", "stepflow_tui.cli",
                                  "stepflow_tui.service"),
         "the backend serves the workbench, the service and the CLI, never the reverse (its HTTP client, "
         "remote.py, needs no server library)"),
    Rule("stepflow_tui.service", ("textual", "stepflow_tui.tui", "stepflow_tui.cli"),
         "the service serves the backend over HTTP: no workbench, no command line"),
)


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """Every module ``path`` imports (absolute names; relative imports resolved), with line numbers. Imports
    under ``if TYPE_CHECKING:`` count too: a type-only dependency is still a dependency on that layer."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _is_module(root: Path, name: str) -> bool:
    """Whether ``name`` is a module (or package) of the tree at ``root``, or any name outside the project."""
    if not _matches(name, root.name):
        return True
    relative = Path(*name.split("."))
    base = root.parent / relative
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def check(root: Path) -> list[str]:
    """One line per forbidden import under ``root`` (the ``stepflow_tui`` package directory)."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(root, path)
        rules = [rule for rule in RULES if _matches(module, rule.package)]
        if not rules:
            continue
        reported: set[int] = set()
        for lineno, name in imports_of(path, module):
            if not _is_module(root, name):  # ``from package import Name``: the package line says it
                continue
            if lineno in reported:
                continue
            for rule in rules:
                if rule.breaks(name):
                    problems.append(f"{path.relative_to(root.parent)}:{lineno}: {module} imports {name} "
                                    f"({rule.why})")
                    reported.add(lineno)
                    break
    return sorted(set(problems))
