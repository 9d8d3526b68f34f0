"""Runs the ``async def`` pilot tests of this folder with asyncio (no async pytest plugin is installed); the
``tmux`` fixture of the tmux tests."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from .tmux_harness import tmux  # noqa: F401 - the fixture


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(pyfuncitem.obj(**arguments))
    return True
