"""Expected refusals of the OS template operations, each with a stable ``code``."""

from __future__ import annotations

from corral.kit.errors import Conflict, NotFound, ValidationFailed


class TemplateNotFound(NotFound):
    code = "template_not_found"
    default_message = "That OS template does not exist."


class TemplateSlugTaken(Conflict):
    code = "template_slug_taken"
    default_message = "Another OS template already uses that slug."


class TemplateInUse(Conflict):
    code = "template_in_use"
    default_message = "Servers were installed from this template: deactivate it instead of deleting it."


class TemplateAlreadyOnNode(Conflict):
    code = "template_already_on_node"
    default_message = "This template is already listed on that node."


class TemplateNotOnNode(NotFound):
    code = "template_not_on_node"
    default_message = "This template is not listed on that node."


class UnknownNode(ValidationFailed):
    code = "unknown_node"
    default_message = "That node does not exist."
