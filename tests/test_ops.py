"""Operations (stepflow_tui/ops.py, issue 6): dead letters looked at and redriven on both brokers, the
backend's redrive command, prune on a real state file, the pure helpers (excerpts, ages); and through the CLI
without RabbitMQ: read-only refusals, state file safety, passwords never printed, --ca-file for amqps://."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import cli_command, cli_env, describe, run_cli, step, wait_for, workflow, write_workflows

from stepflow_tui import ops
from stepflow_tui.broker import topology
from stepflow_tui.broker.base import Connection, Delivery, OutgoingMessage, connect
from stepflow_tui.core.model import Job, JobStatus, State, StepState, StepStatus, Workflow, WorkflowStatus
from stepflow_tui.store import SHARD_SIZE, Store, StoreLocked, read_state


def ready(conn: Connection, queue: str) -> int:
    (state,) = conn.queue_states([queue])
    return state.ready


@pytest.fixture
def conn(broker_url: str) -> Iterator[Connection]:
    connection = connect(broker_url, name="test-ops")
    connection.declare_backend_topology()
    connection.declare_job_queue("checksum")
    yield connection
    connection.close()


def kill(conn: Connection, queue: str, exchange: str, bodies: list[bytes],
         headers: dict[str, object] | None = None) -> None:
    """Publish ``bodies`` to ``queue`` through ``exchange`` and reject each (requeue=False): dead letters."""
    before = ready(conn, topology.JOB_DEAD_LETTER)
    conn.publish([OutgoingMessage(exchange, queue, body, headers=headers) for body in bodies])
    wait_for(lambda: ready(conn, queue) >= len(bodies), 10, f"{len(bodies)} messages in {queue}")
    for _ in bodies:
        delivery = conn.get(queue)
        assert delivery is not None
        conn.reject(delivery.delivery_tag, requeue=False)
    wait_for(lambda: ready(conn, topology.JOB_DEAD_LETTER) >= before + len(bodies), 10, "the dead letters")


def fill(conn: Connection) -> None:
    """Dead letters in this order: 2 orders of job_checksum, 1 garbage response, 1 without x-death,
    1 more order of job_checksum."""
    kill(conn, "job_checksum", topology.JOB_SUBMIT, [b'{"job_id": 1}', b'{"job_id": 2}'],
         headers={"trace": "t-1"})
    kill(conn, "job_completed", topology.JOB_RESPONSE, [b"garbage \x1b[31m\xff"])
    conn.publish([OutgoingMessage(topology.JOB_DEAD_LETTER, "by.hand", b"no death")])
    wait_for(lambda: ready(conn, topology.JOB_DEAD_LETTER) == 4, 10, "the hand-made dead letter")
    kill(conn, "job_checksum", topology.JOB_SUBMIT, [b'{"job_id": 3}'])


def bodies_of(letters: list[ops.DeadLetter]) -> list[str]:
    return [letter.excerpt for letter in letters]


ORDER = ['{"job_id": 1}', '{"job_id": 2}', "garbage \\x1b[31m\\xff", "no death", '{"job_id": 3}']


def test_peek_reads_x_death_and_consumes_nothing(broker_url: str, conn: Connection) -> None:
    fill(conn)
    first = ops.peek_dead_letters(conn, limit=3)
    assert bodies_of(first) == ORDER[:3]
    order = first[0]
    assert (order.original_queue, order.reason, order.count) == ("job_checksum", "rejected", 1)
    assert order.exchange == topology.JOB_SUBMIT and order.routing_keys == ("job_checksum",)
    assert order.time is not None and order.time.endswith("Z") and order.position == 0
    assert first[2].original_queue == "job_completed"

    # as the CLI does: a connection of its own, closed afterwards; the queue keeps everything, in order
    other = connect(broker_url, name="test-ops-peek")
    try:
        assert bodies_of(ops.peek_dead_letters(other)) == ORDER
    finally:
        other.close()
    wait_for(lambda: ready(conn, topology.JOB_DEAD_LETTER) == 5, 10, "5 dead letters back in place")
    letters = ops.peek_dead_letters(conn)
    assert bodies_of(letters) == ORDER
    assert letters[3].original_queue is None and letters[3].routing_key == "by.hand"
    assert [letter.position for letter in letters] == [0, 1, 2, 3, 4]


def test_dry_run_counts_per_original_queue_and_moves_nothing(conn: Connection) -> None:
    fill(conn)
    report = ops.redrive(conn, dry_run=True)
    assert report.counts() == {"job_checksum": 3, "job_completed": 1, ops.NO_ORIGIN: 1}
    assert not report.redriven
    assert ready(conn, "job_checksum") == 0
    assert bodies_of(ops.peek_dead_letters(conn)) == ORDER


def test_redrive_one_queue_sends_back_only_its_messages(broker_url: str, conn: Connection) -> None:
    fill(conn)
    report = ops.redrive(conn, queue="checksum")  # the job type names its queue too
    assert report.redriven == {"job_checksum": 3}
    assert report.skipped == {"job_completed": 1} and len(report.unredrivable) == 1
    assert bodies_of(ops.peek_dead_letters(conn)) == [ORDER[2], ORDER[3]]  # the others stay, in order

    wait_for(lambda: ready(conn, "job_checksum") == 3, 10, "3 orders back in job_checksum")
    back: list[Delivery] = []
    for _ in range(3):
        delivery = conn.get("job_checksum")
        assert delivery is not None
        back.append(delivery)
        conn.ack(delivery.delivery_tag)
    assert [d.body for d in back] == [b'{"job_id": 1}', b'{"job_id": 2}', b'{"job_id": 3}']
    assert back[0].headers == {"trace": "t-1"}  # the sender's headers, without the death records
    assert all(not any(k.startswith("x-") for k in d.headers) for d in back)


def test_redrive_everything_leaves_what_has_no_origin(conn: Connection) -> None:
    fill(conn)
    report = ops.redrive(conn)
    assert report.counts() == {"job_checksum": 3, "job_completed": 1, ops.NO_ORIGIN: 1}
    assert [letter.excerpt for letter in report.unredrivable] == ["no death"]
    assert bodies_of(ops.peek_dead_letters(conn)) == ["no death"]
    wait_for(lambda: ready(conn, "job_completed") == 1, 10, "the response back in job_completed")
    wait_for(lambda: ready(conn, "job_checksum") == 3, 10, "the orders back in job_checksum")


def test_a_message_that_dies_again_is_not_redriven_twice(conn: Connection) -> None:
    kill(conn, "job_checksum", topology.JOB_SUBMIT, [b"a"])
    assert ops.redrive(conn).redriven == {"job_checksum": 1}
    kill_again = conn.get("job_checksum") or wait_for(lambda: conn.get("job_checksum"), 10, "the redriven a")
    conn.reject(kill_again.delivery_tag, requeue=False)
    wait_for(lambda: ready(conn, topology.JOB_DEAD_LETTER) == 1, 10, "a dead again")
    (letter,) = ops.peek_dead_letters(conn)
    assert letter.original_queue == "job_checksum"
    assert letter.count == 1  # the old records were dropped on redrive: this is a fresh death


def test_empty_and_missing_dead_letter_queue(memory_url: str) -> None:
    conn = connect(memory_url)
    try:
        assert ops.dead_letter_count(conn) is None
        assert ops.peek_dead_letters(conn) == []
        with pytest.raises(ops.BrokerError, match="job_dead_letter"):
            ops.redrive(conn)
        conn.declare_backend_topology()
        assert ops.redrive(conn).counts() == {}
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------ pure helpers
def test_excerpt_escapes_control_characters_and_cuts() -> None:
    assert ops.excerpt(b"a\nb\tc\x1b[2J") == "a\\nb\\tc\\x1b[2J"
    assert ops.excerpt(b"\xff\xfeok") == "\\xff\\xfeok"
    assert ops.excerpt("é".encode() * 3) == "ééé"
    long = ops.excerpt(b"x" * 150)
    assert long == "x" * 100 + "…"


def test_describe_reads_the_newest_death_of_rabbitmq_headers() -> None:
    headers = {"x-death": [
        {"queue": b"job_transfer", "reason": "rejected", "count": 2, "exchange": "job_submit",
         "routing-keys": ["job_transfer"], "time": datetime(2026, 1, 2, 3, 4, 5)},
        {"queue": "job_older", "reason": "expired", "count": 1},
    ], "x-first-death-queue": "job_older", "keep": 1}
    delivery = Delivery(queue="job_dead_letter", body=b"{}", delivery_tag=1, routing_key="job_transfer",
                        headers=headers)
    letter = ops.describe_dead_letter(delivery, 7)
    assert (letter.original_queue, letter.reason, letter.count, letter.time, letter.position) == (
        "job_transfer", "rejected", 2, "2026-01-02T03:04:05Z", 7)
    message = ops.republished(delivery, letter)
    assert (message.exchange, message.routing_key, message.persistent) == ("job_submit", "job_transfer", True)
    assert message.headers == {"keep": 1}

    bare = Delivery(queue="job_dead_letter", body=b"", delivery_tag=2,
                    headers={"x-death": [{"queue": "job_x", "reason": "maxlen"}]})
    no_exchange = ops.describe_dead_letter(bare)
    assert ops.republished(bare, no_exchange).exchange == ""  # the default exchange, to the queue itself
    assert ops.republished(bare, no_exchange).routing_key == "job_x"


def test_redrive_summary_lists_queues_and_what_stays() -> None:
    total, lines = ops.redrive_summary({"job_b": 2, "job_a": 1, ops.NO_ORIGIN: 4})
    assert total == 3
    assert lines.splitlines() == ["     1  job_a", "     2  job_b",
                                  "     4  without x-death: cannot be sent back, they stay"]


@pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("5m", 300), ("90s", 90),
                                               ("1.5h", 5400), (" 2 d ", 172800)])
def test_parse_age(text: str, seconds: float) -> None:
    assert ops.parse_age(text) == seconds


@pytest.mark.parametrize("text", ["30", "d", "30w", "-1d", "thirty days", ""])
def test_parse_age_refuses_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match="unit s, m, h or d"):
        ops.parse_age(text)


# ------------------------------------------------------------------------------------------ prune
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def stamp(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def add(state: State, status: WorkflowStatus, finished_days_ago: float | None, jobs: int) -> int:
    """A workflow of one step with ``jobs`` jobs, as the engine leaves it."""
    workflow_id = state.next_workflow_id
    state.next_workflow_id += 1
    finished = stamp(finished_days_ago) if finished_days_ago is not None else None
    step = StepState(id=1, name="noop", label="noop", status=StepStatus.COMPLETED)
    workflow = Workflow(id=workflow_id, identifier="w", label="w", version="1.0.0",
                        definition={"identifier": "w", "steps": [{"id": 1, "name": "noop"}]}, parameters={},
                        status=status, steps=[step], created_at=stamp(100), updated_at=finished or stamp(0),
                        finished_at=finished)
    state.workflows[workflow_id] = workflow
    state.mark_workflow(workflow)
    for _ in range(jobs):
        job = Job(id=state.next_job_id, workflow_id=workflow_id, step_id=1, job_type="noop", parameters=[],
                  status=JobStatus.COMPLETED, history=[["completed", stamp(0)]], created_at=stamp(100))
        state.next_job_id += 1
        state.jobs[job.id] = job
        step.job_ids.append(job.id)
        state.mark_job(job)
    return workflow_id


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Workflows #1 completed 40 days ago (1,200 jobs: two shards), #2 error 31 days ago, #3 aborted 2 days
    ago, #4 still processing (and old)."""
    path = tmp_path / "state.json"
    store = Store(path)
    state = store.open()
    add(state, WorkflowStatus.COMPLETED, 40, 1200)
    add(state, WorkflowStatus.ERROR, 31, 3)
    add(state, WorkflowStatus.ABORTED, 2, 2)
    add(state, WorkflowStatus.PROCESSING, None, 4)
    store.flush(state)
    store.close()
    return path


def test_prune_removes_old_finished_workflows_and_their_jobs(db: Path) -> None:
    dry = ops.prune(db, ops.parse_age("30d"), dry_run=True, now=lambda: NOW)
    assert dry.workflow_ids == (1, 2) and dry.jobs == 1203 and dry.size_after == dry.size_before
    assert set(read_state(db).workflows) == {1, 2, 3, 4}  # a dry run writes nothing

    result = ops.prune(db, ops.parse_age("30d"), now=lambda: NOW)
    assert result.workflow_ids == (1, 2) and result.jobs == 1203
    assert result.size_after < result.size_before / 10
    assert result.size_after == ops.state_size(db)
    state = read_state(db)
    assert set(state.workflows) == {3, 4}
    assert {job.workflow_id for job in state.jobs.values()} == {3, 4} and len(state.jobs) == 6
    # shards that held only jobs of #1 and #2 are gone, the one of #3 and #4 stays; definitions of #1, #2 gone
    shards = sorted({f"jobs-{job_id // SHARD_SIZE}.json" for job_id in state.jobs})
    assert len(shards) == 1 and shards != ["jobs-0.json"]
    assert sorted(p.name for p in (db.parent / "state.json.d").iterdir()) == [
        "definition-3.json", "definition-4.json", *shards]
    assert state.next_workflow_id == 5  # ids are never reused
    assert ops.prune(db, ops.parse_age("30d"), now=lambda: NOW).workflow_ids == ()


def test_prune_refuses_a_state_file_in_use(db: Path) -> None:
    owner = Store(db)
    owner.open()
    try:
        with pytest.raises(StoreLocked):
            ops.prune(db, 0)
    finally:
        owner.close()


def test_state_size_and_human_size(tmp_path: Path) -> None:
    assert ops.state_size(tmp_path / "none.json") == 0
    assert ops.human_size(512) == "512 B" and ops.human_size(1536) == "1.5 KB"
    assert ops.human_size(5 * 1024 * 1024) == "5.0 MB"


# ------------------------------------------------------------------------------------------ the backend's command
@pytest.mark.parametrize("read_only", [False, True])
def test_backend_redrives_on_its_own_thread(memory_url: str, tmp_path: Path, read_only: bool) -> None:
    from stepflow_tui.backend.backend import Backend, BackendConfig
    from stepflow_tui.core.engine import EngineError

    backend = Backend(BackendConfig(broker_url=memory_url, db_path=tmp_path / "state.json", local_workers=False,
                                    read_only=read_only))
    backend.start()
    other = connect(memory_url, name="test-ops-other")
    try:
        assert backend.wait_until_running(10)
        other.declare_job_queue("checksum")
        kill(other, "job_checksum", topology.JOB_SUBMIT, [b"1", b"2"])
        other.publish([OutgoingMessage(topology.JOB_DEAD_LETTER, "x", b"no death")])

        assert backend.redrive_dead_letters(dry_run=True).result(10) == {"job_checksum": 2, ops.NO_ORIGIN: 1}
        if read_only:
            with pytest.raises(EngineError, match="read-only"):
                backend.redrive_dead_letters().result(10)
            assert ready(other, topology.JOB_DEAD_LETTER) == 3
            return
        assert backend.redrive_dead_letters(queue="job_other").result(10) == {ops.NO_ORIGIN: 1}
        assert backend.redrive_dead_letters().result(10) == {"job_checksum": 2, ops.NO_ORIGIN: 1}
        assert ready(other, "job_checksum") == 2
        assert bodies_of(ops.peek_dead_letters(other)) == ["no death"]
        # the backend's own consuming goes on: its batches' acks never settled a message it held
        wait_for(lambda: any(s.name == topology.JOB_DEAD_LETTER and s.ready == 1
                               for s in backend.queue_states()), 10, "the queue panel's figures")
    finally:
        other.close()
        backend.stop()


# ------------------------------------------------------------------------------------------ the CLI (no RabbitMQ)
#: A password that appears nowhere else, to look for in every output.
SECRET = "Zq9-not-printed-7Hk"


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, describe(result)
    return lines[0]


@pytest.fixture
def quick(tmp_path: Path) -> Path:
    return write_workflows(tmp_path / "workflows.json", [workflow("quick", [step(1, "noop")])])


def closed_port() -> int:
    """A local port nobody listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("args", [
    ["run", "quick"], ["retry", "1"], ["retry", "--workflow", "1"], ["abort", "1"], ["cancel", "1"],
    ["prune", "--older-than", "1d"], ["redrive"], ["redrive", "--broker", "amqp://u:p@127.0.0.1:1/", "--yes"],
])
def test_read_only_refuses_every_change(tmp_path: Path, quick: Path, args: list[str]) -> None:
    db = tmp_path / "state.json"
    result = run_cli(*args, "--read-only", "--workflows", quick, db=db, cwd=tmp_path)
    assert "read-only mode" in one_line_error(result)
    assert not db.exists()  # nothing was even opened for writing


def test_read_only_allows_looking(tmp_path: Path) -> None:
    db = tmp_path / "state.json"
    result = run_cli("prune", "--older-than", "1d", "--dry-run", "--read-only", db=db, cwd=tmp_path)
    assert result.returncode == 0 and "would remove 0 workflow(s)" in result.stdout, describe(result)


def test_prune_cli_prints_counts_and_sizes(db: Path, tmp_path: Path) -> None:
    result = run_cli("prune", "--older-than", "30d", db=db, cwd=tmp_path)
    assert result.returncode == 0, describe(result)
    # the fixture's workflows finished in 2026-01/02 relative to NOW; the real clock is later still
    assert "removed 3 workflow(s) (#1, #2, #3) and 1,205 job(s)" in result.stdout, result.stdout
    assert re.search(r"state [\d.]+ KB -> [\d.]+ (B|KB)$", result.stdout.strip()), result.stdout
    assert set(read_state(db).workflows) == {4}
    bad = run_cli("prune", "--older-than", "soon", db=db, cwd=tmp_path)
    assert "--older-than 'soon'" in one_line_error(bad)


def test_dead_letters_and_redrive_explain_the_embedded_broker(tmp_path: Path) -> None:
    for command in ("dead-letters", "redrive"):
        line = one_line_error(run_cli(command, cwd=tmp_path))
        assert "memory://" in line and "workbench" in line, line


# ------------------------------------------------------------------------------------------ state file safety
def truncated_state(tmp_path: Path, quick: Path) -> tuple[Path, bytes]:
    """A real state file (one finished workflow), cut in the middle as a crash of a careless writer would."""
    db = tmp_path / "state" / "state.json"
    done = run_cli("run", "quick", "--wait", "--workflows", quick, db=db, cwd=tmp_path)
    assert done.returncode == 0, describe(done)
    whole = db.read_bytes()
    db.write_bytes(whole[: len(whole) // 2])
    return db, db.read_bytes()


@pytest.mark.parametrize(("args", "owner"), [
    ([], True),  # the workbench: refused before any screen is drawn
    (["run", "quick", "--wait"], True),
    (["status"], False),
    (["prune", "--older-than", "1d"], True),
    (["abort", "1"], True),
])
def test_truncated_state_file_is_named_kept_and_copied(tmp_path: Path, quick: Path, args: list[str],
                                                        owner: bool) -> None:
    db, cut = truncated_state(tmp_path, quick)
    for attempt in (1, 2):
        result = run_cli(*args, "--workflows", quick, db=db, cwd=tmp_path)
        line = one_line_error(result)
        assert str(db) in line and "unreadable" in line, line
        assert db.read_bytes() == cut  # never overwritten, never "repaired"
        copies = sorted(db.parent.glob("state.json.corrupt-*"))
        if owner:
            # the owner makes a copy each time it is refused, never overwriting an earlier one
            assert len(copies) == attempt and all(c.read_bytes() == cut for c in copies), copies
            assert "a copy was saved as" in line
        else:
            assert copies == []  # a reader (status) writes nothing, not even a copy


# ------------------------------------------------------------------------------------------ security
def masked_everywhere(text: str) -> None:
    assert SECRET not in text, text
    assert "***" in text, text


def output_until(args: list[str | Path], marker: str, cwd: Path, timeout: float = 30) -> str:
    """Run a command that keeps retrying (run --wait, worker) until its output (stdout and stderr) shows
    ``marker``; then interrupt it and return everything it printed."""
    proc = subprocess.Popen(cli_command(*args), cwd=cwd, env=cli_env(None, cwd / ".xdg-state"), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    seen = ""
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate(timeout=10)
    assert marker in seen, seen + rest
    return seen + rest


def test_no_output_contains_the_password_of_an_unreachable_broker(tmp_path: Path, quick: Path) -> None:
    url = f"amqp://stepflow:{SECRET}@127.0.0.1:{closed_port()}/prod"
    db = tmp_path / "state.json"
    for args in (["queues"], ["dead-letters"], ["redrive", "--yes"]):
        result = run_cli(*args, "--broker", url, "-vv", "--workflows", quick, "--connect-timeout", "1", db=db,
                         cwd=tmp_path)
        assert result.returncode == 1, describe(result)
        masked_everywhere(result.stdout + result.stderr)
    # these keep trying to reconnect: read until they say so (pika's own debug log included), then stop them
    masked_everywhere(output_until(["worker", "--job-type", "noop", "--broker", url, "-vv"], "reconnecting",
                                   tmp_path))
    masked_everywhere(output_until(["run", "quick", "--wait", "--broker", url, "-vv", "--workflows", quick,
                                    "--db", db], "broker unreachable", tmp_path))
    status = run_cli("status", "--json", "--broker", url, db=db, cwd=tmp_path)
    assert status.returncode == 0 and SECRET not in status.stdout + status.stderr, describe(status)


# ------------------------------------------------------------------------------------------ TLS
@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for localhost (the server's, and so its CA) and an unrelated one."""
    folder = tmp_path_factory.mktemp("tls")
    for name, subject in (("server", "/CN=localhost"), ("other", "/CN=other")):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-keyout", folder / f"{name}-key.pem", "-out", folder / f"{name}.pem", "-subj", subject,
                        "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    return folder


@pytest.fixture
def tls_server(certificates: Path) -> Iterator[tuple[int, list[bytes]]]:
    """A TLS server on localhost that records the first bytes each client sends after the handshake (an
    AMQP client sends its protocol header), then hangs up."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates / "server.pem", certificates / "server-key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(client, server_side=True) as tls:
                    received.append(tls.recv(8))
            except (OSError, ssl.SSLError):
                client.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], received
    listener.close()


def test_ca_file_verifies_an_amqps_broker(tmp_path: Path, certificates: Path,
                                          tls_server: tuple[int, list[bytes]]) -> None:
    port, received = tls_server
    url = f"amqps://stepflow:{SECRET}@localhost:{port}/"
    trusted = run_cli("queues", "--broker", url, "--ca-file", certificates / "server.pem", "--connect-timeout", "0",
                      cwd=tmp_path)  # one attempt: the server hangs up after the handshake
    assert trusted.returncode == 1, describe(trusted)
    assert received == [b"AMQP\x00\x00\x09\x01"]  # the handshake passed: the client spoke AMQP over TLS
    assert "certificate verify failed" not in trusted.stderr
    masked_everywhere(trusted.stderr)

    from_env = run_cli("queues", "--broker", url, cwd=tmp_path,
                       env={"STEPFLOW_CA_FILE": str(certificates / "other.pem")})
    # issue 14: an untrusted certificate is a permanent failure (exit 2, at once), like a refused login
    assert from_env.returncode == 2 and "certificate verify failed" in from_env.stderr, describe(from_env)
    assert len(received) == 1  # refused by the client: nothing sent over an unverified channel
    masked_everywhere(from_env.stderr)


def test_ca_file_errors_name_the_problem(tmp_path: Path, certificates: Path) -> None:
    missing = one_line_error(run_cli("queues", "--broker", "amqps://u:p@localhost/", "--ca-file",
                                     tmp_path / "nope.pem", cwd=tmp_path))
    assert "nope.pem: no such file" in missing
    plain = one_line_error(run_cli("queues", "--broker", f"amqp://u:{SECRET}@localhost/", "--ca-file",
                                   certificates / "server.pem", cwd=tmp_path))
    assert "not amqps://" in plain and SECRET not in plain
    # memory:// has no network: the option (e.g. from the environment) is ignored there
    ok = run_cli("status", cwd=tmp_path, env={"STEPFLOW_CA_FILE": str(tmp_path / "nope.pem")})
    assert ok.returncode == 0, describe(ok)


def test_ca_file_maps_onto_the_url(tmp_path: Path, certificates: Path) -> None:
    from stepflow_tui.cli import build_parser
    from stepflow_tui.cli.options import apply_ca_file, resolve_options

    args = resolve_options(build_parser().parse_args(
        ["queues", "--broker", "amqps://u:p@h:5671/v?heartbeat=5&cafile=/old", "--ca-file",
         str(certificates / "server.pem")]))
    apply_ca_file(args)
    assert args.broker == f"amqps://u:p@h:5671/v?heartbeat=5&cafile={certificates / 'server.pem'}"
