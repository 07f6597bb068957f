.PHONY: demo test lint serve

# Fresh machine -> virtualenv, SQLite store, demo data, admin login, server on :8000.
demo:
	bash scripts/demo.sh

# The whole suite on SQLite, on a throwaway PostgreSQL 15 cluster and on a Citus cluster, plus ruff.
test:
	bash scripts/test.sh

lint:
	.venv/bin/ruff check .
