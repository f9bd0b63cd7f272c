"""Service managers (launch, health, prepare, stop) and the built-in simulator service."""
