# The commands a newcomer needs; each installs what is missing first.
#   make demo   install, build, run gati info + eval + build on the demo model
#   make test   install, build, run the whole test suite (ctest)
#   make build  install and build only
#   make bench  install, build, run the benchmarks under bench/

BUILD_DIR ?= build
JOBS ?= $(shell nproc)
DEMO_MODEL ?= models/resnet56.pt
DEMO_BUNDLE ?= $(BUILD_DIR)/demo.bundle
THREADS ?= 1
EVAL_THREADS ?= $(JOBS)

.PHONY: deps configure build test demo bench clean

deps:
	bash scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DGATI_BUILD_TESTS=ON -DGATI_BUILD_BENCHMARKS=ON

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

demo: build
	$(BUILD_DIR)/gati info $(DEMO_MODEL) --threads $(THREADS)
	$(BUILD_DIR)/gati eval $(DEMO_MODEL) --split test --threads $(EVAL_THREADS)
	$(BUILD_DIR)/gati build --model $(DEMO_MODEL) --out $(DEMO_BUNDLE) \
	  --threads $(EVAL_THREADS)

bench: build
	$(BUILD_DIR)/bench/gati_bench_segments models/resnet20.pt \
	  models/resnet56.pt --threads $(THREADS)
	$(BUILD_DIR)/bench/gati_bench_lookup --model $(DEMO_MODEL)

clean:
	rm -rf $(BUILD_DIR)
