"""``cdcsync verify``: prove the index matches the table, and repair it when it does not.

``compare`` is pure (expected documents, JSON comparison, the set of expected documents),
``run`` reads DynamoDB and OpenSearch, ``report`` tells the operator.
"""
