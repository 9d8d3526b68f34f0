"""The log panel and the logging handler that feeds it from any thread."""

from __future__ import annotations

import logging

from rich.text import Text
from textual.message import Message
from textual.widgets import RichLog

LEVEL_STYLES = {"DEBUG": "dim", "INFO": "", "WARNING": "yellow", "ERROR": "bold red", "CRITICAL": "bold red"}


class LogPanel(RichLog):
    """The last log records of the process (``l`` shows or hides it)."""

    class Record(Message):
        """A formatted log record, posted by `PanelLogHandler` from whatever thread logged it."""

        def __init__(self, level: str, text: str) -> None:
            super().__init__()
            self.level = level
            self.text = text

    def on_log_panel_record(self, message: LogPanel.Record) -> None:
        self.write(Text(message.text, style=LEVEL_STYLES.get(message.level, "")))


class PanelLogHandler(logging.Handler):
    """Sends each record to a `LogPanel` with ``post_message`` (thread-safe; never blocks the logger)."""

    def __init__(self, panel: LogPanel, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.panel = panel
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.panel.post_message(LogPanel.Record(record.levelname, self.format(record)))
        except Exception:  # logging must never raise into the code that logged
            self.handleError(record)
