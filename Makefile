# zoomate: two commands on a fresh Debian/Ubuntu machine.
#   make run    install what is missing, build, run on the embedded default config
#   make test   install what is missing, build, run every test

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: deps test-deps build run test unit bench clean-data

deps:
	./scripts/install-deps

test-deps: deps
	./scripts/setup-test-venv
	./scripts/setup-browser

build: deps
	$(CARGO) build --release --locked

run: build
	./target/release/zoomate run

# Built once; unit tests (pure code) first: fast feedback; then the integration tests, which
# drive the real binary with ffmpeg, GStreamer, HTTP, ZeroMQ and nginx: two binaries at a time,
# slowest first (scripts/run-integration-tests says why; `cargo test --tests` runs one at a time).
test: test-deps
	$(CARGO) build --locked --all-targets
	$(CARGO) test --locked --lib
	CARGO="$(CARGO)" ./scripts/run-integration-tests

unit:
	$(CARGO) test --lib

bench: deps
	$(CARGO) bench --locked

clean-data:
	rm -rf data
