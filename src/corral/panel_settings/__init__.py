"""Panel-wide settings staff change at run time: the customer 2FA requirement, server limits."""
