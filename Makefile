# squadstack: PostgreSQL extension for the SquadStack outreach API

PG_CONFIG ?= pg_config

EXTENSION = squadstack
MODULE_big = squadstack
OBJS = \
	src/backoff.o \
	src/deliver.o \
	src/erase.o \
	src/enqueue.o \
	src/flush.o \
	src/http.o \
	src/intake.o \
	src/lead.o \
	src/limiter.o \
	src/phone.o \
	src/responses.o \
	src/retention.o \
	src/shmem.o \
	src/spi_util.o \
	src/squadstack.o \
	src/token.o \
	src/trigger.o \
	src/webhook.o \
	src/worker.o \
	src/writeback.o

# a new install of the default version runs the base script and then the
# update scripts in turn, as contrib modules do
DATA = sql/squadstack--0.1.0.sql sql/squadstack--0.1.0--0.2.0.sql \
	sql/squadstack--0.2.0--0.3.0.sql
PGFILEDESC = "squadstack - SquadStack outreach API client"

REGRESS = validation enqueue privileges delivery ratelimit trigger webhook responses cancel engine writeback
REGRESS_OPTS = --load-extension=squadstack

# The server headers are included as system headers so that -Wextra judges
# only this extension's code.
PG_CPPFLAGS = -I$(srcdir)/src -isystem $(shell $(PG_CONFIG) --includedir-server) \
	$(shell pkg-config --cflags json-c)
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK = -lcurl $(shell pkg-config --libs json-c)

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
