"""The executor the schema runs operations with: graphql-core's, with a sub-field memo that
holds across the events of a subscription, and a short path for selections of plain values.

graphql-core memoizes a selection's collected sub-fields on the identity of the field list it
is given, but it collects a subscription's root fields anew for every event. So for each
event the memo misses, the sub-fields are collected again, and the new entry stays in the
memo (shared by every event's executor) for as long as the subscription lasts: about 1.5 KB
and a fresh field collection per event delivered. Keyed on the document's field nodes, which
live as long as the operation, the memo hits from the second event on and stays small.

A selection made only of scalars and enums that Strawberry reads straight off the object
(no resolver, no arguments, no field extension) and `__typename` is planned once per
operation and then filled in one loop per event: `{step maxSteps status …}` of a
subscription event costs a dict, not a resolve-info, a resolver call and a completion per
field. Anything the plan does not expect (a null where none is allowed, a value that does
not coerce, middleware) goes the ordinary way, which reports the error as usual.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLLeafType, GraphQLObjectType, is_leaf_type, is_non_null_type
from graphql.execution import MiddlewareManager
from graphql.execution.collect_fields import CollectedFields, FieldDetailsList, GroupedFieldSet
from graphql.pyutils import AwaitableOrValue, Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

# (response name, resolver or None for __typename, leaf type or the type name, non-null)
_PlainField = tuple[str, Any, "GraphQLLeafType | str", bool]
_BASIC_RESOLVER = "_get_basic_result"  # Strawberry's resolver of a field with none of its own


class StreamExecutor(StrawberryGraphQLCoreExecutionContext):
    """Collects each selection's sub-fields once per operation, not once per event."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Shared by the per-event copies (shallow), like graphql-core's own memo.
        self._subfields_by_nodes: dict[tuple[object, ...], CollectedFields] = {}
        # Keyed on the id of a grouped field set the memo above keeps alive.
        self._plain_plans: dict[int, tuple[_PlainField, ...]] = {}

    def collect_subfields(
        self, return_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> CollectedFields:
        if any(d.defer_usage is not None or d.fragment_variable_values is not None
               for d in field_details_list):  # fmt: skip
            return super().collect_subfields(return_type, field_details_list)
        # The nodes belong to the operation's document, alive as long as this executor.
        key = (return_type, *(id(d.node) for d in field_details_list))
        collected = self._subfields_by_nodes.get(key)
        if collected is None:
            collected = super().collect_subfields(return_type, field_details_list)
            self._subfields_by_nodes[key] = collected
            plan = _plain_plan(return_type, collected)
            if plan is not None:
                self._plain_plans[id(collected.grouped_field_set)] = plan
        return collected

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        plan = self._plain_plans.get(id(grouped_field_set))
        if plan is not None and not _has_middleware(self.middleware_manager):
            data = _fill(plan, source_value)
            if data is not None:
                return data
        return super().execute_fields(
            parent_type, source_value, path, grouped_field_set, position_context
        )


def _has_middleware(manager: MiddlewareManager | None) -> bool:
    return manager is not None and bool(manager.middlewares)


def _plain_plan(
    parent_type: GraphQLObjectType, collected: CollectedFields
) -> tuple[_PlainField, ...] | None:
    """The plan of a selection of plain values only; None for any other selection."""
    if collected.new_defer_usages or collected.forbidden_directive_instances:
        return None
    plan: list[_PlainField] = []
    for name, details in collected.grouped_field_set.items():
        node = details[0].node
        field_name = node.name.value
        if field_name == "__typename":
            plan.append((name, None, parent_type.name, True))
            continue
        field = parent_type.fields.get(field_name)
        if field is None or field.args or node.arguments or node.selection_set:
            return None
        definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        resolver = field.resolve
        if (getattr(resolver, "__name__", None) != _BASIC_RESOLVER
                or not getattr(definition, "is_basic_field", False)):  # fmt: skip
            return None
        non_null = is_non_null_type(field.type)
        leaf = field.type.of_type if non_null else field.type
        if not is_leaf_type(leaf):
            return None
        plan.append((name, resolver, leaf, non_null))
    return tuple(plan)


def _fill(plan: tuple[_PlainField, ...], source: Any) -> dict[str, Any] | None:
    """The selection's data, or None when a value needs the ordinary path (an error)."""
    data: dict[str, Any] = {}
    try:
        for name, resolver, leaf, non_null in plan:
            if resolver is None:
                data[name] = leaf  # __typename
                continue
            value = resolver(source)  # a basic resolver reads the attribute, info unused
            if value is None:
                if non_null:
                    return None
                data[name] = None
                continue
            if isinstance(value, Exception) or hasattr(value, "__await__"):
                return None
            coerced = leaf.coerce_output_value(value)  # type: ignore[union-attr]
            if coerced is None or coerced is Undefined:
                return None
            data[name] = coerced
    except Exception:  # the ordinary path reads it again and reports the error
        return None
    return data
