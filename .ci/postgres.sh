# shellcheck shell=bash
# Makes the PostgreSQL server binaries (initdb, pg_ctl) available to the batch state tests, which start a
# throwaway cluster of their own in a temporary folder (hf_media_batch::testing::TempPostgres): installs
# Debian's `postgresql` package when they are missing. Nothing is started here.
#
#     source .ci/postgres.sh

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "== installing postgresql (server binaries for the batch state tests)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "ci/postgres.sh: no initdb found and no apt-get; install the PostgreSQL server binaries" >&2
    return 1 2>/dev/null || exit 1
  fi
fi
echo "== postgresql: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1 || command -v initdb)"
