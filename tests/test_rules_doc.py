"""docs/rules.md documents every rule the code cites, and names what enforces each one;
docs/api.md describes every public name, and plans only what is not built.

The package's code cites rules by id (``R-SG3``): in the ``rule`` of its errors, in
docstrings and comments, as ranges (``R-PF1..4``). Every such id must have an entry in
docs/rules.md: a heading ``### R-XXn Title``, a meaning, and a bullet ``**Enforced by:**``
naming, in backticks, the error classes, commands and other code that enforce it, each of
which must exist in the package. An id no code cites may stay documented only if its entry
says it is enforced by ``nothing`` (a rule not built yet), and every error class is listed
under the rule it carries.

docs/api.md must name, in backticks, every name of ``simledger.__all__`` and every public
name SimLedger's own classes define; a call in its "Planned, not present" section must not
exist yet.

The package is read where it is installed (``simledger.__file__``), module by module, so
a new module or sub-package is scanned without changing this test.
"""

from __future__ import annotations

import importlib.util
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import simledger

RULES_DOC = Path(__file__).resolve().parents[1] / "docs" / "rules.md"
PACKAGE_ROOT = Path(simledger.__file__).resolve().parent

RULE_ID = re.compile(r"\bR-([A-Z]+)(\d+)(?:\.\.(\d+))?\b")
"""A rule id, or a range of them (``R-SG1..4``: R-SG1, R-SG2, R-SG3 and R-SG4)."""
HEADING = re.compile(r"^###\s+(R-[A-Z]+\d+)\b[ \t]*(.*)$", re.MULTILINE)
ENFORCED_BY = "- **Enforced by:**"
CODE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(\(\))?$")
NOT_ENFORCED = "nothing"
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def expand(text: str) -> set[str]:
    """Every rule id ``text`` cites, ranges expanded."""
    found: set[str] = set()
    for match in RULE_ID.finditer(text):
        area, first, last = match.group(1), int(match.group(2)), match.group(3)
        found.update(f"R-{area}{n}" for n in range(first, int(last or first) + 1))
    return found


def package_sources() -> dict[str, str]:
    """The source of every module of the installed package, by file (relative to it)."""
    names = ["simledger"] + [
        info.name for info in pkgutil.walk_packages(simledger.__path__, "simledger.")
    ]
    sources: dict[str, str] = {}
    for name in names:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        path = Path(spec.origin)
        sources[str(path.resolve().relative_to(PACKAGE_ROOT))] = path.read_text("utf-8")
    return sources


@dataclass(frozen=True)
class Entry:
    rule: str
    title: str
    meaning: str
    enforced_by: str

    def code_names(self) -> list[str]:
        """The backticked names of the ``Enforced by`` bullet that name code."""
        return [
            token
            for token in re.findall(r"`([^`]+)`", self.enforced_by)
            if CODE_NAME.match(token) or token.endswith(".py")
        ]


def parse(doc: str) -> list[Entry]:
    """The rule entries of ``doc``: each from its heading to the next heading."""
    entries = []
    headings = list(HEADING.finditer(doc))
    for heading in headings:
        rest = doc[heading.end() :]
        end = re.search(r"^#{1,3}\s", rest, re.MULTILINE)
        body = rest[: end.start()] if end else rest
        meaning, _, enforced = body.partition(ENFORCED_BY)
        entries.append(
            Entry(
                rule=heading.group(1),
                title=heading.group(2).strip(),
                meaning=" ".join(meaning.split()),
                enforced_by=" ".join(enforced.split()),
            )
        )
    return entries


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    found = package_sources()
    # A scan that found nothing would prove nothing.
    for layer in ("domain", "projections", "adapters", "application", "runners"):
        assert any(path.startswith(f"{layer}/") for path in found), layer
    return found


@pytest.fixture(scope="module")
def cited(sources: dict[str, str]) -> dict[str, list[str]]:
    """Rule id -> where the code cites it (``file:line``)."""
    where: dict[str, list[str]] = {}
    for path, text in sorted(sources.items()):
        for number, line in enumerate(text.splitlines(), 1):
            for rule in expand(line):
                where.setdefault(rule, []).append(f"{path}:{number}")
    assert where, "no rule id found in the package"
    return where


@pytest.fixture(scope="module")
def entries() -> dict[str, Entry]:
    parsed = parse(RULES_DOC.read_text("utf-8"))
    by_rule = {entry.rule: entry for entry in parsed}
    twice = sorted({e.rule for e in parsed if sum(x.rule == e.rule for x in parsed) > 1})
    assert not twice, f"docs/rules.md has more than one entry for {twice}"
    return by_rule


def test_every_rule_the_code_cites_is_documented(
    cited: dict[str, list[str]], entries: dict[str, Entry]
) -> None:
    missing = {rule: where for rule, where in cited.items() if rule not in entries}
    assert not missing, "rules cited in the code without an entry in docs/rules.md:\n" + (
        "\n".join(f"  {rule}: {', '.join(where[:5])}" for rule, where in sorted(missing.items()))
    )


def test_every_rule_the_doc_mentions_has_an_entry(entries: dict[str, Entry]) -> None:
    mentioned = expand(RULES_DOC.read_text("utf-8"))
    assert mentioned - set(entries) == set()


def test_every_entry_says_what_the_rule_means(entries: dict[str, Entry]) -> None:
    for rule, entry in entries.items():
        assert entry.title, f"{rule}: no title after the id"
        assert len(entry.meaning.split()) >= 10, f"{rule}: no meaning (a paragraph) given"
        assert entry.enforced_by, f"{rule}: no '{ENFORCED_BY}' bullet"


def test_every_entry_names_code_that_enforces_it(
    cited: dict[str, list[str]], entries: dict[str, Entry], sources: dict[str, str]
) -> None:
    code = "\n".join(sources.values())
    problems = []
    for rule, entry in sorted(entries.items()):
        if rule not in cited:
            if not entry.enforced_by.lower().startswith(NOT_ENFORCED):
                problems.append(
                    f"{rule}: no code cites it, so it must say it is enforced by "
                    f"{NOT_ENFORCED!r} (or the code that enforces it must cite it)"
                )
            continue
        names = entry.code_names()
        if not names:
            problems.append(f"{rule}: its '{ENFORCED_BY}' names no code in backticks")
        for name in names:
            if name.endswith(".py"):
                if not (PACKAGE_ROOT / name).is_file():
                    problems.append(f"{rule}: no file {name} in the package")
                continue
            word = name.removesuffix("()").rsplit(".", 1)[-1]
            if not re.search(rf"\b{re.escape(word)}\b", code):
                problems.append(f"{rule}: {name} does not occur in the package's code")
    assert not problems, "\n".join(problems)


def error_classes() -> list[type[simledger.SimledgerError]]:
    """``SimledgerError`` and every subclass the package defines, wherever it lives."""
    found: list[type[simledger.SimledgerError]] = []
    todo: list[type[simledger.SimledgerError]] = [simledger.SimledgerError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("simledger.") and cls not in found:
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_class_is_listed_under_its_rule(entries: dict[str, Entry]) -> None:
    classes = error_classes()
    assert len(classes) > 10
    unlisted = []
    for cls in classes:
        rule = cls.__dict__.get("rule")  # InvalidInput has none: it takes its caller's
        if rule is None:
            continue
        entry = entries.get(rule)
        if entry is None or cls.__name__ not in entry.code_names():
            unlisted.append(f"{cls.__name__} (rule {rule})")
    assert not unlisted, "error classes not named under their rule's Enforced by: " + (
        ", ".join(unlisted)
    )


def test_the_parser_sees_a_missing_or_empty_entry() -> None:
    """The checks above fail when an entry goes or loses its parts: the parser finds only
    what is there."""
    doc = (
        "# Rules\n\n## Area\n\n### R-XX1 First\n\nWhat the first rule means.\n\n"
        "- **Enforced by:** `SimLedger`, `domain/errors.py`, `list --format csv`\n\n"
        "### R-XX2 Second\n\n- **Enforced by:** nothing yet\n\n"
        "## Next area\n\n### R-YY1\n\nCited as R-ZZ1..2.\n"
    )
    first, second, third = parse(doc)
    assert (first.rule, first.title, first.meaning) == (
        "R-XX1",
        "First",
        "What the first rule means.",
    )
    assert first.code_names() == ["SimLedger", "domain/errors.py"]
    assert (second.meaning, second.enforced_by) == ("", "nothing yet")
    assert (third.rule, third.title, third.enforced_by) == ("R-YY1", "", "")
    assert expand(doc) == {"R-XX1", "R-XX2", "R-YY1", "R-ZZ1", "R-ZZ2"}


# ---- docs/api.md ------------------------------------------------------------------------
API_DOC = RULES_DOC.with_name("api.md")
PLANNED = "## Planned, not present"


def api_doc_parts() -> tuple[set[str], set[str]]:
    """What docs/api.md names: every identifier in a backticked span of the API as it is;
    and the calls of its planned section (the leading name of each span in the first
    column of its table, and ``simledger.X`` names)."""
    doc = re.sub(r"^```.*?^```", "", API_DOC.read_text("utf-8"), flags=re.MULTILINE | re.DOTALL)
    present, _, planned = doc.partition(PLANNED)
    assert planned, f"docs/api.md has no section {PLANNED!r}"
    named = {
        word for span in re.findall(r"`([^`]+)`", present) for word in IDENTIFIER.findall(span)
    }
    calls = set(re.findall(r"\bsimledger\.([A-Za-z_]\w*)", planned))
    for row in re.findall(r"^\|([^|\n]+)\|", planned, flags=re.MULTILINE):
        calls.update(re.findall(r"`([A-Za-z_]\w*)", row))
    return named, calls - {"call"}


def public_ledger_names() -> set[str]:
    """What SimLedger's own classes (not eventsourcing's) define without a leading ``_``."""
    return {
        name
        for cls in simledger.SimLedger.__mro__
        if cls.__module__.startswith("simledger.")
        for name in vars(cls)
        if not name.startswith("_")
    }


def test_api_doc_names_every_public_name() -> None:
    present, _ = api_doc_parts()
    missing = (set(simledger.__all__) | public_ledger_names()) - present
    assert not missing, f"public names docs/api.md does not describe: {sorted(missing)}"


def test_api_doc_planned_calls_are_not_built_yet() -> None:
    """A planned call that exists now must move into the API proper."""
    _, planned = api_doc_parts()
    assert {
        "add_rule",
    } <= planned
    built = {
        name for name in planned if hasattr(simledger.SimLedger, name) or hasattr(simledger, name)
    }
    assert not built, f"built, yet listed as planned in docs/api.md: {sorted(built)}"
