"""The bodies of the commands (pydantic: the OpenAPI document shows them). Values are only
shaped here; the ledger checks them against its rules (R-IN1..4 and the rest) and refuses
with the rule id."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from simledger.domain.types import SimType

TEXT_MAX = 10_000


def answer(model: BaseModel) -> Response:
    """``model`` serialised once, by pydantic, for a route whose ``response_model`` is its
    class (the hot paths: FastAPI would check the model it was just given against itself,
    then serialise it through a dict)."""
    return Response(model.model_dump_json(), media_type="application/json")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Empty(Body):
    pass


class ReceiveSims(Body):
    iccids: list[str] = Field(max_length=100_000)
    operator: str = Field(max_length=TEXT_MAX)
    sim_type: SimType
    esim: bool = False
    order_id: UUID | None = None


class IntegrationCheck(Body):
    ok: bool
    reason: str | None = Field(default=None, max_length=TEXT_MAX)


class Reason(Body):
    reason: str = Field(max_length=TEXT_MAX)


class Line(Body):
    msisdn: str = Field(max_length=TEXT_MAX)


class Company(Body):
    company: str = Field(max_length=TEXT_MAX)


class Customer(Body):
    company: str = Field(max_length=TEXT_MAX)
    service_id: UUID


class AssignPackage(Body):
    package_id: UUID
    at: datetime | None = None


class Cause(Body):
    cause: str = Field(max_length=TEXT_MAX)


class TopUp(Body):
    amount: Decimal = Field(max_digits=40)


class Labels(Body):
    labels: list[str] = Field(max_length=1000)


class Note(Body):
    note: str | None = Field(default=None, max_length=TEXT_MAX)


class EndUser(Body):
    email: str | None = Field(default=None, max_length=TEXT_MAX)


class BulkRequest(Body):
    kind: Literal["pause", "resume"]
    iccids: list[str] = Field(max_length=100_000)


class NewPackage(Body):
    name: str = Field(max_length=TEXT_MAX)
    data_mb: Decimal = Field(max_digits=40)
    validity_days: int = Field(ge=-(2**62), le=2**62)
    auto_renew: bool = False
    price: Decimal | None = Field(default=None, max_digits=40)


class NewSharedGroup(Body):
    name: str = Field(max_length=TEXT_MAX)
    iccids: list[str] = Field(max_length=100_000)
    package_id: UUID
    notify_users: bool = False


class Member(Body):
    iccid: str = Field(max_length=TEXT_MAX)


class Created(BaseModel):
    id: UUID


class Received(BaseModel):
    iccids: list[str]


class Done(BaseModel):
    ok: bool = True
