"""Several broker addresses (a RabbitMQ cluster) and the queue type: parsing, masking, rotation, topology."""

from __future__ import annotations

import pytest

from stepflow_tui.broker import topology
from stepflow_tui.broker.base import BrokerError, connect, mask_url
from stepflow_tui.broker.cluster import NodeRotation, is_cluster, split_urls
from stepflow_tui.cli.options import UsageError, queue_type_option

CLUSTER = "amqp://u:S3cret@h1:5672/vh,amqp://u:p,w@h2:5673/vh, amqps://v:x@h3/vh?cafile=/ca.pem"


def test_a_comma_starts_a_new_address_only_before_a_scheme() -> None:
    assert split_urls(CLUSTER) == ["amqp://u:S3cret@h1:5672/vh", "amqp://u:p,w@h2:5673/vh",
                                   "amqps://v:x@h3/vh?cafile=/ca.pem"]
    assert split_urls("amqp://u:p@h/v") == ["amqp://u:p@h/v"]
    assert is_cluster(CLUSTER) and not is_cluster("amqp://u:p,w@h/v")


def test_every_password_of_a_cluster_is_masked() -> None:
    masked = mask_url(CLUSTER)
    assert "S3cret" not in masked and "p,w" not in masked and ":x@" not in masked
    assert masked.count("***") == 3 and "h1:5672" in masked and "h3" in masked


def test_the_next_node_after_a_lost_one_is_tried_first() -> None:
    rotation = NodeRotation()
    assert rotation.order(CLUSTER) == [0, 1, 2]
    rotation.lost(CLUSTER, 2)
    assert rotation.order(CLUSTER) == [0, 1, 2]
    rotation.lost(CLUSTER, 0)
    assert rotation.order(CLUSTER) == [1, 2, 0]
    rotation.connected(CLUSTER, 2)
    assert rotation.order(CLUSTER) == [2, 0, 1]
    assert rotation.order("amqp://other") == [0]


def test_quorum_applies_to_the_durable_queues_the_backend_owns_never_to_job_or_direct_queues() -> None:
    quorum = {q.name: q for q in topology.with_queue_type(topology.BACKEND_QUEUES, "quorum")}
    assert quorum[topology.JOB_COMPLETED].arguments["x-queue-type"] == "quorum"
    assert quorum[topology.JOB_DEAD_LETTER].arguments["x-queue-type"] == "quorum"
    assert topology.with_queue_type(topology.BACKEND_QUEUES, "classic") == topology.BACKEND_QUEUES
    _exchanges, queues = topology.worker_topology("noop", "quorum")
    job = next(q for q in queues if q.name == "job_noop")
    assert "x-queue-type" not in job.arguments
    assert all(q.arguments.get("x-queue-type") == "quorum" for q in queues if q.name != "job_noop")
    direct = topology.direct_queue_spec("abc", ["noop"])
    assert topology.with_queue_type([direct], "quorum") == (direct,)


def test_a_cluster_of_memory_brokers_and_an_unknown_queue_type_are_refused() -> None:
    with pytest.raises(BrokerError, match="RabbitMQ cluster"):
        connect("memory://a,memory://b")
    with pytest.raises(BrokerError, match="queue type 'mirrored'"):
        connect("memory://a", queue_type="mirrored")


def test_the_queue_type_option_and_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEPFLOW_QUEUE_TYPE", raising=False)
    assert queue_type_option(None) == "classic"
    monkeypatch.setenv("STEPFLOW_QUEUE_TYPE", "quorum")
    assert queue_type_option(None) == "quorum"
    assert queue_type_option("classic") == "classic"
    monkeypatch.setenv("STEPFLOW_QUEUE_TYPE", "lazy")
    with pytest.raises(UsageError, match="STEPFLOW_QUEUE_TYPE='lazy'"):
        queue_type_option(None)


def test_the_ca_file_goes_to_every_address_of_a_cluster(tmp_path) -> None:
    import argparse

    from stepflow_tui.cli.options import apply_ca_file

    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    args = argparse.Namespace(broker="amqps://u:p@h1/vh,amqps://u:p@h2/vh", ca_file=str(ca))
    apply_ca_file(args)
    assert [node.split("?")[1] for node in split_urls(args.broker)] == [f"cafile={ca.resolve()}"] * 2


def test_no_password_of_a_cluster_in_a_command_s_output(tmp_path) -> None:
    from helpers import run_cli

    result = run_cli("queues", "-vv", "--connect-timeout", "1", "--broker",
                     "amqp://u:S3cretA@127.0.0.1:1/v,amqp://u:S3cretB@127.0.0.1:2/v", cwd=tmp_path)
    assert result.returncode != 0
    assert "S3cret" not in result.stdout + result.stderr
    assert "amqp://u:***@127.0.0.1:1/v,amqp://u:***@127.0.0.1:2/v" in result.stderr


@pytest.mark.parametrize("entry", ["stepflow", "python -m stepflow_tui.worker"])
def test_the_worker_takes_the_cluster_and_the_queue_type(entry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import stepflow_tui.worker.headless as headless
    from stepflow_tui.cli.root import main as cli_main
    from stepflow_tui.worker.__main__ import main as worker_main

    seen: dict[str, object] = {}

    def fake_run(broker_url: str, *args: object, **kwargs: object) -> int:
        seen.update(broker=broker_url, **kwargs)
        return 0

    monkeypatch.setattr(headless, "run_headless", fake_run)
    monkeypatch.delenv("STEPFLOW_QUEUE_TYPE", raising=False)
    argv = ["--broker", "amqp://u:p@h1/v,amqp://u:p@h2/v", "--queue-type", "quorum", "--job-type", "noop"]
    assert (cli_main(["worker", *argv]) if entry == "stepflow" else worker_main(argv)) == 0
    assert seen["broker"] == "amqp://u:p@h1/v,amqp://u:p@h2/v" and seen["queue_type"] == "quorum"
