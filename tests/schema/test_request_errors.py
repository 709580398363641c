"""Errors in the request itself carry a code, limits included; caches are in effect.

These run the schema in process: none of them reaches a resolver.
"""

from __future__ import annotations

import pytest
from graphql import GraphQLError, parse

from stargraph.schema.build import SchemaOptions, StarGraphSchema, ValidationCache, build_schema

SCHEMA = build_schema(SchemaOptions(max_depth=4, max_aliases=3, max_tokens=60))
CLOSED = build_schema(SchemaOptions(introspection=False))
SUBMIT = "mutation($i: Text2ImageInput!) { submitText2Image(input: $i) { id } }"


async def _codes(
    query: str, variables: dict[str, object] | None = None, schema: StarGraphSchema = SCHEMA
) -> tuple[list[str | None], list[GraphQLError]]:
    result = await schema.execute(query, variable_values=variables)
    assert result.errors, "expected the request to be refused"
    return [(e.extensions or {}).get("code") for e in result.errors], result.errors


@pytest.mark.parametrize(
    "query",
    [
        "{ jobs { edges { node { images { job { id } } } } } }",  # depth 6 > 4
        "{ a: models b: models c: models d: models }",  # 4 aliases > 3
        "{ " + " ".join(f"f{i}: models" for i in range(40)) + " }",  # > 60 tokens
    ],
    ids=["depth", "aliases", "tokens"],
)
async def test_limits_answer_query_too_complex(query: str) -> None:
    for _ in range(2):  # the second time from the caches
        codes, _ = await _codes(query)
        assert codes == ["QUERY_TOO_COMPLEX"]


async def test_syntax_and_validation_errors_have_codes() -> None:
    for _ in range(2):  # the second time from the caches
        assert (await _codes("{ models "))[0] == ["GRAPHQL_PARSE_FAILED"]
        assert (await _codes("{ nosuch }"))[0] == ["GRAPHQL_VALIDATION_FAILED"]


async def test_introspection_can_be_switched_off() -> None:
    codes, _ = await _codes("{ __schema { types { name } } }", schema=CLOSED)
    assert set(codes) == {"GRAPHQL_VALIDATION_FAILED"}
    assert (await SCHEMA.execute("{ __schema { queryType { name } } }")).errors is None


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"prompt": "x", "seed": -4}, "seed"),
        ({"prompt": "x", "count": "two"}, "count"),
        ({"prompt": "x", "seed": 2**53}, "seed"),
        ({}, "prompt"),
    ],
)
async def test_variables_of_the_wrong_type_are_bad_user_input(
    value: dict[str, object], field: str
) -> None:
    codes, errors = await _codes(SUBMIT, {"i": value})
    assert codes == ["BAD_USER_INPUT"]
    assert errors[0].extensions is not None
    assert errors[0].extensions["field"] == field


async def test_parsing_and_validation_are_cached() -> None:
    parse, validate = SCHEMA.caches.parse, SCHEMA.caches.validate
    query = "{ pricePerImage workflows { name } }"
    await SCHEMA.execute(query)
    parsed, validated = parse.cache_info().hits, validate.hits
    await SCHEMA.execute(query)
    assert parse.cache_info().hits == parsed + 1
    assert validate.hits == validated + 1


def test_validation_cache_keeps_each_document_apart_and_forgets_the_oldest() -> None:
    caches = build_schema(SchemaOptions(max_depth=4)).caches
    cache = ValidationCache(caches.rules, size=2)
    schema = SCHEMA._schema
    deep = parse("{ jobs { edges { node { images { job { id } } } } } }")
    fine = parse("{ pricePerImage }")
    same_text = parse("{ pricePerImage }")  # equal to `fine`, another object

    assert [e.message for e in cache(schema, deep)] == [
        "'anonymous' exceeds maximum operation depth of 4"
    ]
    assert cache(schema, fine) == []
    assert cache.hits == 0
    assert cache(schema, deep)[0].message.endswith("depth of 4")  # a hit, still refused
    assert cache.hits == 1
    assert cache(schema, same_text) == []  # a miss: `fine`, the least recent, goes
    assert cache.hits == 1
    cache(schema, fine)
    assert cache.hits == 1
