"""The PostgreSQL journal many workers share: the store, its schema and migrations, the shared create rate and the progress."""
