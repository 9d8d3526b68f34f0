"""The main screen's footer: Textual's, on two lines when its keys do not fit on one."""

from __future__ import annotations

import math

from textual import events
from textual.app import ComposeResult
from textual.widgets import Footer

PALETTE_WIDTH = 14  # "▏^p palette" docked on the right


class WorkbenchFooter(Footer):
    """At 80 columns a one-line footer was cut after "w": "? Help" and "q Quit" were not to be seen (and at
    120 once the queues panel's "R Redrive dead letters" joined in).

    When the keys need more than the footer's width it gets the ``-two-lines`` class: a two-line grid
    (``app.tcss``) with half the keys a line, without the palette key (ctrl+p is on the help screen).
    Textual's footer sets the grid's column count to the number of keys each time it composes (the keys change
    with the focused widget), so the fit is made again after each compose and on each resize."""

    _keys = 0
    _needed = 0

    def compose(self) -> ComposeResult:
        yield from super().compose()
        shown = [binding for (_, binding, _, _) in self.screen.active_bindings.values() if binding.show]
        self._keys = int(self.styles.grid_size_columns or 0)  # what Footer.compose set: one column a key
        # each key is drawn as " k Label "
        self._needed = PALETTE_WIDTH + sum(len(self.app.get_key_display(binding)) + len(binding.description) + 3
                                           for binding in shown)
        self._fit(self.size.width or self.app.size.width)

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width)

    def _fit(self, width: int) -> None:
        if not self._keys:
            return
        two_lines = self._needed > width
        self.set_class(two_lines, "-two-lines")
        self.styles.grid_size_columns = math.ceil(self._keys / 2) if two_lines else self._keys
