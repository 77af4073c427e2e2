"""Staff work on accounts: find users, block and unblock, approve sign-ups, change roles.

``views.router`` serves the HTML pages under ``/admin``; ``api.router`` the same operations as JSON
under ``/api/v1/admin``. Both call ``service.admin_users``.
"""
