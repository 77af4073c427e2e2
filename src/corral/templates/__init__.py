"""OS templates: the images servers are installed from, and which nodes hold each one.

Not to be confused with ``corral/web/templates`` (the Jinja pages).
"""
