"""What creates cost: prices and their cache, the budget ledger, a session's spending and a batch's estimate."""
