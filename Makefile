# Thin aliases for ./dev, which does the work (and needs only bash and Python 3.11).
.PHONY: run serve test lint ci
run serve:
	./dev serve
test:
	./dev test
lint:
	./dev lint
ci:
	bash .ci/run
