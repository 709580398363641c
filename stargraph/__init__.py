"""StarGraph: a GraphQL backend for text-to-image products."""

__version__ = "0.1.0"
