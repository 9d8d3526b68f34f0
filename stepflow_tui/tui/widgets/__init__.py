"""Widgets of the workbench, grouped by area: the tree, the detail pane, the queues panel, header, log."""
