"""cdcsync: DynamoDB Streams to OpenSearch, idempotent and versioned, driven by YAML mapping files."""

__version__ = "0.1.0"
