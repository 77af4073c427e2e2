"""Roles and permissions: deny by default, every route declares what it needs."""
