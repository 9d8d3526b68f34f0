"""The OpenAPI 3 description of the API, served at ``GET /api/openapi.json`` (kept beside the routes: a test
checks that every route of the application is described and every described path is routed)."""

from __future__ import annotations

from typing import Any

import stepflow_tui

from .stepflow_openapi import STEPFLOW_PARAMETERS, STEPFLOW_PATHS

_ERROR = {"$ref": "#/components/responses/Error"}
_OBJECT = {"type": "object"}


def _ok(description: str, schema: dict[str, Any] | None = None, status: str = "200") -> dict[str, Any]:
    return {status: {"description": description,
                     "content": {"application/json": {"schema": schema or _OBJECT}}}}


def _op(summary: str, ok: dict[str, Any], *, params: list[str] = (), body: dict[str, Any] | None = None,
        errors: tuple[str, ...] = ("400", "401", "404")) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {**ok, **{e: _ERROR for e in errors}}}
    if params:
        operation["parameters"] = [{"$ref": f"#/components/parameters/{p}"} for p in params]
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


def _list(ref: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": ref}},
                                             "total": {"type": "integer"}}}


def _query(name: str, kind: str = "integer") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind}}


def _path(name: str, kind: str = "integer") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


_COMMAND = ("400", "401", "403", "404", "409", "413")
_WF = ["workflow_id"]

PATHS: dict[str, dict[str, Any]] = {
    "/api/health": {"get": _op("Service health, version, broker (masked) and connection", _ok("health"),
                               errors=("401",))},
    "/api/openapi.json": {"get": _op("This document", _ok("OpenAPI 3 document"), errors=("401",))},
    "/api/definitions": {"get": _op("Workflow definitions", _ok("definitions", _list("#/components/schemas/"
                                                                                     "Definition")))},
    "/api/definitions/{identifier}": {"get": _op("One definition", _ok("definition"), params=["identifier"])},
    "/api/workflows": {
        "get": _op("Workflows, newest first, paged and filtered", _ok("a page", _list("#/components/schemas/"
                                                                                     "Workflow")),
                   params=["workflow_status", "identifier_query", "offset", "limit"]),
        "post": _op("Start a workflow", _ok("started", {"type": "object", "properties": {"id": {
            "type": "integer"}}}, status="201"), body={"type": "object", "required": ["identifier"], "properties": {
                "identifier": {"type": "string"}, "parameters": {"type": "object"}}}, errors=_COMMAND)},
    "/api/workflows/{workflow_id}": {
        "get": _op("One workflow with its steps", _ok("workflow", {"$ref": "#/components/schemas/Workflow"}),
                   params=_WF),
        "delete": _op("Delete a finished workflow", _ok("deleted"), params=_WF, errors=_COMMAND)},
    "/api/workflows/{workflow_id}/steps/{step_id}/jobs": {"get": _op(
        "A page of a step's jobs (Backend.jobs)", _ok("jobs", _list("#/components/schemas/Job")),
        params=[*_WF, "step_id", "offset", "limit", "job_status", "after", "before"])},
    "/api/workflows/{workflow_id}/retry": {"post": _op(
        "Retry the failed jobs of a workflow (of one step with step_id)", _ok("count", {
            "type": "object", "properties": {"retried": {"type": "integer"}}}), params=_WF,
        body={"type": "object", "properties": {"step_id": {"type": "integer"}}}, errors=_COMMAND)},
    **{f"/api/workflows/{{workflow_id}}/{action}": {"post": _op(f"{action.capitalize()} a workflow",
                                                                _ok("new status"), params=_WF, errors=_COMMAND)}
       for action in ("abort", "pause", "resume")},
    "/api/workflows/{workflow_id}/steps/{step_id}/stats": {"get": _op(
        "How long a step's finished jobs took: min, median, p95, max, throughput, slowest jobs",
        _ok("statistics"), params=[*_WF, "step_id"])},
    "/api/search/jobs": {"get": _op("Jobs by id or parameter value (Backend.find_jobs)",
                                    _ok("jobs", _list("#/components/schemas/Job")), params=["search_text", "limit"],
                                    errors=("400", "401"))},
    "/api/jobs/{job_id}": {"get": _op("A job's full record", _ok("job"), params=["job_id"])},
    "/api/jobs/{job_id}/retry": {"post": _op("Retry a job in error or stopped", _ok("retried"),
                                             params=["job_id"], errors=_COMMAND)},
    "/api/jobs/{job_id}/cancel": {"post": _op("Cancel a queued or running job", _ok("cancelled"),
                                              params=["job_id"], errors=_COMMAND)},
    "/api/workers": {"get": _op("Workers seen", _ok("workers", _list("#/components/schemas/Worker")))},
    "/api/queues": {"get": _op("Queue states", _ok("queues"))},
    "/api/dead-letters": {"get": _op("The first dead letters (peeked)", _ok("dead letters"),
                                     params=["limit"], errors=("400", "401", "503"))},
    "/api/dead-letters/redrive": {"post": _op("Send dead letters back to their queues", _ok("counts"), body={
        "type": "object", "properties": {"queue": {"type": "string"}, "dry_run": {"type": "boolean"}}},
        errors=_COMMAND)},
    "/api/prune": {"post": _op("Delete finished workflows older than an age", _ok("pruned"), body={
        "type": "object", "required": ["older_than"], "properties": {
            "older_than": {"type": "string", "example": "30d"}, "dry_run": {"type": "boolean"}}},
        errors=_COMMAND)},
    "/api/events": {"get": {"summary": "Server-sent events: `event: update`, data an Update; heartbeats",
                            "responses": {"200": {"description": "an event stream",
                                                  "content": {"text/event-stream": {"schema": {
                                                      "$ref": "#/components/schemas/Update"}}}},
                                          "401": _ERROR}}},
    "/api/sessions": {"post": _op("Media Cloud AI login: the password is an API token", _ok("access token"),
                                  body={"type": "object", "properties": {"session": {"type": "object"}}},
                                  errors=("400", "401"))},
    "/api/step_flow": {"get": _op("What this backend is (Media Cloud AI)", _ok("info"), errors=("401",))},
    "/api/step_flow/blacklist": {"get": _op("Job ids whose orders must not run", _ok("ids", {
        "type": "object", "properties": {"data": {"type": "array", "items": {"type": "integer"}},
                                         "total": {"type": "integer"}}}), errors=("401",))},
    "/api/credentials/{key}": {"get": _op("A credential (full token only)", _ok("credential"),
                                          params=["key"], errors=("400", "401", "403", "404"))},
}

COMPONENTS: dict[str, Any] = {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    "responses": {"Error": {"description": "an error", "content": {"application/json": {"schema": {
        "type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["status", "message"], "properties": {
                "status": {"type": "integer"}, "message": {"type": "string"}, "field": {"type": "string"}}}}}}}}},
    "parameters": {
        "workflow_id": _path("workflow_id"), "step_id": _path("step_id"), "job_id": _path("job_id"),
        "identifier": _path("identifier", "string"), "key": _path("key", "string"),
        "offset": _query("offset"), "limit": _query("limit"), "after": _query("after"), "before": _query("before"),
        "job_status": _query("status", "string"), "workflow_status": _query("status", "string"),
        "identifier_query": _query("identifier", "string"), "search_text": _query("text", "string")},
    "schemas": {
        "Definition": _OBJECT,
        "Workflow": {"type": "object", "properties": {k: {} for k in (
            "id", "identifier", "label", "version", "status", "paused", "parameters", "counts", "steps",
            "created_at", "updated_at", "finished_at")}},
        "Job": {"type": "object", "properties": {k: {} for k in (
            "id", "workflow_id", "step_id", "job_type", "status", "progress", "error")}},
        "Worker": {"type": "object", "properties": {k: {} for k in (
            "instance_id", "label", "job_types", "activity", "current_jobs", "hostname", "pid", "version",
            "last_seen", "lost")}},
        "Update": {"type": "object", "properties": {k: {} for k in (
            "workflow_ids", "job_ids", "queues", "workers", "connection", "messages")}},
    },
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0 document of the API."""
    return {"openapi": "3.0.3",
            "info": {"title": "stepflow-tui backend API", "version": stepflow_tui.__version__,
                     "description": "See docs/service.md."},
            "servers": [{"url": "/"}], "security": [{"bearer": []}, {}],
            "paths": {**PATHS, **STEPFLOW_PATHS},
            "components": {**COMPONENTS, "parameters": {**COMPONENTS["parameters"], **STEPFLOW_PARAMETERS}}}
