"""`/`: the text finds workflows by id, identifier, label or parameter value, and jobs by id or parameter
value; a job found is selected, its page listed first; "no match" is said; clearing keeps what was open."""

from __future__ import annotations

from stepflow_tui.tui.widgets.tree_refs import NodeRef, TreeFilter

from .fakes import FakeBackend
from .helpers import detail_text, make_app, notifications, open_step, search, select, settle, tree_of

SIZE = (120, 36)


def test_text_matches_workflow_parameter_values():
    view = FakeBackend().workflow(14)
    assert TreeFilter(text="/data/scans").matches(view)
    assert TreeFilter(text="#14").matches(view)
    assert not TreeFilter(text="/data/photos").matches(view)
    assert TreeFilter(text="zzz", job_hits=frozenset({14})).matches(view)


async def test_a_job_id_jumps_to_its_line_loading_its_page_of_a_100000_job_step():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await search(pilot, "154321")  # job 54,321 of workflow #15's step: page 54,200-54,400
        tree = tree_of(pilot)
        assert tree.selected_ref == NodeRef("job", 15, 1, 154_321)
        assert tree.listed_window(15, 1) == (54_200, 54_400)
        step = tree.node_for(NodeRef("step", 15, 1))
        assert str(step.children[0].label) == "… load 200 earlier (54,200 before)"
        assert [node.data.workflow_id for node in tree.root.children] == [15]
        assert "job #154321 selected" in notifications(app)[-1]
        assert "Job #154321" in detail_text(app)


async def test_a_parameter_value_finds_jobs_in_every_workflow():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await search(pilot, "img_00030")
        tree = tree_of(pilot)
        assert [node.data.workflow_id for node in tree.root.children] == [12, 14, 15]
        assert tree.selected_ref == NodeRef("job", 15, 1, 100_030)  # newest workflow first


async def test_nothing_found_says_no_match():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await search(pilot, "nothing-like-this")
        tree = tree_of(pilot)
        assert not tree.root.children
        assert notifications(app)[-1] == "no match for text='nothing-like-this'"
        assert tree.border_subtitle.endswith("no match")
        assert "no workflow matches" in detail_text(app)


async def test_clearing_the_filter_keeps_expansion_and_selection():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_step(pilot, 14, 2)
        await select(pilot, NodeRef("job", 14, 2, 3005))
        await search(pilot, "failing")
        tree = tree_of(pilot)
        assert [node.data.workflow_id for node in tree.root.children] == [13]
        await pilot.press("slash")
        await settle(pilot)
        await pilot.click("#clear")
        await settle(pilot)
        assert tree.node_for(NodeRef("step", 14, 2)).is_expanded
        assert tree.selected_ref == NodeRef("job", 14, 2, 3005)
        assert "Job #3005" in detail_text(app)


def line_is_on_screen(tree, ref: NodeRef) -> bool:
    node = tree.node_for(ref)
    top = tree.scroll_offset.y
    return node is not None and top <= node.line < top + tree.scrollable_content_region.height


async def test_a_started_workflow_is_scrolled_into_view_in_either_order():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_step(pilot, 14, 2)  # 40 job lines: the end of the tree is off-screen
        await select(pilot, NodeRef("workflow", 12))
        await pilot.press("s", "enter")
        await settle(pilot)
        await pilot.press(*"/data/new", "enter")
        await settle(pilot)
        tree = tree_of(pilot)
        assert tree.selected_ref == NodeRef("workflow", 16) and line_is_on_screen(tree, NodeRef("workflow", 16))
        await pilot.press("o")
        await settle(pilot)
        assert [node.data.workflow_id for node in tree.root.children] == [16, 15, 14, 13, 12]
        assert tree.selected_ref == NodeRef("workflow", 16) and tree.node_for(NodeRef("step", 14, 2)).is_expanded
        assert tree.border_title == "Workflows, newest first"
