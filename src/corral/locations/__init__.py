"""Locations: the data centres or regions servers run in, and customers choose from."""
