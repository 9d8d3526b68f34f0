"""What the end-to-end tests of issue 13's step features share (memory:// in tests/test_stepflow_run.py,
RabbitMQ in tests/rabbitmq/test_raw_stepflow.py): the secrets, a local webhook receiver and our own
StepFlow-style definition using every feature."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ENCODER_KEY = "s3cr3t-encoder-key-7f1e"
BUCKET_SECRET = "bucket-secret-9a2c-from-env"
SECRETS = (ENCODER_KEY, BUCKET_SECRET)
SEGMENTS = [{"start": 0, "end": 99}, {"start": 100, "end": 199}, {"start": 200, "end": 249}]


class WebhookServer:
    """A local HTTP receiver of webhook calls: records every POST (``received``: path, body, content type) and
    answers with ``answer(path)``, after ``hang`` seconds."""

    def __init__(self, answer: Callable[[str], int], hang: float = 0.0) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                received.append({"path": self.path, "body": body, "type": self.headers.get("Content-Type")})
                time.sleep(hang)
                self.send_response(answer(self.path))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Hooks(WebhookServer):
    """A local webhook receiver: records every request; answers 500 on paths starting with /broken."""

    def __init__(self) -> None:
        super().__init__(lambda path: 500 if path.startswith("/broken") else 200)

    def bodies(self, path: str) -> list[Any]:
        """The JSON bodies received on ``path``."""
        return [json.loads(r["body"]) for r in self.received if r["path"] == path]

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


def segment_workflow(hook_url: str) -> dict[str, Any]:
    """Our own StepFlow-style definition (the shape of the public examples, not a copy of one)."""
    return {
        "schema_version": "1.8", "identifier": "segment_demo", "label": "Scene-based encode", "icon": "movie",
        "version_major": 1, "version_minor": 0, "version_micro": 0, "tags": ["demo"], "reference": "demo-ref",
        "parameters": [{"id": "media_segments", "type": "array_of_media_segments"}],
        "notification_hooks": [
            {"label": "ops", "endpoint": f"{hook_url}/hook", "conditions": {"workflow_completed": True,
                                                                          "job_error": True}},
            {"label": "broken", "endpoint": f"{hook_url}/broken", "conditions": {"workflow_completed": True}},
        ],
        "start_parameters": [{"id": "source_path", "label": "Source", "type": "file", "required": True},
                             {"id": "threshold", "label": "Threshold", "type": "number", "default": 2}],
        "steps": [
            {"id": 0, "name": "job_scene_detect", "label": "Detect scenes", "icon": "content_cut",
             "parameters": [{"id": "source_paths", "type": "array_of_templates", "value": ["{source_path}"]}]},
            {"id": 1, "name": "job_segment_encode", "label": "Encode segments", "parent_ids": [0],
             "multiple_jobs": "media_segments", "work_dir": "/work",
             "parameters": [
                 {"id": "duration", "type": "template", "value": "<%= sdk_stop_index - sdk_start_index + 1 %>"},
                 {"id": "output", "type": "template", "value": "{name}_<%= sdk_start_index %>{extension}"},
                 {"id": "api_key", "type": "credential", "value": "ENCODER_KEY"},
                 {"id": "bucket_secret", "type": "string", "store": "ENV", "value": "BUCKET_SECRET"}]},
            {"id": 2, "name": "job_thumbnail", "label": "Thumbnails", "parent_ids": [0],
             "condition": "threshold > 5"},
            {"id": 3, "name": "job_qc", "label": "Quality check", "parent_ids": [1], "allow_failure": True},
            {"id": 4, "name": "job_package", "label": "Package", "parent_ids": [1], "required_to_start": [1, 3],
             "mode": "one_for_many"},
            {"id": 5, "name": "notify_done", "label": "Tell the MAM", "mode": "notification", "parent_ids": [4],
             "parameters": [
                 {"id": "url", "type": "template", "value": f"{hook_url}/step/{{workflow_id}}"},
                 {"id": "body", "type": "template",
                  "value": '{{"workflow": {workflow_id}, "reference": "{workflow_reference}"}}'}]},
        ],
    }
