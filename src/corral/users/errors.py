from __future__ import annotations

from corral.kit.errors import Conflict


class EmailTaken(Conflict):
    code = "email_taken"
    default_message = "An account with that email already exists."
