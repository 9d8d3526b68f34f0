"""The documents of the state files: format constants, file names, and jobs and workflows as JSON text.

See docs/state.md for the layout; `store.Store` writes these documents and `load.StateLoader` reads them.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from stepflow_tui.core.model import Job, JobStatus, Workflow

from .storage import dumps

#: Version of the file layout written in the index's meta document; a newer one is refused. 2: definitions
#: in files of their own (format 1 kept them in the index; still read, rewritten as 2 by the next flush).
FORMAT_VERSION = 2
#: Jobs per shard file in a new state (the index's ``meta.shard_size``; format 1 files used 1,000): a flush
#: rewrites at most this many jobs per dirty shard. 1,000 made a flush of a few dozen jobs write ~700 KB.
SHARD_SIZE = 250

_SHARD_NAME = re.compile(r"^jobs-(\d+)\.json$")
_DEFINITION_NAME = re.compile(r"^definition-(\d+)\.json$")
_JOURNAL_NAME = re.compile(r"^journal-(\d+)\.json\.gz$")
_STATUSES = {status.value: status for status in JobStatus}
#: Job fields left out of a job's document when they hold their default (a queued job's document is half
#: the size; missing keys take the dataclass defaults on load). ``status`` is always written, for readers.
_JOB_DEFAULTS = {
    f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
    for f in fields(Job)
    if (f.default is not MISSING or f.default_factory is not MISSING) and f.name != "status"
}


def shard_path(shard_dir: Path, shard: int) -> Path:
    """The file of job shard ``shard``."""
    return shard_dir / f"jobs-{shard}.json"


def definition_path(shard_dir: Path, workflow_id: int) -> Path:
    """The file of a workflow's definition."""
    return shard_dir / f"definition-{workflow_id}.json"


def journal_path(shard_dir: Path, seq: int) -> Path:
    """The journal file written by flush number ``seq``."""
    return shard_dir / f"journal-{seq}.json.gz"


def data_files(shard_dir: Path) -> tuple[dict[int, Path], dict[int, Path], dict[int, Path]]:
    """The shard, definition and journal files in the data folder, by number."""
    found: tuple[dict[int, Path], dict[int, Path], dict[int, Path]] = ({}, {}, {})
    if not shard_dir.is_dir():
        return found
    for entry in shard_dir.iterdir():
        for pattern, files in zip((_SHARD_NAME, _DEFINITION_NAME, _JOURNAL_NAME), found, strict=True):
            match = pattern.match(entry.name)
            if match:
                files[int(match.group(1))] = entry
                break
    return found


def job_text(job: Job) -> str:
    """A job's document: ``Job.to_dict()`` without the fields that hold their default."""
    document = job.to_dict()
    for key, default in _JOB_DEFAULTS.items():
        value = document[key]
        # ``type`` too: 0 == False == 0.0, but a default is only dropped if it reads back the same.
        if value == default and type(value) is type(default):
            del document[key]
    return dumps(document)


def shard_entry(job: Job) -> str:
    """A job's entry in its shard's table: ``"<id>":<document>``."""
    return f'"{job.id}":{job_text(job)}'


def shard_text(entries: dict[int, str], seq: int) -> str:
    """A shard file's text from its entries by job id (see `shard_entry`), written by flush number ``seq``.

    Table ``flush`` (doc 1, ``{"seq": n}``) tells the load which journal files are older than the shard.
    """
    # tinydb_text's layout, from entries that carry their doc id already (a flush of a few
    # jobs joins the 1,000 entries of their shard: this is most of its serialising).
    jobs = ",".join([entries[job_id] for job_id in sorted(entries)])
    return f'{{"jobs":{{{jobs}}},"flush":{{"1":{{"seq":{seq}}}}}}}'


def journal_bytes(entries: list[str]) -> bytes:
    """A journal file's content: the TinyDB document ``{"jobs": {...}}`` of ``entries``, gzipped."""
    # Job documents of one flush share most of their text: gzip level 1 makes them ~10x smaller, for
    # ~0.2 ms per 100 jobs. ``zcat journal-N.json.gz | jq`` reads one.
    return gzip.compress(('{"jobs":{' + ",".join(entries) + "}}").encode("utf-8"), compresslevel=1, mtime=0)


def shard_seq(data: dict[str, Any]) -> int:
    """The flush number recorded in a parsed shard file (0 for shards written before journals existed)."""
    try:
        return int(data["flush"]["1"]["seq"])
    except (KeyError, TypeError, ValueError):
        return 0


def job_from_document(document: dict[str, Any]) -> Job:
    """The Job of a parsed job document (which it reuses)."""
    # Job.from_dict copies the dict and looks the status up through the enum: this is the hot loop of a
    # load, and the parsed document is ours to reuse.
    document["status"] = _STATUSES[document["status"]]
    return Job(**document)


def workflow_body(workflow: Workflow) -> tuple[str, str]:
    """A workflow's index document without its definition, job lists, counts and ``updated_at`` (which
    changes with every job status change and is rebuilt from the jobs on load), and its ``updated_at``.

    A finished workflow's steps keep their ``counts`` and their job ids as ``job_ranges`` (runs of
    consecutive ids, ``[first, last]``): a load then needs none of its jobs (see archive.py).
    """
    document = workflow.to_dict()
    del document["definition"]
    updated_at = document.pop("updated_at")
    finished = workflow.finished
    for step in document["steps"]:
        job_ids = step.pop("job_ids", None)
        counts = step.pop("counts", None)
        if finished:
            step["counts"] = counts
            step["job_ranges"] = id_ranges(job_ids or [])
    return dumps(document), updated_at


def id_ranges(ids: list[int]) -> list[list[int]]:
    """Runs of consecutive ids, in order: ``[1, 2, 3, 7]`` -> ``[[1, 3], [7, 7]]``."""
    ranges: list[list[int]] = []
    for job_id in ids:
        if ranges and job_id == ranges[-1][1] + 1:
            ranges[-1][1] = job_id
        else:
            ranges.append([job_id, job_id])
    return ranges


def ids_of_ranges(ranges: list[list[int]]) -> list[int]:
    """The ids of `id_ranges`' runs."""
    return [job_id for first, last in ranges for job_id in range(first, last + 1)]


def workflow_text(body: str, updated_at: str) -> str:
    """A workflow's index document from `workflow_body`'s two parts."""
    return f'{body[:-1]},"updated_at":{dumps(updated_at)}}}'
