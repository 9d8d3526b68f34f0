"""The `stepflow` parser in-process: where global options go, what each command's help shows."""

from __future__ import annotations

import pytest

from stepflow_tui.cli import build_parser
from stepflow_tui.cli.options import resolve_options


def parse(*argv: str):
    return resolve_options(build_parser().parse_args(list(argv)))


@pytest.mark.parametrize("argv", [["--broker", "amqp://h/", "run", "x"], ["run", "x", "--broker", "amqp://h/"]])
def test_a_global_option_goes_before_or_after_the_command(argv: list[str]) -> None:
    assert parse(*argv).broker == "amqp://h/"


def test_an_option_before_the_command_is_not_reset_by_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEPFLOW_BROKER_URL", raising=False)
    args = parse("--broker", "amqp://h/", "-v", "worker", "--job-type", "noop")
    assert (args.broker, args.verbose, args.job_type) == ("amqp://h/", 1, ["noop"])


def test_the_environment_fills_what_the_command_line_leaves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPFLOW_BROKER_URL", "amqp://env/")
    assert parse("queues").broker == "amqp://env/"
    assert parse("queues", "--broker", "amqp://line/").broker == "amqp://line/"


def test_a_global_option_without_effect_is_accepted_and_only_named_in_the_help(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert parse("status", "--broker", "amqp://h/", "--workflows", "w.json").workflows == "w.json"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["status", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal width
    assert "--db FILE state file" in help_text and "--broker URL" not in help_text
    assert "without effect on this command: --broker, --ca-file, --workflows, --read-only" in help_text


def test_bare_stepflow_is_the_workbench() -> None:
    from stepflow_tui.cli.ui import cmd_tui

    assert parse().handler is cmd_tui and parse("--read-only").read_only
