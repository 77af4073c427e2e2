"""OS templates: the catalogue, which nodes hold each image, and what customers may pick.

A template is offered on a node only when it is active, its image was found on that node by the
last check (``NodeTemplate.present``) and the node is online: "a template that is missing on a
node is not offered there". A template newly listed on a node counts as missing until a check has
found it; listing one runs that check at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from corral.audit import Target, audit
from corral.auth.errors import MissingPermission
from corral.auth.principal import Principal
from corral.models.nodes import NodeTemplate, OsTemplate
from corral.nodes import health
from corral.nodes import repository as nodes_repository
from corral.rbac.permissions import Permission
from corral.templates import repository
from corral.templates.errors import (
    TemplateAlreadyOnNode,
    TemplateInUse,
    TemplateNotFound,
    TemplateNotOnNode,
    TemplateSlugTaken,
    UnknownNode,
)
from corral.templates.schemas import (
    NodeTemplateCreate,
    OsTemplateCreate,
    OsTemplateUpdate,
    TemplateDetail,
    TemplateRow,
    default_image_ref,
)

# Knowing which images exist is part of reading the fleet.
READ = Permission.NODES_READ
MANAGE = Permission.TEMPLATES_MANAGE


def _need(principal: Principal, permission: Permission) -> None:
    if not principal.can(permission):
        raise MissingPermission()


def _target(template_id: int) -> Target:
    return Target(type="os_template", id=template_id)


class TemplateService:
    async def list(self, session: AsyncSession, principal: Principal) -> Sequence[TemplateRow]:
        _need(principal, READ)
        return [
            TemplateRow(template=template, nodes_present=present, nodes_listed=listed)
            for template, present, listed in await repository.list_with_counts(session)
        ]

    async def get(self, session: AsyncSession, principal: Principal, template_id: int) -> OsTemplate:
        _need(principal, READ)
        template = await repository.get(session, template_id)
        if template is None:
            raise TemplateNotFound()
        return template

    async def detail(self, session: AsyncSession, principal: Principal, template_id: int) -> TemplateDetail:
        template = await self.get(session, principal, template_id)
        return TemplateDetail(
            template=template, links=list(await repository.links_with_nodes(session, template_id))
        )

    async def create(self, session: AsyncSession, principal: Principal, data: OsTemplateCreate) -> OsTemplate:
        _need(principal, MANAGE)
        if await repository.get_by_slug(session, data.slug) is not None:
            raise TemplateSlugTaken()
        template = OsTemplate(**data.model_dump())
        try:
            async with session.begin_nested():
                await repository.add(session, template)
        except IntegrityError as error:
            raise TemplateSlugTaken() from error
        await audit.record(
            session,
            principal.actor,
            "os_template.create",
            target=_target(template.id),
            payload=data.model_dump(),
        )
        return template

    async def update(
        self, session: AsyncSession, principal: Principal, template_id: int, data: OsTemplateUpdate
    ) -> OsTemplate:
        _need(principal, MANAGE)
        template = await repository.get(session, template_id, for_update=True)
        if template is None:
            raise TemplateNotFound()
        changes = {key: value for key, value in data.changes().items() if getattr(template, key) != value}
        if not changes:
            return template
        before = {key: getattr(template, key) for key in changes}
        for key, value in changes.items():
            setattr(template, key, value)
        await session.flush()
        await audit.record(
            session,
            principal.actor,
            "os_template.update",
            target=_target(template.id),
            payload={"before": before, "after": changes},
        )
        return template

    async def delete(self, session: AsyncSession, principal: Principal, template_id: int) -> None:
        _need(principal, MANAGE)
        template = await repository.get(session, template_id, for_update=True)
        if template is None:
            raise TemplateNotFound()
        if await repository.is_used(session, template_id):
            raise TemplateInUse()
        payload = {"slug": template.slug, "name": template.name}
        try:
            async with session.begin_nested():
                await repository.delete(session, template)
        except IntegrityError as error:
            raise TemplateInUse() from error
        await audit.record(
            session, principal.actor, "os_template.delete", target=_target(template_id), payload=payload
        )

    async def add_to_node(
        self, session: AsyncSession, principal: Principal, template_id: int, data: NodeTemplateCreate
    ) -> NodeTemplate:
        """List the template's image on a node, then check the node for it straight away."""
        _need(principal, MANAGE)
        template = await self.get(session, principal, template_id)
        node = await nodes_repository.get(session, data.node_id)
        if node is None:
            raise UnknownNode()
        if await repository.get_link(session, node.id, template.id) is not None:
            raise TemplateAlreadyOnNode()
        link = NodeTemplate(
            node_id=node.id,
            template_id=template.id,
            image_ref=data.image_ref or default_image_ref(template.slug),
            # Missing until a check finds it: never offered on the strength of a typo.
            present=False,
        )
        try:
            async with session.begin_nested():
                await repository.add_link(session, link)
        except IntegrityError as error:
            raise TemplateAlreadyOnNode() from error
        # Slow work (asking the node) before the audit record, which holds the chain's lock.
        await health.check(session, node.id, principal.actor)
        await session.refresh(link)
        await audit.record(
            session,
            principal.actor,
            "os_template.node.add",
            target=_target(template.id),
            payload={
                "node_id": node.id,
                "node": node.name,
                "image_ref": link.image_ref,
                "present": link.present,
            },
        )
        return link

    async def remove_from_node(
        self, session: AsyncSession, principal: Principal, template_id: int, node_id: int
    ) -> None:
        """Stop offering the template on the node (the image on the node is left alone)."""
        _need(principal, MANAGE)
        link = await repository.get_link(session, node_id, template_id)
        if link is None:
            raise TemplateNotOnNode()
        payload = {"node_id": node_id, "image_ref": link.image_ref}
        await repository.delete_link(session, link)
        await audit.record(
            session, principal.actor, "os_template.node.remove", target=_target(template_id), payload=payload
        )

    # --- the offering rule (no principal: the order flow and the customer pages ask this) -------

    async def offered_on(self, session: AsyncSession, node_id: int) -> Sequence[OsTemplate]:
        """Active templates whose image is present on ``node_id``; none if the node is not online."""
        return await repository.offered_on(session, node_id)

    async def offered_in_location(self, session: AsyncSession, location_id: int) -> Sequence[OsTemplate]:
        """Active templates present on at least one online node of the (active) location."""
        return await repository.offered_in_location(session, location_id)


templates = TemplateService()
