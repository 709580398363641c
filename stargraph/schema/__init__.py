"""The GraphQL skin over the domain. Import `build_schema` from `stargraph.schema.build`."""
