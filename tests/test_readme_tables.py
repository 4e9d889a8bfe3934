"""The README's method and evaluator tables are the registry cards: every registered entry has
its row, with the card's family / category, sign, direction, needs and paper. Regenerate them
with ``python tests/test_readme_tables.py`` after adding or changing a card."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def method_rows() -> list[str]:
    from gmxai_eval.methods import METHODS

    out = []
    for n in METHODS.list():
        c = METHODS.card(n)
        fam = f"{c.family} (needs layer)" if c.needs_layer else c.family
        if getattr(c, "reference", ""):
            fam += f" ({c.reference} reference)"
        out.append(f"| `{n}` | {fam} | {'yes' if c.signed else 'no'} | {c.paper} |")
    return out


def evaluator_rows() -> list[str]:
    from gmxai_eval.evaluators import EVALUATORS

    out = []
    for n in EVALUATORS.list():
        c = EVALUATORS.card(n)
        needs = ", ".join(sorted(c.needs)) or "-"
        scope = " (dataset)" if c.scope == "dataset" else ""
        out.append(f"| `{n}` | {c.category}{scope} | {'yes' if c.higher_is_better else 'no'} | {needs} | {c.paper} |")
    return out


def _table(header: str) -> list[str]:
    lines = README.read_text(encoding="utf-8").splitlines()
    i = lines.index(header)
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_method_table_is_the_registry():
    assert _table("| method | family | signed | paper |") == method_rows()


def test_evaluator_table_is_the_registry():
    assert _table("| evaluator | category | higher is better | needs | paper |") == evaluator_rows()


def test_rows_name_every_registered_entry():
    from gmxai_eval.evaluators import EVALUATORS
    from gmxai_eval.methods import METHODS

    names = {m.group(1) for m in re.finditer(r"^\| `([a-z0-9_]+)` \|", README.read_text(encoding="utf-8"), re.M)}
    assert set(METHODS.list()) <= names and set(EVALUATORS.list()) <= names


if __name__ == "__main__":  # print the two tables' rows
    print("\n".join(method_rows()))
    print()
    print("\n".join(evaluator_rows()))
