# compress: the two commands a new user runs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: install data demo test lint bench reproduce gate calibration clean

# torch 2.14.1 + torchvision 0.29.1 is the pair that works on this CPU-only machine (from local disk).
# The venv is ~6 GB (torch's CUDA libraries); --no-cache-dir keeps pip from storing a second copy of them.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --no-cache-dir --upgrade pip
	$(PIP) install -q --no-cache-dir torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q --no-cache-dir -e '.[dev,ray,timm]'
	touch $(STAMP)

install: $(STAMP)

# Real data sets, fetched once into ~/.cache/compress (never the repo), hashes checked.
data: $(STAMP)
	$(VENV)/bin/compress data fetch mnist fraud fashion-mnist

demo: install
	$(VENV)/bin/compress data fetch mnist
	$(VENV)/bin/compress run examples/demo.toml -o runs/demo --force  # its figures: runs/demo/summary.json

test: install
	$(PY) -m pytest tests  # pytest exits 5 when it collects no test: a failure here

lint: install
	$(VENV)/bin/ruff check toolchain tests benchmarks

bench: install
	$(PY) benchmarks/bench_overhead.py

# The paper's figures in docs/results.md under ../shared/EVALUATION.md: the strong baselines (read from
# ../shared/baselines, trained only where absent), the AlexNet / VGG16 cells (resumable: finished cells in
# benchmarks/results/paper.json are skipped), the autoencoders; then the page. DEVICE=cuda where a GPU is lent.
DEVICE ?= cpu
reproduce: install data
	$(PY) benchmarks/baselines.py --device $(DEVICE)
	$(PY) benchmarks/paper_cnn.py --device $(DEVICE)
	$(PY) benchmarks/reproduce_paper.py --device $(DEVICE)
	$(PY) benchmarks/make_results_md.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# The small calibration sets shipped in calibration/ (class-stratified, from the training splits).
calibration: install
	$(VENV)/bin/compress calibrate --data mnist --samples 128 --input-shape 1,1,32,32 -o calibration/mnist-1x32x32.npz --force
	$(VENV)/bin/compress calibrate --data fashion-mnist --samples 128 --input-shape 1,1,32,32 -o calibration/fashion-mnist-1x32x32.npz --force

# The project's own regression gate: the quick default run against the committed baseline.
gate: install
	rm -rf "$${COMPRESS_CACHE:-$$HOME/.cache/compress}/models"
	$(VENV)/bin/compress data fetch mnist
	rm -rf runs/ci
	$(VENV)/bin/compress run --quick -o runs/ci
	$(VENV)/bin/compress report runs/ci
	$(VENV)/bin/compress check runs/ci --baseline .ci/baseline.toml --junit runs/ci/check.xml
