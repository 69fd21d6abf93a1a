"""Collect every student's notebooks and list the exercises their saved outputs show as passed.

    python lab/collect.py /var/lib/private --out submissions-2026-11-30    # a class (as root)
    python lab/collect.py _build/hub/users --out /tmp/submissions          # the `make hub` trial

Reads HOMES/<student>/lstm-course/*.ipynb, copies each notebook to OUT/<student>/, writes
OUT/summary.csv and prints one line per student. Nothing is executed: a check counts as passed
when its cell's saved output says "Exercise N.M passed", as the student last saved it. To
re-run the checks yourself, execute the copies as an unprivileged user or in a container, never
as root: they contain the students' code.
"""
import argparse
import csv
import json
import re
import shutil
from pathlib import Path

COURSE_FOLDER = "lstm-course"
LABS = Path(__file__).resolve().parent.parent / "labs"
PLACEHOLDER = re.compile(r'NotImplementedError\(\\?"Exercise (\d+\.\d+):')
PASSED = re.compile(r"Exercise (\d+\.\d+) passed")


def exercise_numbers(labs: Path = LABS) -> list[str]:
    """Every exercise of the course, in order, from the placeholders of the practice notebooks."""
    found = {}   # an exercise may have several placeholders; keep the first, in order
    for nb in sorted(labs.glob("*.ipynb")):
        found.update(dict.fromkeys(PLACEHOLDER.findall(nb.read_text())))
    return list(found)


def passed_in(notebook: Path) -> set[str]:
    try:
        cells = json.loads(notebook.read_text()).get("cells", [])
    except (OSError, ValueError):
        return set()
    text = []
    for cell in cells:
        for out in cell.get("outputs", []):
            text.append("".join(out.get("text", "")))
            text.append("".join(out.get("data", {}).get("text/plain", "")))
    return set(PASSED.findall("\n".join(text)))


def collect(homes: Path, out: Path, labs: Path = LABS) -> list[dict]:
    exercises, rows = exercise_numbers(labs), []
    for folder in sorted(p for p in Path(homes).glob(f"*/{COURSE_FOLDER}") if p.is_dir()):
        student = folder.parent.name
        target = Path(out) / student
        target.mkdir(parents=True, exist_ok=True)
        passed = set()
        for nb in sorted(folder.glob("*.ipynb")):
            shutil.copy2(nb, target / nb.name)
            passed |= passed_in(nb)
        done = [n for n in exercises if n in passed]
        rows.append({"student": student, "passed": len(done), "of": len(exercises),
                     "exercises_passed": " ".join(done),
                     "not_yet": " ".join(n for n in exercises if n not in passed)})
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out) / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["student", "passed", "of", "exercises_passed",
                                               "not_yet"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("homes", help="folder holding one home folder per student")
    parser.add_argument("--out", required=True, help="where to copy the notebooks")
    args = parser.parse_args(argv)
    rows = collect(Path(args.homes), Path(args.out))
    for row in rows:
        print(f"{row['student']:20s} {row['passed']:3d}/{row['of']}  not yet: {row['not_yet']}")
    print(f"{len(rows)} students; notebooks and summary.csv in {args.out}")


if __name__ == "__main__":
    main()
