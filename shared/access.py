"""Who may do what: the three roles, what each permits, and a caller's role from the groups it belongs to.

Reading (schedules, runs, the system crons, the audit trail) needs a role, any role; each change needs the
permission its action names. The roles are cumulative: an operator may do what a viewer may, an admin what an
operator may.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from shared.settings import Settings


class Role(StrEnum):
    """A caller's role, from the least to the most it permits."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


class Permission(StrEnum):
    """An action that needs more than reading."""

    VIEW = "view"  # read schedules, runs, the system crons and the audit trail
    RUN_NOW = "runNow"
    TOGGLE = "toggle"  # enable and disable (pause and resume) schedules
    BACKFILL = "backfill"
    CREATE = "create"
    EDIT = "edit"  # change any field of a schedule but whether it is enabled
    DELETE = "delete"
    MANAGE_TOKENS = "manageTokens"


ROLES = tuple(Role)
GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.VIEW}),
    Role.OPERATOR: frozenset({Permission.VIEW, Permission.RUN_NOW, Permission.TOGGLE, Permission.BACKFILL}),
    Role.ADMIN: frozenset(Permission),
}


def permits(role: Role | None, permission: Permission) -> bool:
    """Whether ``role`` (None: no role) may do ``permission``."""
    return role is not None and permission in GRANTS[role]


def least_role(permission: Permission) -> Role:
    """The least role that may do ``permission``."""
    return next(role for role in ROLES if permission in GRANTS[role])


def group_names(text: str) -> set[str]:
    """The groups of a comma-separated list (a setting, or oauth2-proxy's groups header), spaces trimmed."""
    return {name.strip() for name in text.split(",") if name.strip()}


def role_of_groups(settings: Settings, groups: Iterable[str]) -> Role | None:
    """The most a member of ``groups`` may be, by ``AUTH_ADMIN_GROUPS``, ``AUTH_OPERATOR_GROUPS`` and
    ``AUTH_VIEWER_GROUPS``; in none of them, ``AUTH_DEFAULT_ROLE`` (None for ``none``)."""
    member_of = set(groups)
    for role, configured in (
        (Role.ADMIN, settings.auth_admin_groups),
        (Role.OPERATOR, settings.auth_operator_groups),
        (Role.VIEWER, settings.auth_viewer_groups),
    ):
        if member_of & group_names(configured):
            return role
    return None if settings.auth_default_role == "none" else Role(settings.auth_default_role)
