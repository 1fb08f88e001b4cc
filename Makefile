# The two set-up commands of the README. Both create .venv on first use and are no-ops after.
.PHONY: serve test lint bench

serve:
	@scripts/bootstrap serve
	.venv/bin/modelyard serve

test:
	@scripts/bootstrap test
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy
	.venv/bin/pytest

bench:
	@scripts/bootstrap test
	.venv/bin/python bench/local_generation.py

bench-overhead:
	.venv/bin/python -m bench.overhead

bench-observability:
	.venv/bin/python -m bench.observability

bench-console:
	.venv/bin/python -m bench.console
