"""The container worker: reads the tables' streams itself, one ordered loop per owned shard."""
