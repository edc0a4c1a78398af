# kanal — one non-recursive Makefile for the SDK, the broker, the CLI, the plugins and the
# tests. Everything is built under $(BUILD) (default build/); `make asan` uses build-asan/.
#
#   make            build everything           make test         build and run every suite
#   make demo       run the demo               make test T=msg   run one suite (test_msg)
#   make bench      run the benchmarks         make asan         tests under ASan + UBSan
#   make fuzz       fuzz the parsers (clang)   FUZZ_SECONDS=30 per target
#   make install    PREFIX=/usr/local DESTDIR= make uninstall / make clean
#   make format     clang-format every C file  make format-check  fail on any that differs
#
# make installs no packages: `./run <target>` (scripts/deps.sh) installs what Debian lacks,
# then calls make. Without them make stops at once, naming the missing pkg-config packages.

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
SAN     ?=
CC      ?= cc

# The journal's SQLite: SQLCipher when pkg-config finds it (Debian libsqlcipher-dev), which
# is SQLite with optional encryption at rest (journal.key_file) and the same API; plain
# SQLite otherwise, or with `make SQLITE_PKG=sqlite3`. Everything links the one chosen, so
# no process holds both (they export the same symbols). docs/design/journal-encryption.md.
SQLITE_PKG ?= $(shell pkg-config --exists sqlcipher 2>/dev/null && echo sqlcipher || echo sqlite3)
PKGS    := libzmq jansson yaml-0.1 $(SQLITE_PKG)
# kanald's cluster mode (journal.mode: cluster): the NATS client, libnats-dev.
NATS_PKGS := libnats
# What the connectors, the simulated upstream systems and their tests use besides.
CONN_PKGS := libcurl libxml-2.0 libical libmicrohttpd openssl gnutls xmlsec1-openssl
# jq (the routes' `transform:`) has no pkg-config file on Debian 12: its header stands in.
JQ_LIBS   := -ljq

# make never installs anything: ./run (scripts/deps.sh) does. Missing libraries stop it here
# with their names instead of failing later in the compiler.
MISSING_PKGS := $(shell for p in $(PKGS) $(NATS_PKGS) $(CONN_PKGS) cunit; do \
                  pkg-config --exists $$p 2>/dev/null || echo $$p; done) \
                $(if $(wildcard /usr/include/jq.h),,libjq)
ifneq ($(strip $(MISSING_PKGS)),)
ifneq ($(filter-out clean uninstall,$(or $(MAKECMDGOALS),all)),)
$(error pkg-config does not find: $(MISSING_PKGS). Install them with ./run (or sh \
	scripts/deps.sh), which installs the missing Debian packages)
endif
endif

OPTFLAGS ?= -O2 -g
KCFLAGS := $(OPTFLAGS) -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
           -D_GNU_SOURCE -fPIC -MMD -MP -Isdk/include -Isdk -Ibroker -Itests/util
ifeq ($(strip $(MISSING_PKGS)),)
KCFLAGS += $(shell pkg-config --cflags $(PKGS) cunit)
LIBS    := $(shell pkg-config --libs $(PKGS)) -lpthread -ldl -lm
CUNIT   := $(shell pkg-config --libs cunit)
KCFLAGS += $(shell pkg-config --cflags $(CONN_PKGS))
CONN_LIBS := $(shell pkg-config --libs $(CONN_PKGS)) $(JQ_LIBS)
CRYPTO_LIBS := $(shell pkg-config --libs libcrypto)
# kanald and kanalctl link what the broker core uses (the admin HTTP endpoint, the span
# exporter's libcurl), not what the connectors use: the plugins and simulators link that
# themselves.
CORE_LIBS := $(shell pkg-config --libs libmicrohttpd libcurl) $(CRYPTO_LIBS) $(JQ_LIBS)
# Cluster mode (broker/cluster.c) speaks to NATS JetStream through the nats.c client.
KCFLAGS += $(shell pkg-config --cflags $(NATS_PKGS))
CORE_LIBS += $(shell pkg-config --libs $(NATS_PKGS))
# sd_notify (broker/notify.c) when libsystemd is there; without it kanald says nothing to
# systemd and its unit must be Type=simple.
ifeq ($(shell pkg-config --exists libsystemd && echo yes),yes)
KCFLAGS += -DHAVE_SYSTEMD
CORE_LIBS += $(shell pkg-config --libs libsystemd)
endif
endif
ifeq ($(SAN),fuzz)
KCFLAGS += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
else ifneq ($(SAN),)
KCFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
# Hardening by default (docs/design/library.md). _FORTIFY_SOURCE needs optimisation, so an
# -O0 build goes without it, and so does the fuzz build (clang's static ASan runtime does not
# intercept the fortified __asprintf_chk: its memory reads as "not malloc()-ed" when freed).
# debian/rules empties both: dpkg-buildflags gives its own.
HARDEN_CFLAGS  ?= $(if $(or $(filter -O0,$(OPTFLAGS)),$(filter fuzz,$(SAN))),,-D_FORTIFY_SOURCE=2) -fstack-protector-strong
HARDEN_LDFLAGS ?= -Wl,-z,relro,-z,now
KCFLAGS += $(HARDEN_CFLAGS)
LDFLAGS += $(HARDEN_LDFLAGS)
# debian/rules empties both: a packaged binary finds libkanal in the system's folders.
RPATH   ?= -Wl,-rpath,'$$ORIGIN/../lib'
PLUGIN_RPATH ?= -Wl,-rpath,'$$ORIGIN/../lib:$$ORIGIN/../..'

# ---- products ------------------------------------------------------------------------
SDK_SRC    := $(wildcard sdk/*.c)
SDK_LIB_SRC:= $(filter-out sdk/harness_main.c sdk/plugin_host_main.c sdk/version.c,$(SDK_SRC))
CORE_SRC   := $(filter-out broker/main.c,$(wildcard broker/*.c))
# The sandboxed jq runner that routes' transforms and the connectors' `map:` share, the
# W3C trace context that kanald's spans and the connectors' headers agree on, and the URL
# rule that the span exporter's collector follows as the connectors' upstreams do.
CORE_SHARED_SRC := plugins/common/kc_jq.c plugins/common/kc_trace.c plugins/common/kc_url.c
# plugins/common is not a plugin: it is the connectors' shared helpers (HTTP, state files),
# linked into each plugin as a static library.
PLUGINS    := $(filter-out common,$(notdir $(wildcard plugins/*)))
CONN_SRC   := $(wildcard plugins/common/*.c)
SIMS       := $(basename $(notdir $(filter-out examples/simulators/sim.c \
                 examples/simulators/population.c,$(wildcard examples/simulators/*.c))))
SIM_COMMON := examples/simulators/sim.c examples/simulators/population.c
TEST_PLUGINS := $(basename $(notdir $(wildcard tests/plugins/*.c)))
UNIT_TESTS := $(basename $(notdir $(wildcard tests/unit/test_*.c)))
INT_TESTS  := $(basename $(notdir $(wildcard tests/integration/test_*.c)))
TEST_UTIL  := $(wildcard tests/util/*.c)

LIBKANAL   := $(BUILD)/lib/libkanal.so
# The same SDK objects as an archive, linked whole into the programs and the tests, which
# use kanal__ internals that libkanal.so does not export (docs/design/library.md).
LIBKANAL_A := $(BUILD)/lib/libkanal_internal.a
SDK_MAP    := sdk/libkanal.map
# A program that loads plugins has the SDK inside it and exports the public part, with
# libkanal.so's versions, so that its plugins bind to the program's copy (one SDK state).
SDK_IN      = -Wl,--whole-archive $(LIBKANAL_A) -Wl,--no-whole-archive -Wl,--export-dynamic \
              -Wl,--version-script=$(SDK_MAP)
CORE_A     := $(BUILD)/lib/libkanalcore.a
CONN_A     := $(BUILD)/lib/libkanalconn.a
SIM_BINS   := $(SIMS:%=$(BUILD)/bin/kanal-sim-%)
# The demo's own helper (a test CA for its mutual TLS): built, never installed.
DEMO_BINS  := $(BUILD)/bin/kanal-testca
BINS       := $(BUILD)/bin/kanald $(BUILD)/bin/kanalctl $(BUILD)/bin/kanal-harness \
              $(BUILD)/bin/kanal-plugin-host
PLUGIN_SOS := $(PLUGINS:%=$(BUILD)/plugins/%.so)
TPLUG_SOS  := $(TEST_PLUGINS:%=$(BUILD)/tests/plugins/%.so)
TEST_BINS  := $(UNIT_TESTS:%=$(BUILD)/tests/%) $(INT_TESTS:%=$(BUILD)/tests/%)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

.PHONY: all build test demo bench fuzz install uninstall asan clean format format-check
all: build

# The man pages: scdoc sources in man/, built into $(BUILD)/man.
MAN_SRC  := $(wildcard man/*.scd)
MAN_PAGES := $(patsubst man/%.scd,$(BUILD)/man/%,$(MAN_SRC))

build: $(LIBKANAL) $(BINS) $(PLUGIN_SOS) $(SIM_BINS) $(DEMO_BINS) $(BUILD)/lib/pkgconfig/kanal.pc \
       $(MAN_PAGES)

$(BUILD)/man/%: man/%.scd
	@mkdir -p $(dir $@)
	scdoc < $< > $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(KCFLAGS) $(CFLAGS) -c $< -o $@

# The SDK's objects are compiled with hidden visibility: the public headers mark what they
# declare as default (#pragma GCC visibility), so only that can be exported, and the
# library's calls to its own internals are direct. The version script then versions it.
$(call obj,$(SDK_LIB_SRC)): KCFLAGS += -fvisibility=hidden
$(LIBKANAL): $(call obj,$(SDK_LIB_SRC)) $(SDK_MAP)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libkanal.so.1 -Wl,--version-script=$(SDK_MAP) $(LDFLAGS) \
		-o $@.1.0.0 $(filter %.o,$^) $(LIBS) $(CRYPTO_LIBS)
	ln -sf libkanal.so.1.0.0 $@.1
	ln -sf libkanal.so.1 $@
$(LIBKANAL_A): $(call obj,$(SDK_LIB_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The source revision the programs report (sdk/version.c): `git describe`, or REVISION=…
# (debian/rules gives the package's version), or "unknown". revision.h is rewritten only
# when it changes, so a new commit recompiles one file.
REVISION ?= $(or $(shell git describe --always --dirty 2>/dev/null),unknown)
VERSION_O := $(BUILD)/obj/sdk/version.o
$(BUILD)/gen/revision.h: FORCE
	@mkdir -p $(dir $@)
	@echo '#define KANAL_REVISION "$(REVISION)"' > $@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
$(VERSION_O): sdk/version.c $(BUILD)/gen/revision.h
	@mkdir -p $(dir $@)
	$(CC) $(KCFLAGS) -I$(BUILD)/gen $(CFLAGS) -c $< -o $@
.PHONY: FORCE
FORCE:

$(CORE_A): $(call obj,$(CORE_SRC) $(CORE_SHARED_SRC)) $(BUILD)/obj/gen/dashboard.o $(VERSION_O)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The dashboard page, compiled into kanald as a C string.
$(BUILD)/gen/dashboard.c: broker/dashboard.html
	@mkdir -p $(dir $@)
	{ echo '#include "dashboard.h"'; echo 'const char dashboard_html[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $<; echo ';'; } > $@
$(BUILD)/obj/gen/dashboard.o: $(BUILD)/gen/dashboard.c
	@mkdir -p $(dir $@)
	$(CC) $(KCFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/bin/kanald: $(call obj,broker/main.c) $(CORE_A) $(LIBKANAL_A) $(SDK_MAP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(call obj,broker/main.c) $(CORE_A) $(SDK_IN) $(CORE_LIBS) $(LIBS) $(CRYPTO_LIBS)

$(BUILD)/bin/kanalctl: $(call obj,$(wildcard cli/*.c)) $(CORE_A) $(LIBKANAL_A) $(SDK_MAP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(call obj,$(wildcard cli/*.c)) $(CORE_A) $(SDK_IN) $(CORE_LIBS) $(LIBS) $(CRYPTO_LIBS)

$(BUILD)/bin/kanal-harness: $(call obj,sdk/harness_main.c) $(VERSION_O) $(LIBKANAL_A) $(SDK_MAP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(call obj,sdk/harness_main.c) $(VERSION_O) $(SDK_IN) $(LIBS) $(CRYPTO_LIBS)

# The process an `isolation: process` instance runs in; kanald finds it beside itself.
$(BUILD)/bin/kanal-plugin-host: $(call obj,sdk/plugin_host_main.c) $(VERSION_O) $(LIBKANAL_A) $(SDK_MAP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(call obj,sdk/plugin_host_main.c) $(VERSION_O) $(SDK_IN) $(LIBS) $(CRYPTO_LIBS)

# A plugin is every .c file in its folder, linked against libkanal with hidden visibility:
# only the descriptor (KANAL_PLUGIN_EXPORT) is exported.
PLUGIN_CFLAGS = -fvisibility=hidden
# Keep object files that pattern rules made on the way (plugins', simulators'): without
# this make deletes them as intermediates and rebuilds them every time.
.SECONDARY:
.SECONDEXPANSION:
$(BUILD)/plugins/%.so: $$(call obj,$$(wildcard plugins/$$*/*.c)) $(CONN_A) $(LIBKANAL)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $(filter %.o,$^) $(CONN_A) -L$(BUILD)/lib -lkanal $(CONN_LIBS) $(LIBS) \
		$(PLUGIN_RPATH)

$(CONN_A): $(call obj,$(CONN_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The simulated upstream systems (examples/simulators): one program each, sharing the HTTP
# scaffolding (sim.c) and the synthetic population (population.c).
$(BUILD)/bin/kanal-sim-%: $(BUILD)/obj/examples/simulators/%.o $(call obj,$(SIM_COMMON)) $(LIBKANAL)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) -L$(BUILD)/lib -lkanal $(CONN_LIBS) $(LIBS) $(RPATH)

# kanal-testca DIR: the tests' CA (tests/util/testca.c) for the demo's certificates.
$(BUILD)/bin/kanal-testca: $(call obj,examples/demo/kanal-testca.c tests/util/testca.c)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CRYPTO_LIBS)


# A plugin sees the public SDK headers and its own folder, nothing of the broker's, the
# SDK's private headers or the tests'.
PLUGIN_KCFLAGS = $(filter-out -Isdk -Ibroker -Itests/util,$(KCFLAGS)) -I$(<D)
$(BUILD)/obj/plugins/%.o: plugins/%.c
	@mkdir -p $(dir $@)
	$(CC) $(PLUGIN_KCFLAGS) $(CFLAGS) $(PLUGIN_CFLAGS) -c $< -o $@

$(BUILD)/tests/plugins/%.so: $(BUILD)/obj/tests/plugins/%.o $(LIBKANAL)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $< -L$(BUILD)/lib -lkanal $(LIBS) -Wl,-rpath,'$$ORIGIN/../../lib'

$(BUILD)/obj/tests/plugins/%.o: tests/plugins/%.c
	@mkdir -p $(dir $@)
	$(CC) $(KCFLAGS) $(CFLAGS) $(PLUGIN_CFLAGS) -c $< -o $@

# A plugin built against the ABI 1.0 header, which comes first on its include path: the
# host must keep loading what was built before ABI 1.1.
$(BUILD)/obj/tests/plugins/tp_abi10.o: tests/plugins/tp_abi10.c
	@mkdir -p $(dir $@)
	$(CC) -Itests/abi/kanal-1.0 $(KCFLAGS) $(CFLAGS) $(PLUGIN_CFLAGS) -c $< -o $@

TEST_LINK = $(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(CORE_A) $(CONN_A) $(SDK_IN) $(CONN_LIBS) $(CORE_LIBS) $(LIBS) $(CUNIT) \
	-Wl,-rpath,'$$ORIGIN/../lib'
$(UNIT_TESTS:%=$(BUILD)/tests/%): $(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(call obj,$(TEST_UTIL)) $(CORE_A) $(CONN_A) $(LIBKANAL_A) $(LIBKANAL)
	@mkdir -p $(dir $@)
	$(TEST_LINK)
$(INT_TESTS:%=$(BUILD)/tests/%): $(BUILD)/tests/%: $(BUILD)/obj/tests/integration/%.o $(call obj,$(TEST_UTIL)) $(CORE_A) $(CONN_A) $(LIBKANAL_A) $(LIBKANAL)
	@mkdir -p $(dir $@)
	$(TEST_LINK)

# The fuzz targets (tests/fuzz) also run, on their saved inputs, in a unit suite.
# A connector's target is linked with the connector files it exercises.
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRC))
FUZZ_WITH_daycare  := plugins/daycare/poll.c plugins/daycare/daycare.c plugins/daycare/deliver.c \
                      plugins/daycare/confirm.c
FUZZ_WITH_staff    := plugins/staff/feed.c plugins/staff/dates.c
FUZZ_WITH_cpr_soap := plugins/cpr/soap.c
FUZZ_WITH_calendar := plugins/calendar/vevent.c
FUZZ_WITH_http     := plugins/http/binding.c
FUZZ_WITH_dlq      := cli/dlq_print.c cli/common.c
FUZZ_WITH := $(foreach t,$(FUZZ_TARGETS),$(FUZZ_WITH_$(t)))
$(BUILD)/tests/test_fuzz_regressions: $(call obj,$(FUZZ_SRC)) \
	$(patsubst %.c,$(BUILD)/obj/fuzzwith/%.o,$(FUZZ_WITH)) $(CONN_A)
# The cpr plugin's SF1520 unit suite is linked with the file it tests.
$(BUILD)/tests/test_cpr_soap: $(BUILD)/obj/fuzzwith/plugins/cpr/soap.o \
	$(BUILD)/obj/fuzzwith/plugins/cpr/token.o
# The digitalpost connector's SF1601 writer, validated against contracts/schemas.
$(BUILD)/tests/test_memo: $(BUILD)/obj/fuzzwith/plugins/digitalpost/memo.o \
	$(BUILD)/obj/fuzzwith/plugins/digitalpost/pko_schema.o
$(BUILD)/obj/fuzzwith/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(KCFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/lib/pkgconfig/kanal.pc: kanal.pc.in
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(abspath $(BUILD))|; s|@PC_INCLUDEDIR@|$(abspath sdk/include)|' \
	    -e 's|@PC_LIBDIR@|$${prefix}/lib|' $< > $@

# ---- tests -------------------------------------------------------------------------------
T ?=
test:
	@$(MAKE) --no-print-directory build $(if $(T),$(BUILD)/tests/test_$(T),$(TEST_BINS)) $(TPLUG_SOS)
	@BUILD=$(BUILD) sh tests/run.sh $(if $(T),test_$(T),$(UNIT_TESTS) $(INT_TESTS))

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 OPTFLAGS="-O1 -g" test T=$(T)

# ---- fuzzing (clang's libFuzzer) -------------------------------------------------------------
# `make fuzz` builds every tests/fuzz/fuzz_<target>.c into build-fuzz/fuzz/<target> and runs
# each for FUZZ_SECONDS (default 30), starting from tests/data/fuzz/<target>/; a crash is
# written there as crash-<hash>, to be fixed and kept as a regression input.
FUZZ_SECONDS ?= 30
fuzz:
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang SAN=fuzz OPTFLAGS="-O1 -g" fuzz-run

FUZZ_BINS := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%)
# A fuzz target loads no plugin, so it links the SDK without SDK_IN's version script: that
# script's "local: *" would also hide clang's statically linked ASan interceptors (malloc,
# free), and memory that libc allocates inside asprintf would then be freed by ASan's free.
SDK_IN_FUZZ = -Wl,--whole-archive $(LIBKANAL_A) -Wl,--no-whole-archive
$(BUILD)/fuzz/%: tests/fuzz/fuzz_%.c $(CORE_A) $(CONN_A) $(LIBKANAL_A) $(LIBKANAL)
	@mkdir -p $(dir $@)
	$(CC) $(KCFLAGS) -DFUZZ_LIBFUZZER -fsanitize=fuzzer,address,undefined -o $@ $< \
		$(FUZZ_WITH_$*) $(CORE_A) $(CONN_A) $(SDK_IN_FUZZ) $(CONN_LIBS) $(CORE_LIBS) $(LIBS) $(CRYPTO_LIBS)

.PHONY: fuzz-run
fuzz-run: $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p $(BUILD)/fuzz/corpus/$$t; \
		$(BUILD)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
			$$(test -f tests/fuzz/$$t.dict && echo -dict=tests/fuzz/$$t.dict) \
			-artifact_prefix=tests/data/fuzz/$$t/crash- \
			$(BUILD)/fuzz/corpus/$$t tests/data/fuzz/$$t >$(BUILD)/fuzz/$$t.log 2>&1; \
		echo "fuzz: $$t: $$(grep -E '^#[0-9]+' $(BUILD)/fuzz/$$t.log | tail -n 1 | \
			awk '{print $$1 " runs, " $$4 " coverage edges"}') (log: $(BUILD)/fuzz/$$t.log)"; \
	done; \
	if ls tests/data/fuzz/*/crash-* >/dev/null 2>&1; then \
		echo "fuzz: crashes found (fix them; keep the inputs as regression cases):"; \
		ls tests/data/fuzz/*/crash-*; exit 1; \
	fi; echo "fuzz: no crashes"

# ---- demo and benchmarks -------------------------------------------------------------------
demo:
	@$(MAKE) --no-print-directory build
	@BUILD=$(BUILD) sh scripts/demo.sh

bench:
	@$(MAKE) --no-print-directory build
	@BUILD=$(BUILD) sh bench/run.sh

# ---- install -----------------------------------------------------------------------------
# The directories are autotools' names. With PREFIX=/usr (a Debian package) the config goes
# to /etc, state to /var/lib, the runtime folder to /run and the library to the multiarch
# folder; with any other PREFIX everything stays under it. DESTDIR is the staging root.
# An existing config is never overwritten: the new one goes beside it as FILE.dist.
ifeq ($(PREFIX),/usr)
SYSCONFDIR    ?= /etc
LOCALSTATEDIR ?= /var
RUNSTATEDIR   ?= /run
MULTIARCH     := $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)
LIBDIR        ?= $(PREFIX)/lib$(if $(MULTIARCH),/$(MULTIARCH))
UNITDIR       ?= $(or $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null),/lib/systemd/system)
else
SYSCONFDIR    ?= $(PREFIX)/etc
LOCALSTATEDIR ?= $(PREFIX)/var
RUNSTATEDIR   ?= $(LOCALSTATEDIR)/run
LIBDIR        ?= $(PREFIX)/lib
UNITDIR       ?= $(PREFIX)/lib/systemd/system
endif
BINDIR      ?= $(PREFIX)/bin
INCLUDEDIR  ?= $(PREFIX)/include
DATADIR     ?= $(PREFIX)/share
MANDIR      ?= $(DATADIR)/man
DOCDIR      ?= $(DATADIR)/doc/kanal
PLUGDIR     ?= $(LIBDIR)/kanal/plugins
CONFDIR      = $(SYSCONFDIR)/kanal
STATEDIR     = $(LOCALSTATEDIR)/lib/kanal
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
# kanal.pc names its folders relative to ${prefix} (pkg-config --define-prefix, a relocated
# tree) and forces no rpath on what links it: a consumer outside the system's library
# folders adds its own (examples/hello-plugin/Makefile).
pc_rel = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

# Files whose text depends on the directories above, made afresh by every install.
GEN := $(BUILD)/install
SUBST = sed -e 's|@PREFIX@|$(PREFIX)|g; s|@LIBDIR@|$(LIBDIR)|g; s|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	    -e 's|@BINDIR@|$(BINDIR)|g; s|@CONFDIR@|$(CONFDIR)|g; s|@STATEDIR@|$(STATEDIR)|g' \
	    -e 's|@RUNDIR@|$(RUNSTATEDIR)/kanal|g' \
	    -e 's|@PC_LIBDIR@|$(call pc_rel,$(LIBDIR))|g; s|@PC_INCLUDEDIR@|$(call pc_rel,$(INCLUDEDIR))|g'
.PHONY: install-gen install-demo
install-gen:
	@mkdir -p $(GEN)/routes
	$(SUBST) kanal.pc.in > $(GEN)/kanal.pc
	$(SUBST) contrib/systemd/kanald.service.in > $(GEN)/kanald.service
	$(SUBST) contrib/systemd/kanal.tmpfiles.in > $(GEN)/kanal.tmpfiles
	$(SUBST) contrib/systemd/kanal.sysusers.in > $(GEN)/kanal.sysusers
	sed -e 's|^plugin_dir:.*|plugin_dir: $(PLUGDIR)|; s|^routes:.*|routes: routes|' \
	    -e 's|^state_dir:.*|state_dir: $(STATEDIR)|' \
	    -e 's|^run_dir:.*|run_dir: $(RUNSTATEDIR)/kanal|' \
	    -e 's|\.\./var/demo/|$(STATEDIR)/demo/|' \
		conf/kanald.yaml > $(GEN)/kanald.yaml
	cp routes/*.yaml routes/*.list $(GEN)/routes/

# install_conf SRC DEST: installs SRC as DEST unless DEST exists with other text, in which
# case SRC goes beside it as DEST.dist (an upgrade never overwrites an edited config).
install_conf = if [ -e $(2) ] && ! cmp -s $(1) $(2); then \
		install -m 644 $(1) $(2).dist; echo "install: $(2) kept; the new one is $(2).dist"; \
	else install -m 644 $(1) $(2); rm -f $(2).dist; fi
# uninstall_conf SRC DEST: removes DEST only when it is still what install put there.
uninstall_conf = rm -f $(2).dist; if cmp -s $(1) $(2); then rm -f $(2); \
	elif [ -e $(2) ]; then echo "uninstall: $(2) was edited; kept"; fi

INST_BINS := $(notdir $(BINS))
INST_PLUGINS := $(notdir $(PLUGIN_SOS))
INST_HEADERS := $(notdir $(wildcard sdk/include/kanal/*.h))
INST_ROUTES := $(notdir $(wildcard routes/*.yaml routes/*.list))

install: all install-gen
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(PLUGDIR) \
		$(DESTDIR)$(INCLUDEDIR)/kanal $(DESTDIR)$(CONFDIR)/routes $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(DOCDIR)/examples/hello-plugin
	install -m 755 $(BINS) $(DESTDIR)$(BINDIR)/
	install -m 644 $(LIBKANAL).1.0.0 $(DESTDIR)$(LIBDIR)/
	ln -sf libkanal.so.1.0.0 $(DESTDIR)$(LIBDIR)/libkanal.so.1
	ln -sf libkanal.so.1 $(DESTDIR)$(LIBDIR)/libkanal.so
	install -m 644 sdk/include/kanal/*.h $(DESTDIR)$(INCLUDEDIR)/kanal/
	install -m 644 $(PLUGIN_SOS) $(DESTDIR)$(PLUGDIR)/
	install -m 644 $(GEN)/kanal.pc $(DESTDIR)$(LIBDIR)/pkgconfig/kanal.pc
	install -m 644 $(GEN)/kanald.service $(DESTDIR)$(UNITDIR)/kanald.service
	install -m 644 $(GEN)/kanal.tmpfiles $(DESTDIR)$(TMPFILESDIR)/kanal.conf
	install -m 644 $(GEN)/kanal.sysusers $(DESTDIR)$(SYSUSERSDIR)/kanal.conf
	install -m 644 examples/hello-plugin/* $(DESTDIR)$(DOCDIR)/examples/hello-plugin/
	for m in $(notdir $(MAN_PAGES)); do s=$${m##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s; \
		install -m 644 $(BUILD)/man/$$m $(DESTDIR)$(MANDIR)/man$$s/; done
	$(call install_conf,$(GEN)/kanald.yaml,$(DESTDIR)$(CONFDIR)/kanald.yaml)
	for r in $(INST_ROUTES); do \
		$(call install_conf,$(GEN)/routes/$$r,$(DESTDIR)$(CONFDIR)/routes/$$r); done
	[ -d $(DESTDIR)$(STATEDIR) ] || install -d -m 700 $(DESTDIR)$(STATEDIR)

# The demo's simulated upstream systems: never part of a server install.
install-demo: all
	install -d $(DESTDIR)$(BINDIR)
	install -m 755 $(SIM_BINS) $(DESTDIR)$(BINDIR)/

# Removes only what install put there: never an edited config, the state folder, or a
# plugin or header that another package installed beside kanal's.
uninstall: install-gen
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(INST_BINS) $(notdir $(SIM_BINS)))
	rm -f $(DESTDIR)$(LIBDIR)/libkanal.so $(DESTDIR)$(LIBDIR)/libkanal.so.1 \
		$(DESTDIR)$(LIBDIR)/libkanal.so.1.0.0
	rm -f $(DESTDIR)$(LIBDIR)/pkgconfig/kanal.pc $(DESTDIR)$(UNITDIR)/kanald.service \
		$(DESTDIR)$(TMPFILESDIR)/kanal.conf $(DESTDIR)$(SYSUSERSDIR)/kanal.conf
	rm -f $(addprefix $(DESTDIR)$(PLUGDIR)/,$(INST_PLUGINS))
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/kanal/,$(INST_HEADERS))
	rm -rf $(DESTDIR)$(DOCDIR)/examples/hello-plugin
	for m in $(notdir $(MAN_PAGES)); do rm -f $(DESTDIR)$(MANDIR)/man$${m##*.}/$$m; done
	$(call uninstall_conf,$(GEN)/kanald.yaml,$(DESTDIR)$(CONFDIR)/kanald.yaml)
	for r in $(INST_ROUTES); do \
		$(call uninstall_conf,$(GEN)/routes/$$r,$(DESTDIR)$(CONFDIR)/routes/$$r); done
	rmdir $(DESTDIR)$(PLUGDIR) $(DESTDIR)$(LIBDIR)/kanal $(DESTDIR)$(INCLUDEDIR)/kanal \
		$(DESTDIR)$(CONFDIR)/routes $(DESTDIR)$(CONFDIR) $(DESTDIR)$(DOCDIR)/examples \
		$(DESTDIR)$(DOCDIR) 2>/dev/null || true

clean:
	rm -rf build build-asan build-fuzz

# ---- formatting (.clang-format) -----------------------------------------------------------------
# Every C file git tracks, but tests/abi/: the ABI 1.0 headers are kept as they were released.
FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null | grep -v '^tests/abi/' || \
		 find . -name '*.[ch]' -not -path './build*' -not -path './tests/abi/*')
format:
	clang-format -i $(FORMAT_FILES)
format-check:
	@clang-format --dry-run --Werror $(FORMAT_FILES) && \
		echo "format-check: $(words $(FORMAT_FILES)) files as .clang-format says"

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
