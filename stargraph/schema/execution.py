"""The executor the schema runs operations with: graphql-core's, with a sub-field memo that
holds across the events of a subscription.

graphql-core memoizes a selection's collected sub-fields on the identity of the field list it
is given, but it collects a subscription's root fields anew for every event. So for each
event the memo misses, the sub-fields are collected again, and the new entry stays in the
memo (shared by every event's executor) for as long as the subscription lasts: about 1.5 KB
and a fresh field collection per event delivered. Keyed on the document's field nodes, which
live as long as the operation, the memo hits from the second event on and stays small.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLObjectType
from graphql.execution.collect_fields import CollectedFields, FieldDetailsList
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class StreamExecutor(StrawberryGraphQLCoreExecutionContext):
    """Collects each selection's sub-fields once per operation, not once per event."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Shared by the per-event copies (shallow), like graphql-core's own memo.
        self._subfields_by_nodes: dict[tuple[object, ...], CollectedFields] = {}

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
        return collected
