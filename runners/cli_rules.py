"""``simledger rules attach | detach``, ``prices``, ``inactivity``, ``auto-refill``,
``contracts`` and ``charges``: rules on SIMs, operator contracts, refills and the month's
PAYGO charges (docs/rules.md, R-RU1..5, R-PR1..3, R-PP1..2)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from simledger.domain.errors import InvalidInput
from simledger.runners import cli_output as fmt
from simledger.runners.cli_app import Format, Iccid, Options, Time, app, command, open_ledger
from simledger.runners.cli_app import parse_time as parse

rules = typer.Typer(help="rules on SIMs: monthly data cap, spend cap, alerts")
app.add_typer(rules, name="rules")

Target = Annotated[str | None, typer.Option(help="one SIM")]
Company = Annotated[str | None, typer.Option(help="every SIM of the company")]
Group = Annotated[str | None, typer.Option(metavar="GROUP_ID", help="every member")]


@command("attach", "attach a rule to a SIM, a company's SIMs or a group's members", group=rules)
def cmd_rules_attach(
    options: Options,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    kind: Annotated[str, typer.Option(help="data_cap, spend_cap or alert")],
    limit: Annotated[str | None, typer.Option(help="MB (data_cap) or money (spend_cap)")] = None,
    percent: Annotated[int | None, typer.Option(help="an alert's percentage")] = None,
    of: Annotated[str | None, typer.Option(help="data_cap, spend_cap or package")] = None,
    iccid: Target = None,
    company: Company = None,
    group: Group = None,
) -> int:
    with open_ledger(options) as ledger:
        keys = ledger.attach_rule(
            name,
            kind=kind,
            limit=limit,
            percent=percent,
            of=of,
            iccid=iccid,
            company=company,
            group_id=group,
        )
    sys.stdout.write(f"rule {name} attached to {len(keys)} SIM(s)\n")
    return 0


@command("detach", "detach a rule (a SIM it paused works again)", group=rules)
def cmd_rules_detach(
    options: Options,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    iccid: Target = None,
    company: Company = None,
    group: Group = None,
) -> int:
    with open_ledger(options) as ledger:
        keys = ledger.detach_rule(name, iccid=iccid, company=company, group_id=group)
    sys.stdout.write(f"rule {name} detached from {len(keys)} SIM(s)\n")
    return 0


@command("prices", "a new version of an operator's PAYGO price list")
def cmd_prices(
    options: Options,
    operator: Annotated[str, typer.Argument(metavar="OPERATOR")],
    default: Annotated[str, typer.Option(help="price per MB where no country's applies")],
    country: Annotated[
        list[str] | None, typer.Option(metavar="CC=PRICE", help="repeatable, e.g. FR=0.30")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", metavar="TIME", help="ISO 8601; default: now")
    ] = None,
) -> int:
    per_country: dict[str, str] = {}
    for pair in country or []:
        code, sep, price = pair.partition("=")
        if not sep:
            raise InvalidInput(f"--country takes CC=PRICE, not {pair!r}", rule="R-PR1")
        per_country[code] = price
    with open_ledger(options) as ledger:
        ledger.set_prices(
            operator,
            default_per_mb=default,
            per_country=per_country,
            effective_from=parse(start, "--from") if start else None,
        )
    return 0


@command("inactivity", "the contract's days without a refill before a prepaid SIM ends")
def cmd_inactivity(
    options: Options,
    operator: Annotated[str, typer.Argument(metavar="OPERATOR")],
    days: Annotated[int, typer.Argument(metavar="DAYS", help="0: never")],
) -> int:
    with open_ledger(options) as ledger:
        ledger.set_inactivity_period(operator, days or None)
    return 0


@command("auto-refill", "a prepaid SIM's auto-refill (MB added below a threshold)")
def cmd_auto_refill(
    options: Options,
    iccid: Iccid,
    amount: Annotated[str | None, typer.Option(help="MB added; leave out to switch off")] = None,
    threshold: Annotated[str, typer.Option(help="MB left below which it refills")] = "0",
) -> int:
    with open_ledger(options) as ledger:
        ledger.set_auto_refill(iccid, amount=amount, threshold=threshold)
    return 0


@command("contracts", "housekeeping: lift last month's rule pauses, end idle prepaid SIMs")
def cmd_contracts(options: Options, now: Time = None, form: Format = "table") -> int:
    with open_ledger(options) as ledger:
        result = ledger.run_contracts(parse(now, "--now") if now else None)
    if form == "json":
        sys.stdout.write(fmt.dumps(result.model_dump(mode="json"), indent=2) + "\n")
    else:
        sys.stdout.write(
            f"{len(result.lifted)} rule pause(s) lifted, "
            f"{len(result.deactivated)} SIM(s) deactivated\n"
        )
    return 0


@command("charges", "a company's PAYGO charges of a month, as CSV (the last line: total)")
def cmd_charges(
    options: Options,
    company: Annotated[str, typer.Argument(metavar="COMPANY")],
    month: Annotated[str, typer.Argument(metavar="YYYY-MM")],
) -> int:
    with open_ledger(options) as ledger:
        sys.stdout.write(ledger.export_charges_csv(company, month))
    return 0
