# The front door. `just demo` and `just test` work on a fresh machine: when DATABASE_URL /
# NATS_URL are unset and nothing answers on 5432 / 4222, private PostgreSQL and nats-server
# instances are started under target/ and stopped afterwards.

# Load a deterministic customer history through the ledger and verify it.
demo *args:
    cargo run --release --bin ledger -- demo {{args}}

# Every test, against real PostgreSQL and NATS.
test:
    cargo run --quiet --bin ledger -- with-services -- cargo test --workspace

# Benchmarks, e.g. `just bench store`.
bench target *args:
    cargo run --release --bin ledger -- bench {{target}} {{args}}

fmt:
    cargo fmt --all

lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Browser test of the dashboard: headless Chromium against `ledger demo` (needs node and
# Debian's `chromium`; see e2e/README.md). Screenshots go to target/.
e2e:
    cd e2e && npm ci --no-audit --no-fund --silent
    cargo build --release --bin ledger
    cargo run --release --quiet --bin ledger -- with-services -- node e2e/dashboard.test.mjs
