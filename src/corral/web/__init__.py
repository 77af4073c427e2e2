"""The HTML side: templates, static assets, rendering helpers, security middleware."""
