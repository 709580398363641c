"""Every GraphQL document the web client sends is valid against the committed schema.

The documents live in `stargraph/web/queries.js` as JavaScript template strings that may embed
earlier constants (`${JOB_FIELDS}`); they are read here without a JavaScript engine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from graphql import build_schema, parse, validate

REPO = Path(__file__).resolve().parents[2]
QUERIES = REPO / "stargraph" / "web" / "queries.js"
CONSTANT = re.compile(r'^(export )?const (\w+) =\s*(`[^`]*`|"[^"]*");', re.MULTILINE)


def _documents() -> dict[str, str]:
    """The exported documents by name, with `${NAME}` filled from the constants above them."""
    known: dict[str, str] = {}
    exported: dict[str, str] = {}
    for match in CONSTANT.finditer(QUERIES.read_text()):
        exported_, name, literal = match.groups()
        text = re.sub(r"\$\{(\w+)\}", lambda m: known[m.group(1)], literal[1:-1])
        known[name] = text
        if exported_:
            exported[name] = text
    return exported


DOCUMENTS = _documents()


def test_the_client_has_its_documents() -> None:
    assert {"SUBMIT", "CANCEL", "GALLERY", "MY_JOB_EVENTS", "BOOTSTRAP"} <= set(DOCUMENTS)


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_document_is_valid_against_the_schema(name: str) -> None:
    schema = build_schema((REPO / "schema.graphql").read_text())
    errors = validate(schema, parse(DOCUMENTS[name]))
    assert not errors, [e.message for e in errors]
