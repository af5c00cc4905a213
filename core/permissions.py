"""Roles and named permissions: the single place access rules are declared and checked.

Each module declares its permissions with the roles that hold them (least privilege: a role gets
only what its work needs). Views use `require(...)`, templates use `can(...)`, operations that
run outside a request use `has_permission(user, ...)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import lazy_gettext as _l

# The built-in roles (codes are seeded by migration 0001; names shown through i18n).
ROLES = {
    "admin": _l("System administrator"),
    "receptionist": _l("Receptionist"),
    "doctor": _l("Doctor"),
    "nurse": _l("Nurse"),
    "lab_technician": _l("Laboratory technician"),
    "lab_physician": _l("Laboratory physician"),
    "radiographer": _l("Radiographer"),
    "radiologist": _l("Radiologist"),
    "pharmacist": _l("Pharmacist"),
    "cashier": _l("Cashier"),
    "insurance_officer": _l("Insurance officer"),
    "integration": _l("Integration (machine account)"),
}


@dataclass(frozen=True)
class Permission:
    code: str
    label: object  # a lazy string
    roles: frozenset[str]
    module: str


_REGISTRY: dict[str, Permission] = {}


def declare(code: str, label, roles, module: str) -> Permission:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"permission {code} names unknown roles {sorted(unknown)}")
    perm = Permission(code, label, frozenset(roles), module)
    existing = _REGISTRY.get(code)
    if existing is not None and existing != perm:
        raise ValueError(f"permission {code} declared twice with different grants")
    _REGISTRY[code] = perm
    return perm


def all_permissions() -> list[Permission]:
    return sorted(_REGISTRY.values(), key=lambda p: (p.module, p.code))


def permissions_of(role_codes) -> set[str]:
    roles = set(role_codes)
    return {p.code for p in _REGISTRY.values() if p.roles & roles}


def has_permission(user, code: str) -> bool:
    if code not in _REGISTRY:
        raise KeyError(f"undeclared permission {code!r}")
    if user is None or not user.is_active:
        return False
    return bool(_REGISTRY[code].roles & user.role_codes)


# The platform's own permissions.
declare("admin.users", _l("Manage users, roles and API tokens"), ["admin"], "core")
declare("admin.audit", _l("View the audit log"), ["admin"], "core")
declare("admin.jobs", _l("View and retry background jobs"), ["admin"], "core")
declare("api.access", _l("Use the JSON API"), list(ROLES), "core")
