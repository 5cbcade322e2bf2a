# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv, installs systolic-dse, maps ResNet-20 on a 64x64 array, and
#               charges LeNet-5 with the switching-activity model (trains it and characterises
#               the PE on first use: about a minute)
#   make test   creates .venv, installs systolic-dse with its test tools, runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/dse: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch/torchvision pinned to the builds this machine kind serves from local disk
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(BIN)/dse

demo: $(BIN)/dse
	$(BIN)/dse plugins
	$(BIN)/dse map resnet20 --array 64x64
	$(BIN)/dse energy resnet20 --array 64x64 --energy-model constant --mac-pj 0.04
	$(BIN)/dse energy lenet5 --dataset mnist5k --array 64x64 --energy-model msb_hamming

test: $(BIN)/dse
	$(BIN)/python -m pytest -q

lint: $(BIN)/dse
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(BIN)/dse
	$(BIN)/python benchmarks/bench_mapping.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
