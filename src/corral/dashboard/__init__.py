"""The customer's home: their servers at a glance and quick actions."""
