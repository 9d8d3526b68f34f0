"""`FastTree`: Textual's `Tree` with its private internals overridden for speed and garbage, in one place.

Every override here touches Textual internals (`_TreeLine`, `_build`, `_clear_line_cache`, ``node._label``,
``node._line``): tests/tui/test_tree_internals.py checks that each still gives what Textual's own gives, so that
a Textual upgrade that changes them fails there. Domain trees (`WorkflowTree`) subclass this and stay free of
private names.
"""

from __future__ import annotations

from typing import TypeVar

from rich.cells import cell_len
from rich.text import Text, TextType
from textual.geometry import Size
from textual.widgets import Tree
from textual.widgets._tree import _TreeLine
from textual.widgets.tree import TreeNode

NodeData = TypeVar("NodeData")


class FastTree(Tree[NodeData]):
    """A `Tree` whose line index costs no label rendering and leaves no reference cycles, with two helpers that
    need Textual's node internals: `relabel_quietly` and `move_to_visible`."""

    def get_label_width(self, node: TreeNode[NodeData]) -> int:
        """The width of a node's line as `render_label` draws it, without drawing it (Textual's default
        renders every label, with its styles, each time it rebuilds its line index: half of a rebuild)."""
        width = node.label.cell_len if isinstance(node.label, Text) else cell_len(str(node.label))
        if node.allow_expand:
            width += cell_len(self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE)
        return width

    def _clear_line_cache(self) -> None:
        # Textual's LRUCache.clear() drops its ring of links whole: a reference cycle only a full collection
        # frees, made on every insertion or removal. Emptying the links first lets reference counting free them.
        links = getattr(self._line_cache, "_cache", None)
        if isinstance(links, dict):
            for link in links.values():
                if isinstance(link, list):
                    link.clear()
        super()._clear_line_cache()

    def _build(self) -> None:
        """Textual's index of the visible lines (same lines, same order, same side effects), built with a stack
        instead of a recursive closure: a recursive closure is a reference cycle, so each of Textual's builds
        left the previous index — every line, and every node it listed, dropped ones included — for the cyclic
        collector (tens of thousands of objects per page while paging, freed only by a full collection)."""
        roots = [self.root] if self.show_root else list(self.root._children)
        lines: list[_TreeLine[NodeData]] = []
        # as in Textual, every top-level line counts as a last child
        stack: list[tuple[list[TreeNode[NodeData]], TreeNode[NodeData], bool]] = [
            ([], node, True) for node in reversed(roots)]
        while stack:
            path, node, last = stack.pop()
            child_path = [*path, node]
            node._line = len(lines)
            lines.append(_TreeLine(child_path, last))
            if node._expanded:
                children = node._children
                count = len(children)
                stack.extend((child_path, children[index], index == count - 1)
                             for index in range(count - 1, -1, -1))
        self._tree_lines_cached = lines
        guide_depth, show_root = self.guide_depth, self.show_root
        width = max((self.get_label_width(line.node) + line._get_guide_width(guide_depth, show_root)
                     for line in lines), default=self.size.width)
        self.virtual_size = Size(width, len(lines))
        if self.cursor_line != -1:
            if self.cursor_node is not None:
                self.cursor_line = self.cursor_node._line
            if self.cursor_line >= len(lines):
                self.cursor_line = -1

    def relabel_quietly(self, node: TreeNode[NodeData], label: TextType) -> None:
        """What `TreeNode.set_label` does, minus its per-node repaint callback: the caller repaints once for
        many nodes (the line cache is keyed on ``_updates``, so the next repaint draws the new label)."""
        node._label = self.process_label(label)
        node._updates += 1

    def move_to_visible(self, node: TreeNode[NodeData]) -> None:
        """Put the cursor on ``node``, or on its nearest visible ancestor when it is inside a collapsed node."""
        self._tree_lines  # noqa: B018 - rebuilds the line index so node._line is current before moving
        while node._line < 0 and node.parent is not None and not node.parent.is_root:
            node = node.parent
        if node._line >= 0:
            self.move_cursor(node)
