"""Every number in a lesson's prose is accounted for, so a number about a run cannot slip in.

A sentence that states the outcome of a random or timed run (a loss, a speed, a step count,
which model won) must take its number from the run: myst-nb's {glue} role inserts it, or a
cell asserts the claim so the build fails when a rebuild makes it false. Every other number in
the prose of ``book/NN_name.md`` is listed in ``tests/prose_numbers/NN_name.toml`` under why
it may stand:

- ``setup``: a constant of the set-up the code fixes (sizes, seeds, budgets, data counts);
- ``cited``: a fact or figure from a cited source, a README or a saved measurement in
  ``results/`` whose file the text names (measured elsewhere, not by this page's run);
- ``math``: a consequence of the mathematics (ln 4 = 1.39, a derivative's bound);
- ``asserted``: a claim about this page's run that a cell asserts (name the cell's check in a
  comment of the list).

Numbers inside code, math, roles ({glue}, {cite}, {numref}, ...), links and directive options
are not prose; nor are references such as "lesson 4", "exercise 2.3" or "Figure 3".
"""
import re
import tomllib

import jupytext
import pytest

from conftest import ROOT

LISTS = ROOT / "tests" / "prose_numbers"
KINDS = ("setup", "cited", "math", "asserted")
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w])")
REFERENCE = re.compile(
    r"\b(?:lessons?|exercises?|sections?|figures?|fig\.|tables?|equations?|eqs?\.|chapters?|"
    r"ch\.|parts?|steps? of lesson)\s+\d[\d.]*(?:\s*(?:,|and|or|to|-|–)\s*\d[\d.]*)*",
    re.IGNORECASE)
NOT_PROSE = [  # in this order: a role holds backticks, inline code may hold a $
    re.compile(r"\{[\w:-]+\}`[^`]*`"),            # roles: {glue}`x`, {cite:p}`k`, {numref}`f`
    re.compile(r"`[^`\n]*`"),                     # inline code
    re.compile(r"\$\$.*?\$\$", re.DOTALL),        # display math
    re.compile(r"\$[^$]+?\$"),                    # inline math (may wrap a line)
    re.compile(r"\]\([^)]*\)"),                   # link targets
    re.compile(r"<[^>\n]*>"),                     # HTML tags
    re.compile(r"^\([\w-]+\)=\s*$", re.MULTILINE),  # labels
    re.compile(r"^:[\w-]+:.*$", re.MULTILINE),      # directive options
    re.compile(r"^#+ \d+\.", re.MULTILINE),         # the lesson number in its title
    re.compile(r"^\s*\d+\.\s", re.MULTILINE),        # numbered list items
]


def lessons():
    return sorted((ROOT / "book").glob("[0-9][0-9]_*.md"))


def without_code_blocks(markdown: str) -> str:
    """Drop fenced code blocks; keep the bodies of directives (```{exercise} ... ```), whose
    text is prose, without their fence lines."""
    kept, stack = [], []  # stack: "code" or "directive" for each open fence
    for line in markdown.split("\n"):
        fence = line.lstrip().startswith(("```", "~~~"))
        if fence and stack and stack[-1] == "code":
            stack.pop()
        elif fence and line.strip().lstrip("`~").startswith("{"):
            stack.append("directive")
        elif fence and stack and line.strip() in ("```", "~~~"):
            stack.pop()
        elif fence:
            stack.append("code")
        elif "code" not in stack:
            kept.append(line)
    return "\n".join(kept)


def prose(lesson) -> str:
    """The Markdown of a lesson, directive bodies included (exercise text is prose)."""
    notebook = jupytext.read(lesson, fmt="md:myst")
    text = "\n\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    return prose_of(without_code_blocks(text))


def numbers(text: str) -> dict[str, str]:
    """{number as written: the words around its first use}."""
    found = {}
    for match in NUMBER.finditer(text):
        context = text[max(0, match.start() - 50):match.end() + 30].replace("\n", " ")
        found.setdefault(match.group(0).rstrip(","), context)
    return found


def accounted(lesson) -> dict[str, str]:
    path = LISTS / f"{lesson.stem}.toml"
    listed = tomllib.loads(path.read_text()) if path.is_file() else {}
    unknown = set(listed) - set(KINDS)
    assert not unknown, f"{path.name}: unknown kinds {sorted(unknown)}; use {KINDS}"
    return {number: kind for kind in KINDS for number in listed.get(kind, [])}


@pytest.mark.parametrize("lesson", lessons(), ids=lambda p: p.stem)
def test_every_number_in_the_prose_is_accounted_for(lesson):
    found, listed = numbers(prose(lesson)), accounted(lesson)
    unexplained = {n: c for n, c in found.items() if n not in listed}
    assert not unexplained, (
        f"{lesson.name}: numbers in the prose that are neither glued from the run nor listed "
        f"in tests/prose_numbers/{lesson.stem}.toml (as {', '.join(KINDS)}):\n"
        + "\n".join(f"  {n!r}: ...{c}..." for n, c in unexplained.items()))
    stale = sorted(set(listed) - set(found))
    assert not stale, f"tests/prose_numbers/{lesson.stem}.toml lists numbers the prose no " \
                      f"longer has: {stale}"


def test_the_scanner_sees_prose_numbers_only():
    text = prose_of("We trained for 60 s and reached a loss of 1.62 in lesson 4 (exercise 2.3)"
                    ", $n = 256$, `lr=3e-3`, {glue:}`val_loss` and {cite:p}`hochreiter1997`.")
    assert set(numbers(text)) == {"60", "1.62"}


def prose_of(markdown: str) -> str:
    for pattern in NOT_PROSE:
        markdown = pattern.sub(" ", markdown)
    return REFERENCE.sub(" ", markdown)
