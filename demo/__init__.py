"""`make demo`: local DynamoDB and OpenSearch-compatible servers, a sample table, live sync."""
