# The commands a newcomer needs; each installs what is missing first.
#   make demo   install, build, run gati info + eval + build on the demo model
#   make test   install, build, run the whole test suite (ctest, make tsan,
#               make fuzz, make check-deps)
#   make check-deps  prove scripts/debian-packages.txt complete against what
#               the build trees, scripts and Python imports use
#   make check-clean-install  debootstrap a minimal Debian 12, run
#               install-deps and make build in it with chroot (minutes; not
#               part of make test)
#   make tsan   the engine core's concurrency tests under ThreadSanitizer
#   make fuzz   libFuzzer on the request decoders (FUZZ_SECONDS, default 60)
#   make thread-safety  clang's -Wthread-safety, as errors, on the code that
#               takes locks (engine core, server, their tests)
#   make build  install and build only
#   make bench  install, build, run the benchmarks under bench/ (builds the
#               demo bundle first when it is missing)
#   make bench-eval   the evaluation suite (every system on every workload,
#               bench/out/report.md with plots); part of make bench
#   make bench-serve  HTTP load (wrk, concurrency 1/8/32/64) on `gati serve` with
#               the three demo bundles: gati as built, gati planned for batches
#               of 32, the base model batched and unbatched
#   make bench-overhead  the server's own time per request (HTTP JSON, HTTP
#               binary, gRPC; concurrency 1 and 16), bench/out/serve_overhead.md
#   make bench-modes  the three demo bundles (ResNet-20, ResNet-56, ViT), modes auto/parallel/sequential, iid
#               and video traces, against the base model (bench/out/modes.md)

BUILD_DIR ?= build
JOBS ?= $(shell nproc)
DEMO_MODEL ?= models/resnet56.pt
DEMO_BUNDLE ?= $(BUILD_DIR)/demo.bundle
THREADS ?= 1
EVAL_THREADS ?= $(JOBS)

.PHONY: deps configure build test tsan thread-safety fuzz check-deps check-clean-install demo bench bench-eval bench-learner \
  bench-serve bench-overhead bench-modes clean

deps:
	bash scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DGATI_BUILD_TESTS=ON -DGATI_BUILD_BENCHMARKS=ON

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) tsan
	$(MAKE) thread-safety
	$(MAKE) fuzz
	$(MAKE) check-deps

# The engine core's concurrency tests (hot swap under load, parallel
# lookups) under ThreadSanitizer; LibTorch is not involved, so every
# reported race is ours.
TSAN_DIR ?= build-tsan
tsan: deps
	cmake -S . -B $(TSAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_FLAGS="-fsanitize=thread" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" \
	  -DGATI_BUILD_TESTS=ON -DGATI_BUILD_BENCHMARKS=OFF
	cmake --build $(TSAN_DIR) -j $(JOBS) --target runtime_core_test batcher_test
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	  $(TSAN_DIR)/tests/runtime_core_test --gtest_repeat=3
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	  $(TSAN_DIR)/tests/batcher_test --gtest_repeat=3

# clang's thread-safety analysis on every lock of the engine core and the
# server (absl::Mutex is annotated; std::mutex is not, and would check
# nothing), warnings as errors. No LibTorch target is built.
TSA_DIR ?= build-tsa
thread-safety: deps
	cmake -S . -B $(TSA_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_FLAGS="-Wthread-safety -Werror=thread-safety" \
	  -DGATI_BUILD_TESTS=ON -DGATI_BUILD_BENCHMARKS=OFF
	cmake --build $(TSA_DIR) -j $(JOBS) --target gati_runtime_core gati_serve \
	  runtime_core_test serve_core_test
	@if clang++ -std=c++17 -fsyntax-only -Iinclude -Isrc -Wthread-safety \
	    -Werror=thread-safety tests/runtime/thread_safety_violation.cc 2>/dev/null; then \
	  echo "thread-safety: FAILED: an unlocked write to a guarded field compiled"; exit 1; \
	else echo "thread-safety: OK (and an unlocked write to a guarded field is rejected)"; fi

# libFuzzer (clang, with ASan and UBSan) on the request decoders, for
# FUZZ_SECONDS, starting from the seeds in fuzz/corpus/.
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
fuzz: deps
	cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_COMPILER=clang++ -DGATI_BUILD_TESTS=OFF \
	  -DGATI_BUILD_BENCHMARKS=OFF -DGATI_BUILD_FUZZERS=ON
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target oip_decode_fuzzer
	mkdir -p $(FUZZ_DIR)/corpus/oip_decode
	cp fuzz/corpus/oip_decode/* $(FUZZ_DIR)/corpus/oip_decode/
	$(FUZZ_DIR)/fuzz/oip_decode_fuzzer -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	  -print_final_stats=1 $(FUZZ_DIR)/corpus/oip_decode

# Every file the three build trees resolved, every program the scripts run and
# every module the Python code imports belongs to a package that
# scripts/debian-packages.txt lists or pulls in (ctest's check_deps_test
# checks the main tree and that a shortened list fails).
check-deps:
	bash scripts/check-deps.sh $(foreach d,$(BUILD_DIR) $(TSAN_DIR) $(TSA_DIR) $(FUZZ_DIR),$(if $(wildcard $(d)/CMakeCache.txt),--build-dir $(d)))

# The honest proof of the package list: a fresh minimal Debian 12 in a
# folder, install-deps and make build inside it (scripts/check-clean-install.sh).
CLEAN_TARGET ?= build
check-clean-install: deps
	bash scripts/check-clean-install.sh /var/tmp/gati-clean-root $(CLEAN_TARGET)

DEMO_TRACE ?= $(BUILD_DIR)/demo.iid.npy
DEMO_HTTP_PORT ?= 8000

demo: build
	$(BUILD_DIR)/gati info $(DEMO_MODEL) --threads $(THREADS)
	$(BUILD_DIR)/gati eval $(DEMO_MODEL) --split test --threads $(EVAL_THREADS)
	$(BUILD_DIR)/gati build --model $(DEMO_MODEL) --out $(DEMO_BUNDLE) \
	  --threads $(EVAL_THREADS)
	$(BUILD_DIR)/gati trace --kind iid --n 2000 --seed 1 --out $(DEMO_TRACE)
	$(BUILD_DIR)/gati replay $(DEMO_BUNDLE) --trace $(DEMO_TRACE) \
	  --labels $(BUILD_DIR)/demo.iid.labels.npy --threads $(THREADS)
	/usr/bin/python3 tools/gati_client.py --model demo --trace $(DEMO_TRACE) \
	  --bundle $(DEMO_BUNDLE) --write-request $(BUILD_DIR)/demo.request.json
	@echo
	@echo "Serving the demo bundle as model 'demo' (Ctrl-C stops). Try, from another shell:"
	@echo "  curl -s -X POST localhost:$(DEMO_HTTP_PORT)/v2/models/demo/infer -H 'Content-Type: application/json' -d @$(BUILD_DIR)/demo.request.json"
	@echo
	$(BUILD_DIR)/gati serve --model demo=$(DEMO_BUNDLE) --http-port $(DEMO_HTTP_PORT) \
	  --threads $(THREADS)

# The demo bundle, built once for the benchmarks when `make demo` has not.
$(DEMO_BUNDLE)/manifest.json:
	$(BUILD_DIR)/gati build --model $(DEMO_MODEL) --out $(DEMO_BUNDLE) \
	  --threads $(EVAL_THREADS)

# The ResNet-20 demo bundle, for the benchmarks that run both demo models.
DEMO20_BUNDLE ?= $(BUILD_DIR)/resnet20.bundle
$(DEMO20_BUNDLE)/manifest.json:
	$(BUILD_DIR)/gati build --model models/resnet20.pt --out $(DEMO20_BUNDLE) \
	  --threads $(EVAL_THREADS)

# The ViT demo bundle (token taps).
DEMOVIT_BUNDLE ?= $(BUILD_DIR)/vit6.bundle
$(DEMOVIT_BUNDLE)/manifest.json:
	$(BUILD_DIR)/gati build --model models/vit6.pt --out $(DEMOVIT_BUNDLE) \
	  --threads $(EVAL_THREADS)

bench: build
	$(BUILD_DIR)/bench/gati_bench_segments models/resnet20.pt \
	  models/resnet56.pt --threads $(THREADS)
	$(BUILD_DIR)/bench/gati_bench_lookup --model $(DEMO_MODEL)
	$(BUILD_DIR)/bench/gati_bench_decode
	$(BUILD_DIR)/bench/gati_bench_engine
	$(MAKE) bench-modes
	$(MAKE) bench-learner
	$(MAKE) bench-serve
	$(MAKE) bench-eval

# p99 of concurrent requests while the online learner trains, against the
# same run's requests at rest (and the base model's, for the machine's own
# drift); the learner is made busy with a high feedback rate.
bench-learner: build $(DEMO_BUNDLE)/manifest.json
	bash bench/learner_interference.sh $(BUILD_DIR)/gati $(DEMO_BUNDLE) $(BUILD_DIR)

# The evaluation suite: traces of EVAL_TRACE requests per workload (iid,
# skewed, video, mixed), the first EVAL_REQUESTS of each replayed through
# systems (a)-(g) side by side; results.json, report.md and plots in
# bench/out/. `make test` runs the same in --quick mode (eval_quick_test).
EVAL_TRACE ?= 10000
EVAL_REQUESTS ?= 3000
EVAL_OUT ?= bench/out
bench-eval: build $(DEMO_BUNDLE)/manifest.json
	$(BUILD_DIR)/bench/gati_eval $(DEMO_BUNDLE) --out $(EVAL_OUT) \
	  --trace-requests $(EVAL_TRACE) --requests $(EVAL_REQUESTS)
	/usr/bin/python3 bench/report.py $(EVAL_OUT)/results.json $(EVAL_OUT)

# Speedup over the base model at the mean, p50, p95 and p99, per demo bundle,
# mode and trace kind, in one run each (bench/modes.sh); configurations
# slower than the base model are flagged in bench/out/modes.md.
MODES_REQUESTS ?= 3000
MODES_REPEATS ?= 3
bench-modes: build $(DEMO_BUNDLE)/manifest.json $(DEMO20_BUNDLE)/manifest.json \
	  $(DEMOVIT_BUNDLE)/manifest.json
	bash bench/modes.sh $(BUILD_DIR)/gati $(EVAL_OUT) $(MODES_REQUESTS) $(MODES_REPEATS) \
	  $(DEMO20_BUNDLE) $(DEMO_BUNDLE) $(DEMOVIT_BUNDLE)

# HTTP load on `gati serve` with the ResNet-56 and ViT demo bundles: wrk at
# concurrency 1, 8, 32 and 64 for SERVE_SECONDS each, on gati, on the base
# model behind the same dynamic batcher, and on the base model without
# batching (bench/out/serve-*/serve_load.md and .png).
SERVE_SECONDS ?= 20
OVERHEAD_SECONDS ?= 15
bench-serve: build $(DEMO_BUNDLE)/manifest.json $(DEMOVIT_BUNDLE)/manifest.json $(DEMO20_BUNDLE)/manifest.json
	bash bench/serve_load.sh $(BUILD_DIR)/gati $(DEMO_BUNDLE) bench/out/serve-resnet56 $(SERVE_SECONDS)
	bash bench/serve_load.sh $(BUILD_DIR)/gati $(DEMOVIT_BUNDLE) bench/out/serve-vit6 $(SERVE_SECONDS)
	bash bench/serve_load.sh $(BUILD_DIR)/gati $(DEMO20_BUNDLE) bench/out/serve-resnet20 $(SERVE_SECONDS)

bench-overhead: build $(DEMO_BUNDLE)/manifest.json
	mkdir -p bench/out
	/usr/bin/python3 bench/serve_overhead.py $(BUILD_DIR)/gati $(DEMO_BUNDLE) bench/out/serve_overhead.md $(OVERHEAD_SECONDS)

clean:
	rm -rf $(BUILD_DIR) $(TSAN_DIR) $(TSA_DIR) $(FUZZ_DIR)
