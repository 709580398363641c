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
field. When a subscription's one root field selects such a plan on the event's type, the
whole event is answered that way: Strawberry's subscription field hands the event itself to
the selection, and the event's Strawberry type names its GraphQL type. Anything the plans do
not expect (a null where none is allowed, a value that does not coerce, a cast object,
middleware, hooks, an abort signal) goes the ordinary way, which reports errors as usual.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    ExecutionResult,
    GraphQLLeafType,
    GraphQLObjectType,
    OperationType,
    is_abstract_type,
    is_leaf_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution import MiddlewareManager
from graphql.execution.collect_fields import (
    CollectedFields,
    FieldDetailsList,
    GroupedFieldSet,
    collect_fields,
)
from graphql.pyutils import AwaitableOrValue, Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.base import get_object_definition
from strawberry.types.cast import get_strawberry_type_cast

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
        self._events: _EventRoot | None = None  # a subscription's root, once looked at
        self._seen_root = False

    def build_per_event_executor(self, payload: Any) -> Any:
        """An event answered by plans when they cover it, else graphql-core's executor."""
        root = self._event_root()
        if root is not None:
            result = root.answer(self, payload)
            if result is not None:
                return _Answered(result)
        return super().build_per_event_executor(payload)

    def _event_root(self) -> _EventRoot | None:
        if not self._seen_root:  # once per operation: the per-event copies share the memo
            self._seen_root = True
            self._events = _EventRoot.of(self)
        return self._events

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


class _Answered:
    """Stands in for a per-event executor whose answer is already made."""

    def __init__(self, result: ExecutionResult) -> None:
        self._result = result

    def execute_operation(self, serially: bool | None = None) -> ExecutionResult:
        return self._result


class _EventRoot:
    """A subscription's single root field, made by Strawberry, whose value is the event."""

    def __init__(self, name: str, details: FieldDetailsList, return_type: Any) -> None:
        self._name = name
        self._details = details
        self._return_type = return_type
        self._types: dict[type, GraphQLObjectType | None] = {}  # event class → its type

    @classmethod
    def of(cls, executor: StreamExecutor) -> _EventRoot | None:
        root_type = executor.schema.subscription_type
        if (executor.operation.operation != OperationType.SUBSCRIPTION or root_type is None
                or executor.abort_signal is not None or executor.hooks is not None
                or _has_middleware(executor.middleware_manager)):  # fmt: skip
            return None
        collected = collect_fields(executor.schema, executor.fragments,
                                   executor.variable_values, root_type, executor.operation,
                                   executor.hide_suggestions)  # fmt: skip
        if (len(collected.grouped_field_set) != 1 or collected.new_defer_usages
                or collected.forbidden_directive_instances):  # fmt: skip
            return None
        ((name, details),) = collected.grouped_field_set.items()
        field = root_type.fields.get(details[0].node.name.value)
        definition = None if field is None else (field.extensions or {}).get(_BACKREF)
        if field is None or not getattr(definition, "is_subscription", False):
            return None  # only Strawberry's subscription fields resolve to the event itself
        return_type = field.type.of_type if is_non_null_type(field.type) else field.type
        return cls(name, details, return_type)

    def answer(self, executor: StreamExecutor, event: Any) -> ExecutionResult | None:
        """The event's result, or None when it needs the ordinary path."""
        if event is None or get_strawberry_type_cast(event) is not None:
            return None
        kind = type(event)
        if kind not in self._types:
            self._types[kind] = self._type_of(executor, kind)
        object_type = self._types[kind]
        if object_type is None:
            return None
        collected = executor.collect_subfields(object_type, self._details)
        plan = executor._plain_plans.get(id(collected.grouped_field_set))
        data = None if plan is None else _fill(plan, event)
        return None if data is None else ExecutionResult({self._name: data}, None)

    def _type_of(self, executor: StreamExecutor, kind: type) -> GraphQLObjectType | None:
        """The GraphQL object type of a Strawberry class, when the field may return it."""
        definition = get_object_definition(kind)
        if definition is None or definition.is_graphql_generic or definition.is_interface:
            return None
        found = executor.schema.get_type(definition.name)
        if not is_object_type(found):
            return None
        if is_abstract_type(self._return_type):
            return found if executor.schema.is_sub_type(self._return_type, found) else None
        return found if found is self._return_type else None


_BACKREF = GraphQLCoreConverter.DEFINITION_BACKREF


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
        definition = (field.extensions or {}).get(_BACKREF)
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
