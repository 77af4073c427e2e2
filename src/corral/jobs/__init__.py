"""Background jobs on procrastinate: deferring in the caller's transaction, workers, job logs."""
