# drq — build, test, bench, demo.  See README.md.
#
#   make            build/drq, build/drq-server, build/drq-worker
#   make test       install missing deps, build, run every test (SAN=1: ASan+UBSan build)
#   make test-cuda  the CUDA backend against the CPU (needs a GPU; says so otherwise)
#   make bench-cuda CUDA speed against PyTorch CUDA on the same GPU
#   make CUDA=0     a CPU-only build (the CUDA backend is built when nvcc + cuDNN are found)
#   make test-ref   regenerate PyTorch fixtures and check the full CIFAR-10 and ImageNet (256×256 ADM UNet) configs (needs python3-torch)
#   make bench      CPU speed against PyTorch on the same threads
#   make demo       the main job (see README)
#
# Sources are discovered per folder: adding a .c file to common/, kernels/,
# worker/ (and its rooms worker/models/, worker/eval/), server/ or cli/ needs
# no Makefile change; each tests/test_*.c is
# a test program and each tests/test_*.sh a test script.

CC       ?= gcc
SAN      ?= 0
PYTHON   ?= /usr/bin/python3
THREADS  ?= 2
# Portable by default: x86-64-v2 (SSE4.2, every x86-64 server of the last
# decade), so a binary built on one node runs on every node of a cluster;
# oneDNN picks its AVX2 / AVX-512 kernels at run time, and drq's own loops
# are pointwise or normalisation passes (docs/bench.md "Portable build").
# ARCH=native builds for this machine only.
ARCH     ?= x86-64-v2
ARCHFLAGS ?= -march=$(ARCH)

# CUDA backend (kernels/cuda): built when nvcc and cuDNN's header are found;
# CUDA=0 forces a CPU-only build (into build-cpu/), SAN=1 defaults to CPU-only
# (ASan and the CUDA driver do not mix; use compute-sanitizer for device code).
CUDA_HOME ?= $(or $(patsubst %/bin/nvcc,%,$(shell command -v nvcc 2>/dev/null)),/usr/local/cuda)
NVCC      ?= $(CUDA_HOME)/bin/nvcc
CUDA_FOUND := $(if $(and $(wildcard $(NVCC)),$(wildcard $(CUDA_HOME)/include/cudnn.h)),1,0)
ifeq ($(SAN),1)
CUDA     ?= 0
else
CUDA     ?= $(CUDA_FOUND)
endif
CUDA_ARCH ?= 80 90
CUDA_PTX  ?= 90   # PTX for newer GPUs to JIT-compile

ifeq ($(SAN),1)
BUILD    ?= build-san
OPT      := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN    := -fsanitize=address,undefined
else ifeq ($(CUDA)$(CUDA_FOUND),01)
BUILD    ?= build-cpu
OPT      := -O3 -g $(ARCHFLAGS)
LDSAN    :=
else
BUILD    ?= build
OPT      := -O3 -g $(ARCHFLAGS)
LDSAN    :=
endif

WARN     := -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS   += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -fopenmp -MMD -MP -I.
LDLIBS   += -ldnnl -ljansson -lzmq -luv -lsqlite3 -lmicrohttpd -lpng -ljpeg -lmatio -lz -lpthread -lm
LDFLAGS  += -fopenmp -Wl,--as-needed $(LDSAN)

COMMON_SRC  := $(wildcard common/*.c)
KERNELS_SRC := $(wildcard kernels/*.c kernels/cpu/*.c)
# The CUDA backend is a plugin, $(BUILD)/libdrq-cuda.so (kernels/cuda_plugin.h):
# kernels/cuda/*.c and *.cu built -fPIC with common/util.c, linked against
# cuDNN, cuBLAS and the CUDA runtime (rpath into the toolkit), exporting only
# drq_cuda_plugin_v1 (kernels/cuda/plugin.map).  The programs link no CUDA
# library: they dlopen the plugin on the first GPU request (kernels/cuda_load.c).
CUDA_PLUGIN :=
ifeq ($(CUDA),1)
CFLAGS      += -DDRQ_HAVE_CUDA
NVFLAGS     := -O3 -g -lineinfo -std=c++17 -DDRQ_HAVE_CUDA -I. $(foreach a,$(CUDA_ARCH),-gencode arch=compute_$(a),code=sm_$(a)) \
               -gencode arch=compute_$(strip $(CUDA_PTX)),code=compute_$(strip $(CUDA_PTX)) \
               -Werror all-warnings -Xcompiler -Wall,-Wextra,-Wno-unused-parameter,-Werror,-fPIC -MMD -MP
CUDA_PLUGIN := $(BUILD)/libdrq-cuda.so
PLUGIN_OBJ  := $(patsubst %.c,$(BUILD)/obj-pic/%.o,$(wildcard kernels/cuda/*.c) common/util.c) \
               $(patsubst %.cu,$(BUILD)/obj-pic/%.o,$(wildcard kernels/cuda/*.cu))
PLUGIN_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudnn -lcublas -lcudart -lstdc++ -lm
endif
LDLIBS      += -ldl
WORKER_SRC  := $(filter-out worker/main.c,$(wildcard worker/*.c worker/models/*.c worker/eval/*.c))
SERVER_SRC  := $(filter-out server/main.c,$(wildcard server/*.c))
CLI_SRC     := $(wildcard cli/*.c)
TEST_C      := $(filter-out $(if $(filter 1,$(CUDA_FOUND)),,tests/test_cuda_host.c),$(wildcard tests/test_*.c))
TEST_SH     := $(wildcard tests/test_*.sh)
TOOL_C      := $(wildcard tests/tool_*.c)
CUDA_TEST_C := $(wildcard tests/cuda_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB_COMMON  := $(BUILD)/libdrqcommon.a
LIB_KERNELS := $(BUILD)/libdrqkernels.a
LIB_WORKER  := $(BUILD)/libdrqworker.a
LIB_SERVER  := $(BUILD)/libdrqserver.a
LIBS        := $(LIB_WORKER) $(LIB_SERVER) $(LIB_KERNELS) $(LIB_COMMON)

BINS  := $(BUILD)/drq $(if $(wildcard server/main.c),$(BUILD)/drq-server) $(if $(wildcard worker/main.c),$(BUILD)/drq-worker)
TESTS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_C) $(TOOL_C) $(CUDA_TEST_C))

.PHONY: all deps test test-cuda test-ref bench bench-cuda bench-queue demo clean gpu-bundle
all: $(BINS) $(CUDA_PLUGIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB_COMMON): $(call obj,$(COMMON_SRC))
$(BUILD)/obj-pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -I$(CUDA_HOME)/include -c $< -o $@
$(BUILD)/obj-pic/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@
$(CUDA_PLUGIN): $(PLUGIN_OBJ) kernels/cuda/plugin.map
	$(CC) -shared -fopenmp -Wl,--as-needed -Wl,--no-undefined -Wl,--version-script=kernels/cuda/plugin.map \
	    -o $@ $(PLUGIN_OBJ) $(PLUGIN_LIBS)

# drq's own CPU loops, built once more for AVX2 and for AVX-512; the backend
# matching oneDNN's run-time instruction set is chosen at start (kernels/cpu/isa.c)
# (-fno-trapping-math lets GCC if-convert the clamps of swish's exp below
# AVX-512, where no masked ops exist; it changes no value, only which FP
# exceptions may be raised.  tests/test_vectorised.sh checks the loops.)
# -fno-tree-pre: GCC's partial redundancy elimination saw that on the clamped
# paths of that exp the swish's x / (1 + e) divides by a constant and put a
# second division per vector into the loop (x / const, blended in): two
# vdivps per 8 or 16 values in the fused group norm + swish.  Without PRE
# there is one; same values (the demo's table is identical), the demo 9%
# faster under AVX2 (docs/bench.md).
CPU_LOOP_FLAGS := -fno-trapping-math -fno-tree-pre
CPU_ISA_OBJ := $(BUILD)/obj/kernels/cpu/ops_cpu_avx2.o $(BUILD)/obj/kernels/cpu/ops_cpu_avx512.o
$(BUILD)/obj/kernels/cpu/ops_cpu.o: CFLAGS += $(CPU_LOOP_FLAGS)
$(BUILD)/obj/kernels/cpu/ops_cpu_avx2.o: kernels/cpu/ops_cpu.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CPU_LOOP_FLAGS) -march=x86-64-v3 -DCPU_OPS_TABLE=drq_backend_cpu_avx2 -c $< -o $@
$(BUILD)/obj/kernels/cpu/ops_cpu_avx512.o: kernels/cpu/ops_cpu.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CPU_LOOP_FLAGS) -march=x86-64-v4 -DCPU_OPS_TABLE=drq_backend_cpu_avx512 -c $< -o $@
print-%: # make -s print-VAR: a variable's value, for scripts
	@echo '$($*)'

$(LIB_KERNELS): $(call obj,$(KERNELS_SRC)) $(CPU_ISA_OBJ)
$(LIB_WORKER): $(call obj,$(WORKER_SRC))
$(LIB_SERVER): $(call obj,$(SERVER_SRC))
# schema/NNN_*.sql migrations, embedded into the server library by schema/embed.sh
SCHEMA_SQL  := $(sort $(wildcard schema/[0-9]*.sql))
$(BUILD)/gen/schema_sql.c: $(SCHEMA_SQL) schema/embed.sh
	@mkdir -p $(dir $@)
	schema/embed.sh $(SCHEMA_SQL) > $@.tmp && mv $@.tmp $@
$(BUILD)/obj/gen/schema_sql.o: $(BUILD)/gen/schema_sql.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
$(LIB_SERVER): $(BUILD)/obj/gen/schema_sql.o
$(LIBS):
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^ $(if $^,,$(BUILD)/empty.o)

$(BUILD)/empty.o:
	@mkdir -p $(BUILD)
	echo 'typedef int drq_empty_unit;' | $(CC) -x c -c - -o $@
$(LIBS): | $(BUILD)/empty.o

$(BUILD)/drq: $(call obj,$(CLI_SRC)) $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $(call obj,$(CLI_SRC)) $(LIBS) $(LDLIBS)
$(BUILD)/drq-server: $(call obj,server/main.c) $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $< $(LIBS) $(LDLIBS)
$(BUILD)/drq-worker: $(call obj,worker/main.c) $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $< $(LIBS) $(LDLIBS)
$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(LIBS) $(LDLIBS)

# test_cuda_host compiles kernels/cuda/{context,conv_cuda}.c against fake CUDA,
# cuDNN and cuBLAS functions of its own, so it links neither the real
# libraries nor the kernels library (only tensor.o and common/).  It needs
# only the CUDA headers, so it also runs in CUDA=0 and SAN=1 builds; without
# the toolkit it is left out.
$(BUILD)/obj/tests/test_cuda_host.o: CFLAGS += -I$(CUDA_HOME)/include -DDRQ_CUDA_HEADERS
$(BUILD)/tests/test_cuda_host: $(BUILD)/obj/tests/test_cuda_host.o $(BUILD)/obj/kernels/tensor.o $(LIB_COMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -ljansson -lz -lpthread -lm

deps:
	@deploy/install-deps.sh

# The numeric tests run twice: at this machine's instruction set and under
# ONEDNN_MAX_CPU_ISA=AVX2 (oneDNN's kernels and drq's own loops both follow
# it, kernels/cpu/isa.c), so an AVX-512 machine proves the AVX2 path too.
NUMERIC_TESTS := test_batch_invariance test_bf16 test_conv test_fused test_models test_ops test_purify test_purify_adm test_guided_ckpt \
                 test_pgd_ref test_engine test_resnet50 test_device_plumbing test_metrics test_analysis test_analyses test_images
NUMERIC_SH    := tests/test_parity.sh tests/test_same_rows.sh
test: deps
	@$(MAKE) --no-print-directory all-tests
	@BUILD=$(BUILD) tests/run.sh $(filter $(BUILD)/tests/test_%,$(TESTS)) $(TEST_SH) \
	    $(addprefix AVX2:$(BUILD)/tests/,$(NUMERIC_TESTS)) $(addprefix AVX2:,$(NUMERIC_SH))

.PHONY: all-tests
all-tests: $(BINS) $(CUDA_PLUGIN) $(TESTS)

# CUDA backend against the CPU (tests/cuda_test.c); says so and exits 0 without
# a GPU (1 where a GPU device node exists but CUDA cannot start, or with
# DRQ_REQUIRE_GPU=1).  No `deps`: GPU machines have no package registry; run
# `make test` (or `make deps`) first on a machine that does.
test-cuda: all-tests
	$(BUILD)/tests/cuda_test

# CUDA speed against PyTorch CUDA on the same GPU (python3 with CUDA torch, on the GPU machines)
CUDA_PYTHON ?= python3
bench-cuda: all-tests
	$(CUDA_PYTHON) tests/ref/bench_cuda.py --drq $(BUILD)/drq --pgd $(BUILD)/tests/cuda_bench_pgd

# the GPU programs and their Debian libraries, to carry to a lent GPU machine (docs/cuda.md)
gpu-bundle: all-tests
	@BUILD=$(BUILD) deploy/gpu-bundle.sh

test-ref: deps all-tests
	$(PYTHON) tests/ref/gen_fixtures.py --out tests/fixtures
	$(PYTHON) tests/ref/gen_purify_adm.py
	$(PYTHON) tests/ref/gen_bf16.py
	$(PYTHON) tests/ref/check_full.py --drq $(BUILD)/drq

bench: deps all
	$(PYTHON) tests/ref/bench.py --drq $(BUILD)/drq --threads $(THREADS)
	$(PYTHON) tests/ref/bench_sampler.py --drq $(BUILD)/drq --threads $(THREADS)

# queue throughput with the noop workload (docs/queue.md); numbers in docs/bench.md
# The main job: the Fashion-MNIST sweep of examples/fmnist-demo.json (models in
# examples/models, data from Debian's dataset-fashion-mnist), from scratch each time.
demo: deps all
	rm -f $(BUILD)/fmnist-demo.drq.db $(BUILD)/fmnist-demo.drq.db-wal $(BUILD)/fmnist-demo.drq.db-shm $(BUILD)/fmnist-demo.drq.db.log
	$(BUILD)/drq run examples/fmnist-demo.json --db $(BUILD)/fmnist-demo.drq.db --threads $(THREADS)

bench-queue: deps all
	@BUILD=$(BUILD) tests/bench_queue.sh

clean:
	rm -rf build build-san build-cpu

-include $(shell find $(BUILD)/obj $(BUILD)/obj-pic -name '*.d' 2>/dev/null)

# ---- fuzzing (tests/fuzz/, issue 10) ---------------------------------------
#   make fuzz [FUZZ_TIME=300]   build every libFuzzer harness with clang into
#                               build-fuzz/, seed the corpora from the unit
#                               tests (tests/fuzz/seeds.sh), run each target
#                               FUZZ_TIME seconds; one line per target, then
#                               "N passed, N failed"; non-zero on any failure
#   make fuzz-smoke             the same for 30 s per target (CI)
# The parsers are compiled again with clang and -fsanitize=fuzzer-no-link,
# address,undefined (never the gcc objects of build/).  Binaries are relinked
# every run so that a harness that no longer builds is reported as failed.
FUZZ_CC      ?= clang
FUZZ_TIME    ?= 300
FUZZ_BUILD   ?= build-fuzz
FUZZ_TARGETS := safetensors spec model_config proto dataset jpeg devkit
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) \
                -Wall -Wextra -Wno-unused-parameter -MMD -MP -I.
FUZZ_LIBSRC  := common/util.c common/json_get.c common/safetensors.c common/spec.c common/expand.c common/proto.c \
                common/row.c common/images.c common/dataset.c common/dataset_imagenet.c common/jpeg.c common/resample.c \
                worker/models/model_config.c
FUZZ_LIBOBJ  := $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(FUZZ_LIBSRC))
FUZZ_BINS    := $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_TARGETS))
.SECONDARY: $(FUZZ_LIBOBJ) $(patsubst %,$(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.o,$(FUZZ_TARGETS))

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-seeds fuzz-clean
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_LIBOBJ)
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ -ljansson -lzmq -ljpeg -lmatio -lz -lm -lpthread

fuzz-build: deps
	@rm -f $(FUZZ_BINS)
	-@$(MAKE) --no-print-directory -k $(FUZZ_BINS)
fuzz-seeds: fuzz-build $(LIBS)
	-@SEED_LIBS="$(LIBS) $(LDLIBS) -lgomp" tests/fuzz/seeds.sh $(FUZZ_BUILD)
fuzz: fuzz-build fuzz-seeds
	@tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_TIME) $(FUZZ_TARGETS)
fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_TIME=30
fuzz-clean:
	rm -rf $(FUZZ_BUILD)

-include $(wildcard $(FUZZ_BUILD)/obj/*/*.d $(FUZZ_BUILD)/obj/*/*/*.d)
