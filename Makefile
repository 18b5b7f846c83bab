# Two targets a new user needs: `make demo` and `make test`. Both set everything up first.
# `make demo` scores a bundled sample video with the bundled model (models/).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test

# torch/torchvision are pinned to the pair that imports together here (pip takes them from
# local disk when it can); everything else comes from pyproject.toml.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/ratscore analyze sample_videos/clip_7_0001.mp4 -o out/demo

test: setup
	$(BIN)/python -m pytest -q
