"""A three-node RabbitMQ cluster on loopback, started for the tests of this folder and always stopped after.

Nodes ``rabbit-c1@localhost`` .. ``rabbit-c3@localhost`` listen on 127.0.0.1:5681-5683 (distribution ports
25681-25683); everything they write (database, logs, plugins file, Erlang cookie through HOME) lives in the
test's temporary folder. The system RabbitMQ (rabbit@localhost, 5672) is never named, so never touched: every
``rabbitmqctl`` call names its node with ``-n``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

NODES = 3
FIRST_PORT = 5681
DIST_OFFSET = 20000  # distribution port = AMQP port + this
#: Where Debian puts the real scripts; /usr/sbin/rabbitmq-* are wrappers that switch to the rabbitmq user.
_LIB_BIN = Path("/usr/lib/rabbitmq/bin")


def _binary(name: str) -> str | None:
    direct = _LIB_BIN / name
    return str(direct) if direct.exists() else shutil.which(name)


class RabbitCluster:
    """Three RabbitMQ nodes of one cluster, each its own Erlang VM, controlled with rabbitmqctl."""

    def __init__(self, root: Path, server: str, ctl: str) -> None:
        self.root = root
        self.server = server
        self.ctl = ctl
        self.nodes = [f"rabbit-c{i + 1}@localhost" for i in range(NODES)]
        self.ports = [FIRST_PORT + i for i in range(NODES)]
        self._procs: list[subprocess.Popen[bytes]] = []
        root.mkdir(parents=True, exist_ok=True)
        cookie = root / ".erlang.cookie"
        cookie.write_text("stepflowclustertestcookie")
        cookie.chmod(0o400)

    def url(self, index: int, vhost: str = "%2F") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.ports[index]}/{vhost}"

    def urls(self, order: list[int], vhost: str = "%2F") -> str:
        """The broker string of the cluster: its nodes' URLs in ``order``, comma-separated."""
        return ",".join(self.url(i, vhost) for i in order)

    def index_of_port(self, text: str) -> int:
        """Which node a (masked) node URL names, by its port."""
        return next(i for i, port in enumerate(self.ports) if f":{port}/" in text)

    def _env(self, index: int) -> dict[str, str]:
        base = self.root / f"n{index + 1}"
        base.mkdir(exist_ok=True)
        (base / "enabled_plugins").write_text("[].\n")
        (base / "env.conf").write_text("")
        (base / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.ports[index]}\n"
                                            "loopback_users = none\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": str(self.root),  # the shared Erlang cookie
            "RABBITMQ_NODENAME": self.nodes[index],
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.ports[index]),
            "RABBITMQ_DIST_PORT": str(self.ports[index] + DIST_OFFSET),
            "RABBITMQ_SERVER_START_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "env.conf"),  # not the system's (it names rabbit@localhost)
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_PID_FILE": str(base / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        })
        return env

    def rabbitmqctl(self, index: int, *args: str, timeout: float = 60) -> str:
        """Run ``rabbitmqctl -n <node> ARGS``; raise with its output when it fails."""
        result = subprocess.run([self.ctl, "-n", self.nodes[index], *args], env=self._env(index),
                                capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {self.nodes[index]} {' '.join(args)}: exit {result.returncode}\n"
                               f"{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self) -> None:
        """Start the three VMs at once, wait for each, then join c2 and c3 to c1."""
        for index in range(NODES):
            with open(self.root / f"n{index + 1}.out", "wb") as out:
                self._procs.append(subprocess.Popen([self.server], env=self._env(index), stdout=out,
                                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                    start_new_session=True))
        for index in range(NODES):
            self.rabbitmqctl(index, "wait", str(self.root / f"n{index + 1}" / "pid"), "--timeout", "90",
                             timeout=120)
        for index in range(1, NODES):
            self.rabbitmqctl(index, "stop_app")
            self.rabbitmqctl(index, "join_cluster", self.nodes[0])
            self.rabbitmqctl(index, "start_app")

    def stop_node(self, index: int) -> None:
        """Stop RabbitMQ on one node (its VM stays up): its connections are closed, its queues unavailable."""
        self.rabbitmqctl(index, "stop_app")

    def start_node(self, index: int) -> None:
        """Start RabbitMQ again on a node stopped by `stop_node` (it rejoins the cluster)."""
        self.rabbitmqctl(index, "start_app")
        self.rabbitmqctl(index, "await_startup")

    def stop(self) -> None:
        """Stop every node (shutdown, then SIGKILL of what is left)."""
        for index, proc in enumerate(self._procs):
            if proc.poll() is None:
                try:
                    self.rabbitmqctl(index, "shutdown", timeout=30)
                except (RuntimeError, subprocess.TimeoutExpired):
                    pass
        for proc in self._procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the node's own session: its VM and helpers
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    """A started three-node cluster for the module; skipped without the RabbitMQ binaries (failed instead when
    STEPFLOW_REQUIRE_RABBITMQ=1, as in CI)."""
    server, ctl = _binary("rabbitmq-server"), _binary("rabbitmqctl")
    if server is None or ctl is None:
        reason = "the rabbitmq-server and rabbitmqctl binaries are needed to start a three-node cluster"
        if os.environ.get("STEPFLOW_REQUIRE_RABBITMQ") == "1":
            pytest.fail(f"STEPFLOW_REQUIRE_RABBITMQ=1 but {reason}")
        pytest.skip(reason)
    cluster = RabbitCluster(tmp_path_factory.mktemp("rabbit-cluster"), server, ctl)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
