"""Small shared building blocks: errors, request context, actors, logging, clock."""
