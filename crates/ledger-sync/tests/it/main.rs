//! Integration tests of `ledger-sync` on real PostgreSQL and NATS, against localstripe and
//! local servers playing PayPal and Xendit.

mod backfill;

mod reconcile;
