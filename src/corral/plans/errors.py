"""Expected refusals of the plan operations, each with a stable ``code``."""

from __future__ import annotations

from corral.kit.errors import Conflict, NotFound, ValidationFailed


class PlanNotFound(NotFound):
    code = "plan_not_found"
    default_message = "That plan does not exist."


class PlanSlugTaken(Conflict):
    code = "plan_slug_taken"
    default_message = "Another plan already uses that slug."


class PlanInUse(Conflict):
    code = "plan_in_use"
    default_message = "Servers were ordered on this plan: deactivate it instead of deleting it."


class UnknownPlanLocation(ValidationFailed):
    code = "unknown_location"
    default_message = "One of the chosen locations does not exist."


class PlanNotOffered(ValidationFailed):
    """Ordering refused: the plan is missing or inactive, or not offered at that (active) location."""

    code = "plan_not_offered"
    default_message = "That plan is not offered in that location."
