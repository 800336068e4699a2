# The two commands of README.md:
#   make run    the main job on the embedded model pair
#   make test   everything CI runs: deps, release build + tests, ASan/UBSan build + tests
BUILD      ?= build
BUILD_SAN  ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: run test deps build build-san check check-san bench fuzz clean

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

$(BUILD_SAN)/build.ninja:
	cmake -S . -B $(BUILD_SAN) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDFLASH_SANITIZE=ON \
	  -DDFLASH_BUILD_BENCH=OFF $(CMAKE_ARGS)

build-san: deps $(BUILD_SAN)/build.ninja
	cmake --build $(BUILD_SAN) -j $(JOBS)

check: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

check-san: build-san
	cd $(BUILD_SAN) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  DFLASH_SANITIZED=1 ctest --output-on-failure -j $(JOBS)

test: check check-san

run: build
	@bash scripts/run-demo.sh $(BUILD)

bench: build
	./$(BUILD)/bin/dflash-microbench

fuzz:
	bash scripts/fuzz.sh

clean:
	rm -rf $(BUILD) $(BUILD_SAN) build-fuzz
