"""make book re-executes a page when a module it uses changes, and only that page."""
import json

import nbformat

from conftest import ROOT, load_script

book_cache = load_script("tools/book_cache.py")
LESSON2, LESSON5, LESSON6 = "book/02_numpy_lstm.md", "book/05_keras_word_lstm.md", \
    "book/06_comparison.md"


def fingerprints():
    return {str(p.relative_to(ROOT)): book_cache.fingerprint(p) for p in book_cache.pages()}


def test_a_page_depends_on_what_it_imports_and_its_own_module():
    deps = {p.name: {str(f.relative_to(ROOT)) for f in book_cache.dependencies(p)}
            for p in book_cache.pages()}
    assert "lstmbook/lessons/numpy_lstm.py" in deps["02_numpy_lstm.md"]
    assert "lstmbook/lessons/numpy_lstm.py" in deps["06_comparison.md"]  # through compare
    assert "lstmbook/lessons/numpy_lstm.py" not in deps["05_keras_word_lstm.md"]
    assert "lstmbook/training.py" in deps["05_keras_word_lstm.md"]  # through its lesson module
    assert "results/bench.json" in deps["06_comparison.md"]
    assert "results/bench.json" not in deps["02_numpy_lstm.md"]


def test_touching_the_numpy_lesson_module_marks_lessons_2_and_6_not_5():
    before = fingerprints()
    after = json.loads(json.dumps(before))
    for files in after.values():
        if "lstmbook/lessons/numpy_lstm.py" in files:
            files["lstmbook/lessons/numpy_lstm.py"] = "0" * 64
    changed = book_cache.stale(before, after)
    assert set(changed) == {LESSON2, LESSON6}
    assert changed[LESSON2] == ["lstmbook/lessons/numpy_lstm.py"]
    assert book_cache.stale(before, before) == {}


def test_refresh_removes_only_the_changed_pages_records(tmp_path):
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    cache_dir = tmp_path / "cache"
    cache = get_cache(str(cache_dir))
    for page in (LESSON2, LESSON5):
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"# {page}")])
        cache.cache_notebook_bundle(CacheBundleIn(notebook, str(ROOT / page)),
                                    check_validity=False)
    recorded = fingerprints()
    recorded[LESSON2]["lstmbook/training.py"] = "stale"
    (cache_dir / book_cache.MANIFEST).write_text(json.dumps(recorded))
    mtimes = {page: (ROOT / page).stat().st_mtime_ns for page in (LESSON2, LESSON5)}
    changed = book_cache.refresh(cache_dir, log=lambda line: None)
    assert set(changed) == {LESSON2}
    # Sphinx re-reads a page only when its source is newer than its last reading
    assert (ROOT / LESSON2).stat().st_mtime_ns > mtimes[LESSON2]
    assert (ROOT / LESSON5).stat().st_mtime_ns == mtimes[LESSON5]
    assert [r.uri for r in get_cache(str(cache_dir)).list_cache_records()] == [str(ROOT / LESSON5)]
    assert json.loads((cache_dir / book_cache.MANIFEST).read_text()) == fingerprints()
    assert book_cache.refresh(cache_dir, log=lambda line: None) == {}  # nothing moved since


def test_times_lists_every_page(tmp_path, capsys):
    assert book_cache.main([str(tmp_path), "--times"]) == 0
    assert "run `make book` first" in capsys.readouterr().out
