# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv, installs systolic-dse, and runs the main job: the quick-start
#               search (studies/quickstart.toml: LeNet-5 on real MNIST digits, array shapes x
#               per-layer weight compression) into a SQLite file beside the study, printing
#               its Pareto front, then writes its report page (studies/quickstart-report.html,
#               opens offline) and prints its path. Measured from a fresh clone and an empty
#               cache on 2 cores without Yosys: 6 min 34 s, of which ~2.5 min install torch, the rest is
#               the search (it also trains LeNet-5, characterises the PE and calibrates
#               the layers); run it again and the study continues
#   make test   creates .venv, installs systolic-dse with its test tools, runs the test suite
#               (without Yosys, fresh clone, beside another job on 2 cores: 17 min in all,
#               426 passed, 59 skipped)
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
	$(BIN)/dse map resnet20 --array 64x64
	$(BIN)/dse run studies/quickstart.toml
	$(BIN)/dse report quickstart --storage sqlite:///studies/quickstart.db \
		-o studies/quickstart-report.html

test: $(BIN)/dse
	$(BIN)/python -m pytest -q

lint: $(BIN)/dse
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(BIN)/dse
	$(BIN)/python benchmarks/bench_mapping.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
