"""Signing in and out, sessions, CSRF, API tokens and the checks every route goes through."""
