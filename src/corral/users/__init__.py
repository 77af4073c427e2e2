"""Accounts: creating and finding users. Sign-in, sessions and roles build on this."""
