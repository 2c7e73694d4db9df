# The two set-up commands of the README: `make demo` and `make test` (each creates .venv if missing).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build pip takes from this project's development machines; set TORCH_SPEC="torch" (or a
# CUDA wheel index) elsewhere. The package itself asks only for torch>=2.4.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STUDY ?= experiments/cifar.yaml
export MPLBACKEND := Agg

.PHONY: demo test lint lab reproduce report report-check venv clean-demo

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev,lab]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest -q

# ruff's checks (pyproject.toml [tool.ruff]); the test suite runs the same
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

demo: $(VENV)/.installed
	$(PY) -m vitlib.experiments run experiments/demo.yaml
	$(PY) -m vitlib.report results/demo
	@echo "Report: results/demo/REPORT.md and results/demo/report.html"

# the notebooks in JupyterLab, with this project's kernel (Ctrl-C stops the server); it prints the
# URL to open. As root (usual in a container) Jupyter refuses to start without --allow-root: given then.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: $(VENV)/.installed
	@test -z "$(ROOT_FLAG)" || echo "running as root: starting Jupyter with --allow-root"
	$(VENV)/bin/jupyter lab notebooks/ $(ROOT_FLAG)

reproduce: $(VENV)/.installed
	$(PY) -m vitlib.experiments run $(STUDY)

report: $(VENV)/.installed
	$(PY) -m vitlib.report results

# results/report.html in headless Chromium (apt-get install chromium) at 1,000 and 1,400 px: images
# load, tables fit or scroll; full-page screenshots in scratch/report-check/ to look at
report-check: $(VENV)/.installed
	$(PY) -m vitlib.report.browser results/report.html --out scratch/report-check

clean-demo:
	rm -rf results/demo
