"""Customer servers: placement, lifecycle jobs on the hypervisor, and reconciliation."""
