# squadstack: PostgreSQL extension for the SquadStack outreach API

PG_CONFIG ?= pg_config

EXTENSION = squadstack
# The version is default_version in squadstack.control and nowhere else: the
# library (SQUADSTACK_VERSION), META.json and the release tarball take it from here.
EXTVERSION := $(shell sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" \
	$(dir $(firstword $(MAKEFILE_LIST)))$(EXTENSION).control)
MODULE_big = squadstack
OBJS = \
	src/access.o \
	src/backoff.o \
	src/claim.o \
	src/deliver.o \
	src/digest.o \
	src/erase.o \
	src/enqueue.o \
	src/flush.o \
	src/grants.o \
	src/guc.o \
	src/guc_check.o \
	src/http.o \
	src/intake.o \
	src/job.o \
	src/lead.o \
	src/lead_field.o \
	src/lead_list.o \
	src/lead_text.o \
	src/lease.o \
	src/limiter.o \
	src/op.o \
	src/phone.o \
	src/record.o \
	src/registry.o \
	src/responses.o \
	src/retention.o \
	src/shmem.o \
	src/spi_util.o \
	src/squadstack.o \
	src/token.o \
	src/token_file.o \
	src/trigger.o \
	src/trigger_args.o \
	src/trigger_row.o \
	src/webhook.o \
	src/webhook_payload.o \
	src/webhook_secret.o \
	src/worker.o \
	src/writeback.o \
	src/writeback_map.o

# a new install of the default version runs the base script and then the
# update scripts in turn, as contrib modules do
DATA = sql/squadstack--0.1.0.sql sql/squadstack--0.1.0--0.2.0.sql \
	sql/squadstack--0.2.0--0.3.0.sql sql/squadstack--0.3.0--0.4.0.sql
PGFILEDESC = "squadstack - SquadStack outreach API client"

REGRESS = validation enqueue privileges grants delivery ratelimit trigger webhook responses cancel engine writeback
REGRESS_OPTS = --load-extension=squadstack

# The server headers are included as system headers so that -Wextra judges
# only this extension's code.
PG_CPPFLAGS = -I$(srcdir)/src -isystem $(shell $(PG_CONFIG) --includedir-server) \
	$(shell pkg-config --cflags json-c) -DSQUADSTACK_VERSION='"$(EXTVERSION)"'
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK = -lcurl $(shell pkg-config --libs json-c)

EXTRA_CLEAN = META.json $(DISTNAME).tar.gz

# The TAP tests (test/t, PostgreSQL::Test::Cluster) are not in TAP_TESTS:
# PGXS would then run them in every "make installcheck", and they take
# minutes and cannot run as root, as test/regress.sh's pg_regress run does.
# "make prove_installcheck" runs them through PGXS's prove setup, as a user
# other than root who can write this directory; test/tap.sh does it for root.
PROVE_TESTS = test/t/*.pl
PROVE_FLAGS = -I test/t

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# "make installcheck" starts the API double for the suite and always stops
# it (test/with_double.sh), so it works on its own after "make install".
pg_regress_installcheck := $(patsubst %/pg_regress,bash $(srcdir)/test/with_double.sh %/pg_regress,$(pg_regress_installcheck))

prove_installcheck:
	$(prove_installcheck)
.PHONY: prove_installcheck

# PGXN's metadata, with the version filled in
META.json: META.json.in $(EXTENSION).control
	sed 's/@EXTVERSION@/$(EXTVERSION)/g' $< >$@

# The release tarball (for PGXN too): the committed tree at HEAD, and
# META.json.  Uncommitted changes are not in it.
DISTNAME = $(EXTENSION)-$(EXTVERSION)
dist: META.json
	git archive --format=tar.gz --prefix=$(DISTNAME)/ --add-file=META.json \
		-o $(DISTNAME).tar.gz HEAD

.PHONY: dist

# squadstack-webhookd, the webhook receiver: its own PGXS Makefile in
# webhookd/ (PGXS builds one of MODULE_big or PROGRAM per Makefile)
all: webhookd-all
install: webhookd-install
uninstall: webhookd-uninstall
clean: webhookd-clean
# (also from a build directory of its own, as pg_buildext builds: VPATH)
webhookd-all webhookd-install webhookd-uninstall webhookd-clean:
	@mkdir -p webhookd
	$(MAKE) -C webhookd -f $(abspath $(srcdir))/webhookd/Makefile \
		VPATH=$(abspath $(srcdir))/webhookd \
		$(patsubst webhookd-%,%,$@) PG_CONFIG=$(PG_CONFIG)
.PHONY: webhookd-all webhookd-install webhookd-uninstall webhookd-clean

# PGXS tracks no header dependencies: a changed header (say a struct in
# squadstack.h) must rebuild every object, or objects disagree on a layout.
$(OBJS): $(wildcard $(srcdir)/src/*.h)
