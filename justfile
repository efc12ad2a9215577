# The front door. `just demo` and `just test` work on a fresh machine: when DATABASE_URL /
# NATS_URL are unset and nothing answers on 5432 / 4222, private PostgreSQL and nats-server
# instances are started under target/ and stopped afterwards.

# Where cargo builds (`CARGO_TARGET_DIR`, default `target/`).
target_dir := env_var_or_default("CARGO_TARGET_DIR", justfile_directory() / "target")
# The tests' Python packages when the `python3` on PATH takes none (see python-prerequisites).
python_dir := target_dir / "python"

# Load a deterministic customer history through the ledger and verify it.
demo *args:
    cargo run --release --bin ledger -- demo {{args}}

# Every test, against real PostgreSQL and NATS. The binary is run directly, not through
# `cargo run`, whose CARGO_* and LD_LIBRARY_PATH variables would reach the nested `cargo test`;
# `--no-fail-fast` runs every test binary and lists each failure at the end.
[doc('Every test, against real PostgreSQL and NATS')]
test: python-prerequisites
    #!/usr/bin/env bash
    set -euo pipefail
    echo "just test: the first build compiles the whole workspace (several minutes on 2 cores and several GB under {{target_dir}})"
    cargo build --quiet --bin ledger
    python3 -c 'import aiosmtpd, localstripe' 2>/dev/null || export PATH="{{python_dir}}/bin:$PATH"
    exec {{target_dir}}/debug/ledger with-services -- cargo test --workspace --no-fail-fast

# What the tests need besides cargo, checked before anything compiles: Python's aiosmtpd for the
# email tests and localstripe (a stateful fake Stripe API that signs and delivers webhooks) for
# the Stripe connector tests and the browser test, installed into the `python3` on PATH when it
# lacks them. A `python3` that takes no packages (Debian's: PEP 668, "externally managed") gets a
# virtual environment under target/python instead, which `test` and `e2e` then put first on PATH.
[private]
python-prerequisites:
    #!/usr/bin/env bash
    set -euo pipefail
    for python in python3 "{{python_dir}}/bin/python3"; do
        if "$python" -c 'import aiosmtpd, localstripe' 2>/dev/null; then exit 0; fi
    done
    if python3 -m pip install --quiet aiosmtpd localstripe 2>/dev/null; then exit 0; fi
    echo "just: $(command -v python3) takes no packages; installing aiosmtpd and localstripe into {{python_dir}}"
    if ! { python3 -m venv "{{python_dir}}" && "{{python_dir}}/bin/python3" -m pip install --quiet aiosmtpd localstripe; }; then
        echo "error: the email and Stripe tests need aiosmtpd and localstripe: run 'python3 -m pip install aiosmtpd localstripe' (on Debian, 'apt-get install python3-venv' lets just make a virtual environment) and run just again" >&2
        exit 1
    fi

# Benchmarks (crates/ledger-bench), e.g. `just bench store`; `just bench query` needs wrk
# (`apt-get install wrk`).
[doc('A benchmark of crates/ledger-bench, e.g. `just bench store`')]
bench target *args:
    cargo run --release --bin ledger -- bench {{target}} {{args}}

fmt:
    cargo fmt --all

lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Browser test of the dashboard: headless Chromium against `ledger demo`, whose refunds and
# cancellations localstripe carries out (needs node and Debian's `chromium`; see e2e/README.md). Screenshots
# go to target/. It runs the debug binary that `just test` has already built: a release build
# would add about ten minutes to CI for a 300-customer demo that loads in seconds either way.
[doc('Browser test of the dashboard: headless Chromium against `ledger demo`')]
e2e: python-prerequisites
    #!/usr/bin/env bash
    set -euo pipefail
    (cd e2e && npm ci --no-audit --no-fund --silent)
    cargo build --quiet --bin ledger
    python3 -c 'import aiosmtpd, localstripe' 2>/dev/null || export PATH="{{python_dir}}/bin:$PATH"
    LEDGER_BIN={{target_dir}}/debug/ledger exec {{target_dir}}/debug/ledger with-services -- node e2e/dashboard.test.mjs

# The chaos scenario (crates/ledger-cli/tests/it/chaos.rs): on private PostgreSQL and a
# three-node NATS cluster, under load, kill each component in turn `rounds` times and check that nothing
# acknowledged is lost or doubled; prints each fault's time to recover. `just test` runs one round.
[doc('Kill each component in turn under load, `rounds` times: nothing acknowledged is lost or doubled')]
chaos rounds="3":
    CHAOS_ROUNDS={{rounds}} cargo test -p ledger-cli --test it chaos -- --nocapture

# Fuzz longer than CI does: `just fuzz 200000` (inputs per harness), `just fuzz 500000 webhooks`
# (a test-name filter). Corpus and harnesses: docs/testing.md#fuzzing.
[doc('Fuzz longer than CI does: `just fuzz 200000`, `just fuzz 500000 webhooks`')]
fuzz cases="100000" *filter:
    PROPTEST_CASES={{cases}} cargo test -p ledger-fuzz --test fuzz -- {{filter}}
