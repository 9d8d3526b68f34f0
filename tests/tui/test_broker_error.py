"""A broker that refuses the workbench for good (wrong password, missing vhost): the header says why, and `s`
does not start a workflow whose orders could not be sent."""

from __future__ import annotations

from stepflow_tui.backend.views import Update
from stepflow_tui.tui.widgets.header import StatusHeader

from .fakes import FakeBackend
from .helpers import make_app, settle

SIZE = (120, 36)
REASON = "access refused to amqp://stepflow:***@rabbit.example:5672/prod: check user, password and vhost"


async def test_a_refused_connection_shows_its_reason_and_start_is_refused():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        backend.connection_state = "error"
        backend.connection_reason = REASON  # type: ignore[attr-defined]
        backend.emit(Update(connection="error"))
        await settle(pilot)
        header = app.main_screen.query_one(StatusHeader)
        assert header.connection == "error" and header.reason == REASON
        assert "access refused" in str(header.render())
        await pilot.press("s")
        await settle(pilot)
        assert [n.message for n in app._notifications][-1].startswith("cannot start a workflow: access refused")
        assert not [call for call in backend.calls if call[0] == "start_workflow"]
        assert app.screen is app.main_screen  # no picker opened
