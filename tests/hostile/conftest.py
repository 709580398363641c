"""Known gaps that the hostile-input tests found and that are not fixed yet.

Each stays a real test: marked xfail with the reason, strict where the outcome is
deterministic, so a fix turns it into a failure here until the mark is removed.
"""

from __future__ import annotations

import pytest

_STORED_TEXT = (
    "tests/hostile/test_stored_text.py::test_text_a_database_would_refuse_is_refused_first"
)
_SHAPES = "tests/hostile/test_request_shapes.py::test_json_that_is_not_an_operation_is_a_400"

KNOWN_GAPS: dict[str, tuple[str, bool]] = {
    **{
        f"{_SHAPES}[{case}]": ("a JSON body that is not an object crashes the view (500)", True)
        for case in ("null", "5", '"{ me { id } }"', "true")
    },
    "tests/hostile/test_fuzz_variables.py::test_hostile_variables_and_bodies": (
        "generated hostile variables still reach unchecked paths (see the cases above)",
        False,
    ),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        gap = KNOWN_GAPS.get(item.nodeid)
        if gap is not None:
            reason, strict = gap
            item.add_marker(pytest.mark.xfail(reason=f"known gap: {reason}", strict=strict))
