"""The OpenAPI description of StepFlow's routes (`stepflow_routes`) and of ``GET /metrics``, merged into the
service's document (`openapi.openapi_document`)."""

from __future__ import annotations

from typing import Any

_OBJECT = {"type": "object"}
_ERROR = {"description": "StepFlow's error: {\"errors\": [{\"reason\", \"message\"}]}", "content": {
    "application/json": {"schema": {"type": "object", "properties": {"errors": {"type": "array", "items": {
        "type": "object", "properties": {"reason": {"type": "string"}, "message": {"type": "string"}}}}}}}}}
#: Components of the document's ``parameters`` (keys prefixed ``step_flow_``), referenced by the paths below.
STEPFLOW_PARAMETERS: dict[str, dict[str, Any]] = {
    "step_flow_id": {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
    "step_flow_identifier": {"name": "identifier", "in": "path", "required": True, "schema": {"type": "string"}},
    **{f"step_flow_{name.removesuffix('[]')}": {"name": name, "in": "query", "required": False,
                                                 "schema": {"type": "string"}} for name in (
        "page", "size", "mode", "search", "versions[]", "identifier_query", "version_major", "version_minor",
        "version_micro", "before_date", "after_date", "states[]", "ids[]", "workflow_ids[]", "start_date",
        "end_date", "time_interval", "identifiers[]", "workflow_id", "job_type", "step_id")},
}
STEPFLOW_PARAMETERS["step_flow_identifier_query"]["name"] = "identifier"


def _query(*names: str) -> list[dict[str, Any]]:
    return [{"$ref": f"#/components/parameters/step_flow_{name}"} for name in names]


_PAGE = _query("page", "size")
_ID = _query("id")


def _op(summary: str, status: str = "200", parameters: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None, errors: tuple[str, ...] = ("401", "422")) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary, "tags": ["StepFlow"],
        "responses": {status: {"description": summary, "content": {"application/json": {"schema": _OBJECT}}},
                      **{code: _ERROR for code in errors}}}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


_LAUNCH = {"type": "object", "required": ["workflow_identifier"], "properties": {
    "workflow_identifier": {"type": "string"}, "parameters": {"type": "object"}, "reference": {"type": "string"}}}
_EVENT = {"type": "object", "required": ["event"], "properties": {
    "event": {"type": "string", "enum": ["abort", "stop", "retry", "delete", "pause", "resume"]},
    "job_id": {"type": "integer"}}}

STEPFLOW_PATHS: dict[str, dict[str, Any]] = {
    "/api/step_flow/definitions": {
        "get": _op("StepFlow: workflow definitions", parameters=_PAGE + _query("mode", "search", "versions")),
        "post": _op("StepFlow: add a workflow definition (kept across restarts)", "201", body=_OBJECT)},
    "/api/step_flow/definitions/{identifier}": {"get": _op("StepFlow: one definition with its steps", parameters=_query(
        "identifier"))},
    "/api/step_flow/workflows": {
        "get": _op("StepFlow: workflows, newest first", parameters=_PAGE + _query(
            "identifier_query", "version_major", "version_minor", "version_micro", "before_date", "after_date",
            "states", "ids", "workflow_ids")),
        "post": _op("StepFlow: launch a workflow", "201", body=_LAUNCH, errors=("401", "422", "503"))},
    "/api/step_flow/launch_workflow": {"post": _op("StepFlow: launch a workflow", "201", body=_LAUNCH,
                                                   errors=("401", "422", "503"))},
    "/api/step_flow/workflows/{id}": {
        "get": _op("StepFlow: a workflow with its jobs and their status history", parameters=_ID,
                   errors=("401", "404", "422")),
        "put": _op("StepFlow: refused, as StepFlow refuses it", parameters=_ID, errors=("401", "403")),
        "delete": {**_op("StepFlow: delete a workflow", parameters=_ID),
                   "responses": {"204": {"description": "deleted"},
                                 **{code: _ERROR for code in ("401", "404", "409", "422", "503")}}}},
    "/api/step_flow/workflows/{id}/events": {"post": _op("StepFlow: abort, stop, retry (job_id), delete, pause, "
                                                         "resume", parameters=_ID, body=_EVENT,
                                                         errors=("401", "403", "404", "409", "422", "503"))},
    "/api/step_flow/workflows_statistics": {"get": _op("StepFlow: workflow statistics in time bins", parameters=_query(
        "start_date", "end_date", "time_interval", "identifiers"))},
    "/api/step_flow/worker_definitions": {"get": _op("StepFlow: the workers that announced themselves",
                                                     parameters=_PAGE)},
    "/api/step_flow/jobs": {"get": _op("StepFlow: jobs, newest first", parameters=_PAGE + _query(
        "workflow_id", "job_type", "step_id"))},
    **{path: {"get": {"summary": "Prometheus metrics (text exposition format)", "responses": {
        "200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
        "401": _ERROR}}} for path in ("/metrics", "/api/step_flow/metrics")},
}
