"""``make book``'s execution cache: re-execute a page when what it uses changed, and only then.

jupyter-cache keys a page on its own code cells, so a change in ``lstmbook/`` or in the saved
results would leave stale outputs. Before each build this tool hashes, for every page, the files
it depends on: the lstmbook modules its code imports (and everything those import, by
``tools/deps.py``), the module generated from its own ``#@save`` cells, and the measurements in
``results/`` when it reads them (a path into ``results/`` in its code, or ``lstmbook.compare``,
whose report lives there). A page whose hashes
differ from those recorded at its last execution loses its cache record, and its source file's
modification time is set to now: Sphinx re-reads only pages whose source is newer than its last
reading, so without that a page whose own text did not change would keep its old outputs. So it
alone runs again. ``--times`` lists each page's execution time from the cache.

    python tools/book_cache.py _build/.jupyter_cache [--times]
"""
import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import jupytext

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deps  # noqa: E402  (a sibling tool, not a package)

ROOT = deps.ROOT
MANIFEST = "lstmbook-dependencies.json"
READS_RESULTS = re.compile(r"""["']results["'/]""")  # a path into results/, not a variable


def pages(root: Path = ROOT) -> list[Path]:
    return sorted((root / "book").glob("[0-9][0-9]_*.md"))


def page_code(page: Path) -> str:
    notebook = jupytext.read(page, fmt="md:myst")
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")


def dependencies(page: Path, root: Path = ROOT) -> list[Path]:
    """The files whose change must re-execute ``page``."""
    code, sources = page_code(page), deps.package_sources(root)
    own = "lstmbook.lessons." + page.stem.split("_", 1)[1]  # its #@save cells, generated
    modules = deps.closure(deps.imported("__page__", code, root=root) + [own], sources, root)
    files = {deps.module_path(name, root) for name in modules}
    if READS_RESULTS.search(code) or "lstmbook.compare" in modules:
        files |= set((root / "results").glob("*.json"))
    return sorted(files)


def fingerprint(page: Path, root: Path = ROOT) -> dict[str, str]:
    """{file relative to the repository: SHA-256} for what ``page`` depends on."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in dependencies(page, root)}


def stale(recorded: dict, current: dict) -> dict[str, list[str]]:
    """{page: [files that changed, appeared or disappeared]} for pages whose inputs moved."""
    changed = {}
    for page, files in current.items():
        before = recorded.get(page)
        if before is None:
            continue  # never recorded: the cache either has no record or predates the tool
        moved = sorted(f for f in set(files) | set(before) if files.get(f) != before.get(f))
        if moved:
            changed[page] = moved
    return changed


def invalidate(cache_dir: Path, page_paths: list[Path]) -> int:
    """Remove the cache records of these pages; returns how many were removed."""
    if not (cache_dir / "global.db").is_file():
        return 0
    from jupyter_cache import get_cache
    cache, uris = get_cache(str(cache_dir)), {str(p.resolve()) for p in page_paths}
    removed = 0
    for record in cache.list_cache_records():
        if str(Path(record.uri).resolve()) in uris:
            cache.remove_cache(record.pk)
            removed += 1
    return removed


def refresh(cache_dir: Path, root: Path = ROOT, log=print) -> dict[str, list[str]]:
    """Invalidate what changed since the last build and record the current fingerprints."""
    manifest = cache_dir / MANIFEST
    recorded = json.loads(manifest.read_text()) if manifest.is_file() else {}
    current = {str(p.relative_to(root)): fingerprint(p, root) for p in pages(root)}
    changed = stale(recorded, current)
    if not recorded and (cache_dir / "global.db").is_file():
        # A cache made before this tool kept no fingerprints: it may be stale everywhere.
        changed = {page: ["(no record of its inputs)"] for page in current}
    invalidate(cache_dir, [root / page for page in changed])
    for page in changed:
        os.utime(root / page)  # newer than Sphinx's last reading: the page is read (and run) again
    for page, files in changed.items():
        log(f"re-executing {page}: changed {', '.join(files[:3])}"
            + (f" and {len(files) - 3} more" if len(files) > 3 else ""))
    cache_dir.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    return changed


def times(cache_dir: Path, root: Path = ROOT) -> list[tuple[str, float | None]]:
    """(page, seconds of its last execution) from the cache records."""
    if not (cache_dir / "global.db").is_file():
        return []
    from jupyter_cache import get_cache
    seconds = {str(Path(r.uri).resolve()): r.data.get("execution_seconds")
               for r in get_cache(str(cache_dir)).list_cache_records()}
    return [(str(p.relative_to(root)), seconds.get(str(p.resolve()))) for p in pages(root)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("--times", action="store_true",
                        help="list execution times; change nothing")
    args = parser.parse_args(argv)
    if args.times:
        rows = times(args.cache_dir)
        if not rows:
            print(f"No executed pages in {args.cache_dir}: run `make book` first.")
        for page, secs in rows:
            print(f"{page:32s} {'not cached' if secs is None else f'{secs:7.1f} s'}")
        total = sum(s for _, s in rows if s)
        print(f"{'total':32s} {total:7.1f} s" if rows else "", end="\n" if rows else "")
        return 0
    refresh(args.cache_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
