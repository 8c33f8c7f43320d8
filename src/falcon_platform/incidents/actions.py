"""Postmortem action items: the template's four categories, an owner, a due date, a status.

Pure model and rules here; the store below is the SQL shell (table ``action_items``)::

    item = new_action(number=3, incident="INC-2026-11-30-001", category="Prevent",
                      description="Lower the soft limit", owner="@sre", due="2026-12-15", now=t)
    item = advance(item, ActionStatus.DONE, now=t2)
    overdue([item], today="2026-12-20")       # [] once DONE
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, func, insert, select, update

from falcon_platform.errors import InvalidInputError, NotFoundError
from falcon_platform.incidents.model import InvalidTransitionError, check_incident_id
from falcon_platform.stores.schema import action_items

ACTION_ID = re.compile(r"^AI-(\d+)$")


class Category(StrEnum):
    PREVENT = "Prevent"
    DETECT = "Detect"
    RESPOND = "Respond"
    LONG_TERM = "Long-term"


class ActionStatus(StrEnum):
    TODO = "TODO"
    IN_PROGRESS = "IN PROGRESS"
    DONE = "DONE"


ACTION_TRANSITIONS: dict[ActionStatus, frozenset[ActionStatus]] = {
    ActionStatus.TODO: frozenset({ActionStatus.IN_PROGRESS, ActionStatus.DONE}),
    ActionStatus.IN_PROGRESS: frozenset({ActionStatus.DONE, ActionStatus.TODO}),
    ActionStatus.DONE: frozenset(),
}


@dataclass(frozen=True, slots=True)
class ActionItem:
    id: str
    incident: str
    category: Category
    description: str
    owner: str
    due: str  # YYYY-MM-DD
    status: ActionStatus
    created_at: float
    updated_at: float
    link: str | None = None
    suggested: bool = False  # proposed by Falcon, accepted by a human with `falcon actions add`

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["category"] = self.category.value
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActionItem:
        d = dict(data)
        d["category"] = Category(d["category"])
        d["status"] = ActionStatus(d["status"])
        return cls(**d)


def parse_category(text: str) -> Category:
    for c in Category:
        if c.value.lower() == text.strip().lower().replace("_", "-"):
            return c
    raise InvalidInputError(
        f"category {text!r}: use one of {', '.join(c.value for c in Category)} "
        "(the postmortem template's four)"
    )


def parse_due(text: str) -> str:
    try:
        return date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise InvalidInputError(f"due date {text!r}: use YYYY-MM-DD, e.g. 2026-12-15") from None


def new_action(
    *,
    number: int,
    incident: str,
    category: str,
    description: str,
    owner: str,
    due: str,
    now: float,
    link: str | None = None,
    suggested: bool = False,
) -> ActionItem:
    check_incident_id(incident)
    if not description.strip():
        raise InvalidInputError("an action item needs a description")
    if not owner.strip():
        raise InvalidInputError("an action item needs an owner (--owner @name)")
    return ActionItem(
        id=f"AI-{number}",
        incident=incident,
        category=parse_category(category),
        description=description.strip(),
        owner=owner.strip(),
        due=parse_due(due),
        status=ActionStatus.TODO,
        created_at=now,
        updated_at=now,
        link=link,
        suggested=suggested,
    )


def advance(item: ActionItem, to: ActionStatus, *, now: float) -> ActionItem:
    if to not in ACTION_TRANSITIONS[item.status]:
        raise InvalidTransitionError(
            f"{item.id} is {item.status.value}; it cannot become {to.value}"
        )
    return replace(item, status=to, updated_at=now)


def is_overdue(item: ActionItem, today: str) -> bool:
    """Past its due date and not done (``today``: YYYY-MM-DD, UTC)."""
    return item.status is not ActionStatus.DONE and item.due < today


def overdue(items: Iterable[ActionItem], today: str) -> list[ActionItem]:
    return [i for i in items if is_overdue(i, today)]


def check_action_id(text: str) -> str:
    if not ACTION_ID.match(text):
        raise InvalidInputError(f"{text!r} is not an action item id; they look like AI-3")
    return text


class SqlActionStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def next_number(self) -> int:
        with self._engine.connect() as conn:
            top = conn.execute(select(func.max(action_items.c.number))).scalar()
        return int(top or 0) + 1

    def save(self, item: ActionItem) -> ActionItem:
        values = {
            "incident": item.incident,
            "status": item.status.value,
            "due": item.due,
            "updated_at": item.updated_at,
            "data": item.to_dict(),
        }
        with self._engine.begin() as conn:
            done = conn.execute(
                update(action_items).where(action_items.c.id == item.id).values(**values)
            )
            if done.rowcount == 0:
                number = int(item.id.split("-")[1])
                conn.execute(insert(action_items).values(id=item.id, number=number, **values))
        return item

    def get(self, item_id: str) -> ActionItem:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(action_items.c.data).where(action_items.c.id == item_id)
            ).first()
        if row is None:
            raise NotFoundError(f"no action item {item_id}; `falcon actions list` shows them")
        return ActionItem.from_dict(dict(row[0]))

    def find(self, *, incident: str | None = None) -> list[ActionItem]:
        stmt = select(action_items.c.data).order_by(action_items.c.number)
        if incident is not None:
            stmt = stmt.where(action_items.c.incident == incident)
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [ActionItem.from_dict(dict(r[0])) for r in rows]


def rows_for(items: Sequence[ActionItem]) -> list[dict[str, Any]]:
    return [i.to_dict() for i in items]
