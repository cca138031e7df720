# The two entry points; both install what they need on a fresh machine.
.PHONY: test demo env-up env-down

test: ## the whole suite: lint, unit tests, e2e tests against the real components
	e2e/run-tests

demo: ## the environment and the pipeline, on embedded defaults
	e2e/demo

env-up:
	e2e/env/up

env-down:
	e2e/env/down
