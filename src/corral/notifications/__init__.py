"""Outgoing email: messages queued in the caller's transaction, rendered from templates and sent
over SMTP by the ``notifications.send_email`` job. Use ``service.mailer`` and ``service.absolute_url``."""
