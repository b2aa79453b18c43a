# Conveniences over the scripts the README names (the scripts are the source of truth).
.PHONY: setup demo test bench lint
setup:
	bash scripts/setup.sh
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
lint: setup
	.venv/bin/ruff check ovs3d_ros test bench
bench: setup
	.venv/bin/python bench/run_all.py
