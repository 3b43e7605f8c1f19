"""The rules a company's SIMs share (R-RU1): a SIM that joins the company later takes
them, one that leaves it drops them. The SIMs hold their own copies (domain/sim_rules.py);
this aggregate is the list a SIM joining the company copies from."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

from simledger.domain.base import CreatedEvent, DomainEvent, LedgerAggregate

COMPANY_RULES_NAMESPACE = UUID("7d2f9c3e-5a1b-5e6f-8c4d-2b9a1e7f3c50")
"""The namespace of the ids (uuid5 of the company's name). Never change it."""


def company_rules_id(company: str) -> str:
    return str(uuid5(COMPANY_RULES_NAMESPACE, company))


class CompanyRules(LedgerAggregate):
    class Event(DomainEvent):
        pass

    class Created(CreatedEvent, Event):
        company: str

        def apply(self, rules: CompanyRules) -> None:
            rules.company = self.company

    class RuleSet(Event):
        name: str
        kind: str
        limit: Decimal | None
        percent: int | None
        of: str | None

        def apply(self, rules: CompanyRules) -> None:
            rule = {"kind": self.kind, "limit": self.limit, "percent": self.percent, "of": self.of}
            rules.rules = {**rules.rules, self.name: rule}

    class RuleRemoved(Event):
        name: str

        def apply(self, rules: CompanyRules) -> None:
            rules.rules = {k: v for k, v in rules.rules.items() if k != self.name}

    def __init__(self) -> None:
        self.company: str = ""
        self.rules: dict[str, dict[str, Any]] = {}

    @classmethod
    def open(cls, company: str) -> CompanyRules:
        return cls.start(cls.Created, id=company_rules_id(company), company=company)

    def set(self, name: str, rule: dict[str, Any]) -> None:
        self.trigger_event(
            self.RuleSet,
            name=name,
            kind=rule["kind"],
            limit=rule.get("limit"),
            percent=rule.get("percent"),
            of=rule.get("of"),
        )

    def remove(self, name: str) -> None:
        if name in self.rules:
            self.trigger_event(self.RuleRemoved, name=name)
