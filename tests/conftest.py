"""Shared test set-up: quick mode everywhere, paths, and a browser for the site tests."""
import os
from pathlib import Path

# make test sets these; running pytest by hand gets the same quick, text-only run.
os.environ.setdefault("LSTMBOOK_QUICK", "1")
os.environ.setdefault("LSTMBOOK_PROGRESS", "text")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
