"""The SQLite journal: its file (lock, schema, batched writes) and what makes a file one of ours."""
