"""The ways cdcsync runs: the CLI, the container worker, the Lambda handler. Thin by design."""
