"""Workflow definitions (StepFlow's format, schema versions 1.8–1.13, plus a few fields of ours).

`load_definitions(path)` reads a workflows.json and returns validated `WorkflowDefinition`s; any problem raises
`DefinitionError`, whose message names the file, the workflow and the field. The package: `model` (data
classes, errors), `loading` (files → definitions), `parameters`, `steps`, `schema` (workflow.schema.json,
checked with jsonschema), `start` (start parameter values). docs/definitions.md describes the format.
"""

from stepflow_tui.core.definitions.loading import (
    definition_from_dict,
    load_definitions,
    merge_definitions,
    parse_definitions,
)
from stepflow_tui.core.definitions.model import (
    ONE_FOR_MANY,
    ONE_FOR_ONE,
    START_PARAMETER_TYPES,
    DefinitionError,
    StartParameter,
    StartParameterError,
    StepDefinition,
    WorkflowDefinition,
)
from stepflow_tui.core.definitions.parameters import PARAMETER_TYPES, TEMPLATE_TYPES
from stepflow_tui.core.definitions.start import resolve_start_parameters

__all__ = [
    "ONE_FOR_MANY", "ONE_FOR_ONE", "PARAMETER_TYPES", "START_PARAMETER_TYPES", "TEMPLATE_TYPES",
    "DefinitionError", "StartParameter", "StartParameterError", "StepDefinition", "WorkflowDefinition",
    "definition_from_dict", "load_definitions", "merge_definitions", "parse_definitions",
    "resolve_start_parameters",
]
