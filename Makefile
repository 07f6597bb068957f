.PHONY: demo test lint serve

# Fresh machine -> virtualenv, SQLite store, demo data, admin login, server on :8000.
demo:
	bash scripts/demo.sh

# The whole suite on SQLite and on a throwaway PostgreSQL 15 cluster, plus ruff.
test:
	bash scripts/test.sh

lint:
	.venv/bin/ruff check .
