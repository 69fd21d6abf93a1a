# Every entry point of the course. Each target creates .venv from requirements.txt when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# Quiet TensorFlow's start-up lines in every process we start.
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help book times sync test lint serve lab lab-update lab-reset hub hub-admin hub-deps bench train clean browser compiler

help:
	@echo "make book   build the site into _build/html (full training runs, cached)"
	@echo "make times  execution time of every page at the last make book"
	@echo "make test   lint, then run all tests in quick mode (installs what they need)"
	@echo "make lint   ruff: the project's lint and import-order rules (pyproject.toml)"
	@echo "make sync   regenerate labs/, solutions/ and lstmbook/lessons/ from book/ (tools/sync.py)"
	@echo "make serve  serve _build/html on http://127.0.0.1:8000"
	@echo "make lab    JupyterLab on the practice notebooks (127.0.0.1, random token)"
	@echo "make lab-update            add notebooks new in labs/ to my-work/ (edited ones are kept)"
	@echo "make lab-reset NB=00_intro fresh copy of one notebook (yours goes to my-work/backups/)"
	@echo "make hub    trial class JupyterHub on http://127.0.0.1:$(HUB_PORT) (see the instructor guide)"
	@echo "make grade  grade the trial hub's students by re-running their notebooks (_build/grades)"
	@echo "make bench  benchmark and train every implementation (lesson 6's table, results/bench.json)"
	@echo "make train  train the best character model (make train ARGS=\"--minutes 10\"); checkpoint in _build/checkpoints/"

# The environment: rebuilt when requirements.txt changes.
$(VENV)/.installed: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@# Make lstmbook importable from any folder (book/, labs/, a student's copy) without packaging it.
	$(PY) -c "import sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()['purelib'], 'lstmbook.pth').write_text('$(CURDIR)\n')"
	$(PY) -m pip check
	@touch $@

sync: $(VENV)/.installed
	$(PY) tools/sync.py

# jupyter-cache keys a page on its code cells only; tools/book_cache.py also re-executes a page
# when an lstmbook module it imports (directly or not) or a results/ file it reads has changed,
# and only that page. OPENBLAS_NUM_THREADS=1 as in the lessons, so NumPy's speed is the same
# whichever entry point measures it (make bench too).
CACHE := _build/.jupyter_cache
book: $(VENV)/.installed
	@$(PY) tools/book_cache.py $(CACHE)
	@time OPENBLAS_NUM_THREADS=1 LSTMBOOK_PROGRESS=text $(BIN)/jupyter-book build . --builder html -n -W --keep-going
	@$(PY) tools/book_cache.py $(CACHE) --times
	@echo "Open file://$(CURDIR)/_build/html/index.html  (or: make serve)"

# Execution time of every page, from the cache of the last make book.
times: $(VENV)/.installed
	@$(PY) tools/book_cache.py $(CACHE) --times

# Headless Chromium for the site tests (Debian package; never a downloaded browser build).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "The site tests need Debian's chromium: sudo apt-get install chromium"; exit 1; fi; }

# A C++ compiler for lesson 4's CppLSTM extension (ninja comes from requirements.txt).
compiler:
	@command -v $${CXX:-c++} >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null; \
	  else echo "Lesson 4's CppLSTM and its tests need a C++ compiler: sudo apt-get install g++"; exit 1; fi; }

# JupyterHub's proxy (npm, pinned by lab/package-lock.json) into lab/node_modules. Debian's nodejs
# (18 or newer) is enough.
hub-deps: lab/node_modules/.installed
lab/node_modules/.installed: lab/package.json lab/package-lock.json
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	  else echo "The hub needs Node.js and npm: sudo apt-get install nodejs npm"; exit 1; fi; }
	cd lab && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lint: $(VENV)/.installed
	$(BIN)/ruff check .

test: $(VENV)/.installed browser compiler hub-deps lint
	LSTMBOOK_QUICK=1 LSTMBOOK_PROGRESS=text $(BIN)/pytest

serve:
	@test -f _build/html/index.html || { echo "No site yet: run 'make book' first."; exit 1; }
	$(PYTHON) -m http.server --bind 127.0.0.1 --directory _build/html 8000

lab: $(VENV)/.installed
	$(PY) lab/lab.py

lab-update: $(VENV)/.installed
	$(PY) lab/lab.py update

lab-reset: $(VENV)/.installed
	$(PY) lab/lab.py reset "$(NB)"

# A trial of the class hub on this machine only: accounts and student folders in _build/hub.
# Sign-up is open in the trial (LSTM_HUB_SIGNUP=0 closes it, as a class hub is by default).
# Students' servers keep running when the hub stops; the next `make hub` finds them again.
HUB_PORT ?= 8090
HUB_STATE := $(CURDIR)/_build/hub
LSTM_HUB_SIGNUP ?= 1
HUB_ENV := LSTM_HUB_TRIAL=1 LSTM_HUB_IP=127.0.0.1 LSTM_HUB_PORT=$(HUB_PORT) LSTM_HUB_STATE=$(HUB_STATE) \
           LSTM_HUB_SIGNUP=$(LSTM_HUB_SIGNUP)
hub: $(VENV)/.installed hub-deps
	@mkdir -p $(HUB_STATE)
	@$(HUB_ENV) $(PY) lab/hub_admin.py --if-missing instructor
	@echo "Trial hub: http://127.0.0.1:$(HUB_PORT)  (this machine only; Ctrl+C stops the hub, not the servers)"
	@echo "  log in as 'instructor'; students sign up at /hub/signup; approve them at /hub/authorize"
	cd $(HUB_STATE) && $(HUB_ENV) $(CURDIR)/$(BIN)/jupyterhub -f $(CURDIR)/lab/jupyterhub_config.py

# An approved account: the instructor, a teaching assistant (also in LSTM_HUB_ADMINS), or a
# student who cannot sign up. make hub-admin NAME=ta-maria
hub-admin: $(VENV)/.installed
	@$(HUB_ENV) $(PY) lab/hub_admin.py "$(or $(NAME),instructor)"

# Grade the trial hub's students by re-running their notebooks with the course's checks
# (lab/grade.py; as root it runs their code as nobody). make grade GRADE_ARGS="--lessons 0 1"
.PHONY: grade
GRADE_ARGS ?=
grade: $(VENV)/.installed
	$(PY) lab/grade.py $(HUB_STATE)/users --out $(CURDIR)/_build/grades $(GRADE_ARGS)

# Throughput rows, then lesson 6's comparison runs (about 15 minutes on 2 cores); the report goes to
# results/bench.json, which lesson 6 shows. make bench BENCH_ARGS="--help" lists the options.
BENCH_ARGS ?=
bench: $(VENV)/.installed
	OPENBLAS_NUM_THREADS=1 $(PY) -m lstmbook.bench $(BENCH_ARGS)

# The course's best character model (lesson 4), trained for a wall-clock budget
# (lstmbook/best_model.py; sample from it with python -m lstmbook.sample).
ARGS ?= --minutes 4
train: $(VENV)/.installed
	$(PY) -m lstmbook.best_model $(ARGS)

clean:
	rm -rf _build
