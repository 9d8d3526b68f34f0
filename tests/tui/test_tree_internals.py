"""FastTree overrides Textual internals for speed and garbage (widgets/fast_tree.py); WorkflowTree inherits them
and overrides none itself. Each must give what Textual's own gives, so that a Textual upgrade that changes them
fails here, not on an operator's screen."""

from __future__ import annotations

import gc

from textual.widgets import Tree

from stepflow_tui.tui.widgets.fast_tree import FastTree
from stepflow_tui.tui.widgets.tree import NodeRef, WorkflowTree

from .helpers import big_step, load_page, make_app, settle

SIZE = (120, 36)


def test_the_overrides_live_in_the_base_widget_only():
    overridden = {"_build", "_clear_line_cache", "get_label_width"}
    assert overridden <= set(vars(FastTree))
    assert not overridden & set(vars(WorkflowTree))


def line_index(tree) -> list[tuple[int, bool, int, int]]:
    return [(line.node.id, line.last, len(line.path), line.node._line) for line in tree._tree_lines_cached]


async def test_the_line_index_matches_textuals_and_leaves_no_garbage_cycle():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        tree, _step = await big_step(pilot)
        await load_page(pilot, 15, 1)
        for node in tree.root.children[:3]:
            node.expand()
        tree.root.children[1].collapse()
        await settle(pilot)
        for show_root in (False, True):
            tree.show_root = show_root
            Tree._build(tree)
            textual_lines, textual_size, textual_cursor = line_index(tree), tree.virtual_size, tree.cursor_line
            FastTree._build(tree)
            assert line_index(tree) == textual_lines
            assert len(textual_lines) > 400 or show_root  # (with the root shown, its line alone: collapsed)
            assert (tree.virtual_size, tree.cursor_line) == (textual_size, textual_cursor)
        tree.show_root = False

        # a rebuild leaves nothing for the cyclic collector (Textual's own leaves its index in a cycle)
        gc.collect()
        gc.disable()
        try:
            tree._build()
            tree._build()
            assert gc.collect() == 0
        finally:
            gc.enable()


async def test_label_width_matches_rendering_the_label():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        tree, _step = await big_step(pilot)
        nodes = [tree.node_for(NodeRef("workflow", 15)), tree.node_for(NodeRef("step", 15, 1)),
                 tree.node_for(NodeRef("job", 15, 1, 100_000)), tree.node_for(NodeRef("more", 15, 1))]
        for node in nodes + list(tree.root.children):
            assert node is not None
            assert FastTree.get_label_width(tree, node) == Tree.get_label_width(tree, node), str(node.label)


async def test_clearing_the_line_cache_leaves_no_cycle():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        tree, _step = await big_step(pilot)
        await pilot.pause()
        assert len(tree._line_cache) > 0  # lines were drawn and cached
        strips = list(tree._line_cache._cache.values())
        gc.collect()
        gc.disable()
        try:
            tree._clear_line_cache()
            assert len(tree._line_cache) == 0
            assert all(link == [] for link in strips)  # unlinked: reference counting frees the strips
        finally:
            gc.enable()
