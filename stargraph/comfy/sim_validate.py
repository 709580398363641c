"""Prompt validation of the ComfyUI simulator, with the real server's error shapes (§1.1).

`validate_prompt` returns the output nodes to run and the `node_errors` of the others, raises
`PromptRejected` (HTTP 400) when no output can run, and `BrokenPrompt` (HTTP 500) for bodies the
real server chokes on. Values are coerced in place, as ComfyUI does ("4" → 4 for an INT).
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stargraph.comfy.sim_nodes import is_output

Reasons = list[dict[str, Any]]
_CONVERTERS = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


class BrokenPrompt(Exception):
    """A body ComfyUI fails on with a 500 (a prompt that is not an object, a node that is not)."""


class PromptRejected(Exception):
    """Validation failed: the 400 body's `error` and `node_errors`."""

    def __init__(self, error: dict[str, Any], node_errors: dict[str, Any] | None = None) -> None:
        super().__init__(error["message"])
        self.error = error
        self.node_errors = node_errors or {}


@dataclass(frozen=True, slots=True)
class Validation:
    outputs: list[str]
    node_errors: dict[str, Any]


def _error(kind: str, message: str, details: str = "") -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def validate_prompt(
    prompt: Any, info: Mapping[str, Any], targets: list[str] | None = None
) -> Validation:
    """Check a prompt against node definitions `info`; the prompt's values are coerced."""
    outputs = _output_nodes(prompt, info, targets)
    return _Validator(prompt, info).run(outputs)


def _output_nodes(prompt: Any, info: Mapping[str, Any], targets: list[str] | None) -> list[str]:
    if not isinstance(prompt, dict):
        raise BrokenPrompt("prompt is not an object")
    outputs = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict):
            raise BrokenPrompt(f"node {node_id} is not an object")
        where = f"Node ID '#{node_id}'"
        if "class_type" not in node:
            message = "Cannot execute because a node is missing the class_type property."
            raise PromptRejected(_error("invalid_prompt", message, where))
        class_type = node["class_type"]
        if class_type not in info:
            message = f"Cannot execute because node {class_type} does not exist."
            raise PromptRejected(_error("invalid_prompt", message, where))
        if is_output(info, class_type) and (targets is None or node_id in targets):
            outputs.append(node_id)
    if not outputs:
        raise PromptRejected(_error("prompt_no_outputs", "Prompt has no outputs"))
    return outputs


class _Validator:
    def __init__(self, prompt: dict[str, Any], info: Mapping[str, Any]) -> None:
        self.prompt = prompt
        self.info = info
        self.validated: dict[str, tuple[bool, Reasons]] = {}

    def run(self, outputs: list[str]) -> Validation:
        good: list[str] = []
        failures: list[tuple[str, Reasons]] = []
        node_errors: dict[str, Any] = {}
        for output in outputs:
            valid, reasons = self._validate_output(output)
            if valid:
                good.append(output)
                continue
            if reasons:
                failures.append((output, reasons))
            self._file_errors(output, node_errors)
        if not good:
            details = "\n".join(f"{r['message']}: {r['details']}" for _, rs in failures for r in rs)
            error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation")
            raise PromptRejected({**error, "details": details}, node_errors)
        return Validation(good, node_errors)

    def _validate_output(self, output: str) -> tuple[bool, Reasons]:
        try:
            return self.validate(output)
        except Exception as exc:  # the server catches everything here too
            reasons = [
                {
                    "type": "exception_during_validation",
                    "message": "Exception when validating node",
                    "details": str(exc),
                    "extra_info": {
                        "exception_type": type(exc).__name__,
                        "traceback": traceback.format_tb(exc.__traceback__),
                    },
                }
            ]
            self.validated[output] = (False, reasons)
            return False, reasons

    def _file_errors(self, output: str, node_errors: dict[str, Any]) -> None:
        # Like the server: every failed node validated so far is charged to this output.
        for node_id, (valid, reasons) in self.validated.items():
            if valid or not reasons:
                continue
            entry = node_errors.setdefault(
                node_id,
                {
                    "errors": reasons,
                    "dependent_outputs": [],
                    "class_type": self.prompt[node_id]["class_type"],
                },
            )
            entry["dependent_outputs"].append(output)

    def validate(self, node_id: str) -> tuple[bool, Reasons]:
        if node_id in self.validated:
            return self.validated[node_id]
        node = self.prompt[node_id]
        definition = self.info[node["class_type"]]["input"]
        inputs = node["inputs"]
        valid, errors = True, []
        for category in ("required", "optional"):
            for name, spec in definition.get(category, {}).items():
                config = [spec[0], spec[1] if len(spec) > 1 else {}]
                if name not in inputs:
                    if category == "required":
                        errors.append(_missing(name))
                    continue
                ok, reasons = self._check_input(inputs, name, config)
                valid = valid and ok
                errors.extend(reasons)
        result = (valid and not errors, errors)
        self.validated[node_id] = result
        return result

    def _check_input(
        self, inputs: dict[str, Any], name: str, config: list[Any]
    ) -> tuple[bool, Reasons]:
        value = inputs[name]
        if isinstance(value, dict) and "__value__" in value:
            value = inputs[name] = value["__value__"]
            return True, []
        if isinstance(value, list):
            return self._check_link(name, value, config)
        return _check_value(inputs, name, value, config)

    def _check_link(self, name: str, link: list[Any], config: list[Any]) -> tuple[bool, Reasons]:
        if len(link) != 2:
            return False, [_bad_link(name, config, link)]
        source, slot = link
        source_type = self.info[self.prompt[source]["class_type"]]["output"][slot]
        if not _types_match(source_type, config[0]):
            return False, [_mismatch(name, config, source_type, link)]
        try:
            valid, _ = self.validate(source)
        except Exception as exc:  # the server catches everything here too
            self.validated[source] = (False, [_inner_exception(name, config, link, exc)])
            return False, []
        return valid, []


def _types_match(received: str, wanted: Any) -> bool:
    if not isinstance(wanted, str) or "*" in (received, wanted):
        return True
    return bool(set(received.split(",")) & set(wanted.split(",")))


def _check_value(
    inputs: dict[str, Any], name: str, value: Any, config: list[Any]
) -> tuple[bool, Reasons]:
    kind, options = config
    if isinstance(kind, list):
        return _check_combo(name, value, kind, config)
    convert = _CONVERTERS.get(kind)
    if convert is None:
        return True, []
    try:
        value = inputs[name] = convert(value)
    except (TypeError, ValueError) as exc:
        return False, [_bad_type(name, value, config, exc)]
    if "min" in options and value < options["min"]:
        message = f"Value {value} smaller than min of {options['min']}"
        return False, [_range("value_smaller_than_min", message, name, value, config)]
    if "max" in options and value > options["max"]:
        message = f"Value {value} bigger than max of {options['max']}"
        return False, [_range("value_bigger_than_max", message, name, value, config)]
    return True, []


def _check_combo(
    name: str, value: Any, choices: list[Any], config: list[Any]
) -> tuple[bool, Reasons]:
    if value in choices:
        return True, []
    long_list = len(choices) > 20
    listed = f"(list of length {len(choices)})" if long_list else str(choices)
    reason = {
        "type": "value_not_in_list",
        "message": "Value not in list",
        "details": f"{name}: '{value}' not in {listed}",
        "extra_info": {
            "input_name": name,
            "input_config": None if long_list else config,
            "received_value": value,
        },
    }
    return False, [reason]


def _missing(name: str) -> dict[str, Any]:
    return {
        "type": "required_input_missing",
        "message": "Required input is missing",
        "details": name,
        "extra_info": {"input_name": name},
    }


def _bad_link(name: str, config: list[Any], link: list[Any]) -> dict[str, Any]:
    return {
        "type": "bad_linked_input",
        "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
        "details": name,
        "extra_info": {"input_name": name, "input_config": config, "received_value": link},
    }


def _mismatch(name: str, config: list[Any], received: str, link: list[Any]) -> dict[str, Any]:
    return {
        "type": "return_type_mismatch",
        "message": "Return type mismatch between linked nodes",
        "details": f"{name}, received_type({received}) mismatch input_type({config[0]})",
        "extra_info": {
            "input_name": name,
            "input_config": config,
            "received_type": received,
            "linked_node": link,
        },
    }


def _inner_exception(
    name: str, config: list[Any], link: list[Any], exc: Exception
) -> dict[str, Any]:
    return {
        "type": "exception_during_inner_validation",
        "message": "Exception when validating inner node",
        "details": str(exc),
        "extra_info": {
            "input_name": name,
            "input_config": config,
            "exception_message": str(exc),
            "exception_type": type(exc).__name__,
            "traceback": traceback.format_tb(exc.__traceback__),
            "linked_node": link,
        },
    }


def _bad_type(name: str, value: Any, config: list[Any], exc: Exception) -> dict[str, Any]:
    return {
        "type": "invalid_input_type",
        "message": f"Failed to convert an input value to a {config[0]} value",
        "details": f"{name}, {value}, {exc}",
        "extra_info": {
            "input_name": name,
            "input_config": config,
            "received_value": value,
            "exception_message": str(exc),
        },
    }


def _range(kind: str, message: str, name: str, value: Any, config: list[Any]) -> dict[str, Any]:
    return {
        "type": kind,
        "message": message,
        "details": name,
        "extra_info": {"input_name": name, "input_config": config, "received_value": value},
    }
