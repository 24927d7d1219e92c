"""Writing actions to OpenSearch: bulk bodies, per-item outcomes."""
