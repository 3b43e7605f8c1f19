"""A SIM moving into a company takes the company's rules, and drops those of the company it
left (R-RU1): called by the commands that set a SIM's company."""

from __future__ import annotations

from simledger.application.unit_of_work import UnitOfWork
from simledger.domain import sim_rules
from simledger.domain.company_rules import CompanyRules, company_rules_id
from simledger.domain.sim import Sim


def follow_company(uow: UnitOfWork, sim: Sim, previous: str | None) -> None:
    """Change ``sim``'s rules after its company changed from ``previous``: the rules it had
    from that company are detached (a pause one made is lifted), the new company's attached
    (its events: the caller saves the SIM)."""
    if sim.company == previous or sim.company is None:
        return
    if previous is not None:
        for name, rule in list(sim.rules.items()):
            if rule.get("scope") == f"company:{previous}":
                sim_rules.detach(sim, name)
    shared = uow.get(company_rules_id(sim.company), CompanyRules)
    if shared is not None:
        for name, rule in shared.rules.items():
            sim_rules.attach(sim, name, rule, f"company:{sim.company}")
