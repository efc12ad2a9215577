//! Integration tests of `ledger-sync` on real PostgreSQL and NATS, against localstripe.

mod reconcile;
