"""Who may use the desk and the API, managed by admins over HTTP. Every change is an entry
in the ledger's chain (see :mod:`pipeline.users`); a token is shown once, when made."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from pydantic import AwareDatetime, BaseModel, Field

from pipeline.api.deps import Admin, Db, LedgerOf
from pipeline.ledger.storage.store import utc_text
from pipeline.logging import get_logger
from pipeline.users import (
    BadName,
    NoLongerValid,
    NotBorneOut,
    Role,
    UnknownUser,
    UserExists,
    add_user,
    revoke_user,
    rotate_user,
    users,
)

log = get_logger(__name__)
router = APIRouter(prefix="/users", tags=["admin"])
Name = Annotated[str, Path(max_length=100)]


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")
    role: Role
    expires_at: AwareDatetime | None = Field(default=None, description="when the token ends")
    schools: list[Annotated[str, Field(pattern=r"^[0-9]{6}$")]] = Field(
        default_factory=list, max_length=1000, description="URNs they may see; none: every school"
    )


class UserOut(BaseModel):
    name: str
    role: Role
    schools: list[str] | None = Field(default=None, description="None: every school")


class UserCreated(UserOut):
    token: str = Field(description="shown this once; only its hash is kept")


@router.get("", response_model=list[UserOut])
def list_users(user: Admin, db: Db) -> list[dict[str, Any]]:
    return [{"name": u.name, "role": u.role, "schools": u.scope} for u in users(db)]


@router.post("", response_model=UserCreated, status_code=201)
def create_user(body: NewUser, user: Admin, ledger: LedgerOf) -> dict[str, Any]:
    expires = utc_text(body.expires_at) if body.expires_at else None
    try:
        token = add_user(
            ledger, body.name, body.role, by=user.name, expires_at=expires, schools=body.schools
        )
    except BadName as exc:
        raise HTTPException(422, str(exc)) from None
    except UserExists as exc:
        raise HTTPException(409, str(exc)) from None
    log.info("user_added", user=body.name, role=body.role.value, by=user.name)
    return {"name": body.name, "role": body.role, "schools": body.schools or None, "token": token}


@router.post("/{name}/revoke", status_code=204)
def revoke(name: Name, user: Admin, ledger: LedgerOf) -> None:
    """End a user's token and desk sessions now."""
    try:
        revoke_user(ledger, name, by=user.name)
    except UnknownUser as exc:
        raise HTTPException(404, str(exc)) from None
    log.info("user_revoked", user=name, by=user.name)


@router.post("/{name}/rotate", response_model=UserCreated)
def rotate(name: Name, user: Admin, ledger: LedgerOf) -> dict[str, Any]:
    """A new token for the user; the old one and its sessions stop working."""
    try:
        token = rotate_user(ledger, name, by=user.name)
    except UnknownUser as exc:
        raise HTTPException(404, str(exc)) from None
    except (NoLongerValid, NotBorneOut) as exc:
        raise HTTPException(409, str(exc)) from None
    log.info("user_rotated", user=name, by=user.name)
    with ledger.engine.connect() as connection:
        found = next(u for u in users(connection) if u.name == name)
    return {"name": name, "role": found.role, "schools": found.scope, "token": token}
