"""Where records and items come in: Lambda events, DynamoDB Streams shards, item reads."""
