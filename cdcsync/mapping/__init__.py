"""Mapping files: YAML models, the loader with file:line errors, and filter patterns."""
