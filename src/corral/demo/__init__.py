"""Demo mode: a panel that runs with no configuration, with data to click through."""
