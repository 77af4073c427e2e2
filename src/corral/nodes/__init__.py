"""Hypervisor nodes: where servers run, how to reach them, and whether they are healthy."""
