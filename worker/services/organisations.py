"""Organisations and their members: who may pay, and where the balance lives."""

from __future__ import annotations

from db.models import Member, Organisation
from worker.deps import Deps
from worker.domain.errors import OrderRejected

ROLES = ("admin", "operator")


def create_organisation(org_id: str, name: str, region: str, *, deps: Deps, plan: str = "payg") -> Organisation:
    if region not in deps.regions:
        raise OrderRejected("region_not_supported", f"unknown region {region!r}; known: {sorted(deps.regions)}")
    with deps.sessions.begin() as session:
        organisation = Organisation(id=org_id, name=name, region=region, plan=plan, credit_balance=0,
                                    created_at=deps.clock.now())
        session.add(organisation)
    return organisation


def add_member(member_id: str, org_id: str, email: str, role: str, *, deps: Deps) -> Member:
    if role not in ROLES:
        raise OrderRejected("invalid_role", f"role must be one of {ROLES}")
    with deps.sessions.begin() as session:
        member = Member(id=member_id, organisation_id=org_id, email=email, role=role)
        session.add(member)
    return member


def balance(org_id: str, *, deps: Deps) -> int:
    with deps.sessions() as session:
        return session.get(Organisation, org_id).credit_balance
