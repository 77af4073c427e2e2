"""Operations: health, readiness, metrics and the `corral doctor` checks."""
