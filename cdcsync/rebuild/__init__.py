"""``cdcsync rebuild``: a new physical index behind the alias, filled with zero downtime."""
