# sei-operator: the two commands of the README are `make demo` and `make test`.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
SAMPLE ?= deploy/samples/full-node.yaml
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
IMAGE := $(TARGET_DIR)/image/sei-operator.oci.tar

.PHONY: demo test setup control-plane build image image-test unit integration tasks-wasm-test lint fmt bench bench-sandbox bench-swap bench-failover bench-scale bench-guests fuzz fuzz-for chaos sidecar-faults clean-control-plane

## The main job: a local control plane, the CRD, the test sidecar and the controller; a sample
## SeiNode reaches Running through its plan (tests/demo.sh).
demo: setup control-plane
	bash tests/demo.sh

## Everything CI runs: set-up, the control plane and Helm (cached), lint, unit, sandbox and
## integration tests, and the container image's test.
test: setup control-plane lint tasks-wasm-test
	$(CARGO) test --workspace --locked
	$(MAKE) image-test

## The controller's OCI image archive (deploy/image/build.sh: no daemon, no base image).
image:
	$(CARGO) build --release --locked -p sei-operator --bin sei-operator
	bash deploy/image/build.sh $(TARGET_DIR)/release/sei-operator $(IMAGE)

## Check the image: config, contents, and its binary run from its own root filesystem.
image-test: image
	SEI_IMAGE_ARCHIVE=$(IMAGE) $(CARGO) test --locked -p sei-operator --test image -- --ignored

setup:
	rustup target add wasm32-unknown-unknown
	rustup component add clippy rustfmt

## Build etcd, kube-apiserver, kube-controller-manager and kubectl from Go modules into
## ~/.cache/sei-operator/k8s-<version>-etcd-<version>-<recipe>/bin, and Helm into
## ~/.cache/sei-operator/helm-<version>/bin (a no-op when cached).
control-plane:
	bash tests/control-plane/build.sh

build: setup
	$(CARGO) build --workspace --locked

## Unit tests of the task modules' pure logic and of the SDK's mock host, natively.
tasks-wasm-test:
	$(CARGO) test --manifest-path tasks-wasm/Cargo.toml --locked -p sei-builtin-infra -p sei-builtin-sidecar -p sei-builtin-group -p sei-task-params -p sei-task-sdk

lint:
	$(CARGO) fmt --all --check
	$(CARGO) fmt --manifest-path tasks-wasm/Cargo.toml --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) clippy --manifest-path tasks-wasm/Cargo.toml --workspace --target wasm32-unknown-unknown --locked -- -D warnings
	$(CARGO) clippy --manifest-path tasks-wasm/Cargo.toml -p sei-task-sdk --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all
	$(CARGO) fmt --manifest-path tasks-wasm/Cargo.toml --all

## Long runs of the property tests (CI runs 256 cases each): `make fuzz CASES=200000`.
CASES ?= 100000
fuzz:
	PROPTEST_CASES=$(CASES) $(CARGO) test --release --locked -p sei-operator --test fuzz -- --nocapture
	PROPTEST_CASES=$(CASES) $(CARGO) test --release --locked -p sei-operator --lib sandbox::run::properties

## The property tests for a while (`make fuzz-for MINUTES=60`): runs of CASES cases each, every
## run with a fresh random seed, until the time is up; prints the runs, cases and minutes.
MINUTES ?= 10
fuzz-for:
	bins=$$($(CARGO) test --release --locked -p sei-operator --test fuzz --lib --no-run --message-format=json | grep -o '"executable":"[^"]*"' | cut -d'"' -f4); \
	fuzz=$$(echo "$$bins" | grep '/fuzz-'); lib=$$(echo "$$bins" | grep '/sei_operator-'); \
	start=$$(date +%s); end=$$((start + $(MINUTES) * 60)); runs=0; \
	while [ $$(date +%s) -lt $$end ]; do \
	  out=$$(PROPTEST_CASES=$(CASES) $$fuzz -q 2>&1) || { echo "$$out"; exit 1; }; \
	  out=$$(PROPTEST_CASES=$(CASES) $$lib -q sandbox::run::properties 2>&1) || { echo "$$out"; exit 1; }; \
	  runs=$$((runs + 1)); \
	done; \
	echo "fuzz-for: $$runs runs of $(CASES) cases per property in $$(( ($$(date +%s) - start) / 60 )) min, no failure"

## The kill-anywhere test with more crashes (CI runs 30): `make chaos KILLS=200 SEED=123`.
KILLS ?= 200
chaos: control-plane
	SEI_CHAOS_KILLS=$(KILLS) $(if $(SEED),SEI_CHAOS_SEED=$(SEED)) $(CARGO) test --locked -p sei-operator --test chaos -- --nocapture

## The sidecar-fault test with the issue's 60 s outage (CI uses 15 s).
sidecar-faults: control-plane
	SEI_FAULT_DOWN_SECONDS=60 $(CARGO) test --locked -p sei-operator --test sidecar_faults -- --nocapture

## Benchmarks (results and commands in BENCHMARKS.md).
bench: bench-sandbox bench-swap bench-failover
	bash tests/control-plane/bench-start.sh

bench-sandbox:
	$(CARGO) bench -p sei-operator --bench sandbox

# Hot-swap latency through --task-dir: median of 10 swaps, fresh wasm and precompiled cache.
bench-swap:
	$(CARGO) run --release -p sei-operator --example swap_latency

## The scale benchmark: N SeiNodes created at once on a fresh control plane, the controller in
## release as the chart's ServiceAccount; prints times, CPU, memory and API requests per node,
## then a steady window of STEADY seconds (host/examples/scale.rs): `make bench-scale N=10000`.
N ?= 1000
STEADY ?= 60
## What a task module costs by guest language (BENCHMARKS.md "Guest languages"): the Rust,
## Python and JavaScript scaffolds of `task new`, built by `task build`, loaded and run.
GUESTS_DIR ?= $(TARGET_DIR)/bench-guests
bench-guests:
	$(CARGO) build --release --locked -p sei-operator --bin sei-operator --example guest_costs
	rm -rf $(GUESTS_DIR) && mkdir -p $(GUESTS_DIR)
	eval "$$(bash tests/author-tools/install.sh)" && export SEI_COMPONENTIZE_PY SEI_COMPONENTIZE_JS && \
	for lang in rust python js; do \
	  $(TARGET_DIR)/release/sei-operator task new guest-$$lang --lang $$lang --dir $(GUESTS_DIR)/guest-$$lang >/dev/null && \
	  $(TARGET_DIR)/release/sei-operator task build $(GUESTS_DIR)/guest-$$lang; \
	done
	$(TARGET_DIR)/release/examples/guest_costs $(GUESTS_DIR)/guest-rust/build/guest-rust.wasm \
	  $(GUESTS_DIR)/guest-python/build/guest-python.wasm $(GUESTS_DIR)/guest-js/build/guest-js.wasm

bench-scale: control-plane
	$(CARGO) build --release --locked -p sei-operator --bin sei-operator --example scale
	$(TARGET_DIR)/release/examples/scale $(N) $(STEADY)

# Leader fail-over (SIGKILL) and hand-over (SIGTERM) of two controller processes.
bench-failover: control-plane
	$(CARGO) build --release --locked -p sei-operator --bin sei-operator --example failover
	$(TARGET_DIR)/release/examples/failover
