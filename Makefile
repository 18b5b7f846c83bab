# Two targets a new user needs: `make demo` and `make test`. Both set everything up first.
# `make demo` scores a bundled sample video with the bundled model (models/).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test boris

# torch/torchvision are pinned to the pair that imports together here (pip takes them from
# local disk when it can); everything else comes from pyproject.toml.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,nwb]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/ratscore analyze sample_videos/clip_7_0001.mp4 -o out/demo

test: setup
	$(BIN)/python -m pytest -q

# BORIS (boris-behav-obs), for tests/test_boris.py's check that BORIS itself opens the projects
# ratscore writes. A venv of its own: BORIS brings PyQt5, kept out of .venv. Importing it
# headless (QT_QPA_PLATFORM=offscreen) needs Debian's libmpv2 and libpulse-mainloop-glib0,
# installed here when dpkg says they are missing (as root). The venv ignores itself in git.
# libmpv2 also brings the FFmpeg libraries torchcodec loads (--decoder torchcodec; with CI=true
# tests/test_decoders.py fails rather than skips without them).
# The tests find it through RATSCORE_BORIS_PYTHON=.venv-boris/bin/python (.ci/run sets it).
BORIS_VENV := .venv-boris
BORIS_VERSION := 8.27.4
BORIS_DEBS := libpulse-mainloop-glib0 libmpv2

boris: $(BORIS_VENV)/.installed

$(BORIS_VENV)/.installed:
	@if command -v dpkg >/dev/null 2>&1; then \
	  missing=""; \
	  for p in $(BORIS_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" != 0 ]; then \
	      echo "make boris: BORIS needs the Debian packages$$missing; install them as root:" \
	           "sudo apt-get install -y --no-install-recommends$$missing" >&2; \
	      exit 1; \
	    fi; \
	    echo "make boris: installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  fi; \
	else \
	  echo "make boris: not a Debian system; BORIS needs libmpv and PulseAudio's glib main loop from your system's packages"; \
	fi
	rm -rf $(BORIS_VENV)
	$(PYTHON) -m venv $(BORIS_VENV)
	echo '*' > $(BORIS_VENV)/.gitignore
	$(BORIS_VENV)/bin/pip install --quiet boris-behav-obs==$(BORIS_VERSION)
	QT_QPA_PLATFORM=offscreen $(BORIS_VENV)/bin/python -c "from boris import project_functions, export_observation"
	touch $@
