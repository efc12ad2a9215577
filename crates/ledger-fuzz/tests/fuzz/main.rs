//! The fuzzing harnesses, one module per input the ledger takes from outside: commands
//! (protobuf and JSON, then decided), provider webhooks (parse, normalize, decide) and their
//! signature checks, and the query service's parameters. Each replays its corpus
//! (`corpus/<target>/`), then tries mutated inputs (`PROPTEST_CASES` runs it longer).

mod commands;
mod query_params;
mod signatures;
mod webhooks;
