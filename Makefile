# The two entry points; both install what they need on a fresh machine.
.PHONY: test demo env-up env-down bench-feature-api bench-sessions

test: ## the whole suite: lint, unit tests, e2e tests against the real components
	e2e/run-tests

demo: ## the environment and the pipeline, on embedded defaults
	e2e/demo

env-up:
	e2e/env/up

env-down:
	e2e/env/down

bench-feature-api: ## feature-api vs Redis GET: wrk, redis-benchmark, fixed-rate p99 (docs/benchmarks.md)
	e2e/bench-feature-api

bench-sessions: ## session-aggregator vs Flink SQL SESSION window on one event file (docs/benchmarks.md)
	e2e/bench-sessions
