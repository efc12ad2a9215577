//! Commands as the writer and ingest receive them: `ledger_bus::decode_command` on protobuf
//! and on proto3 JSON bodies, then `Stream::decide` against an empty stream, the customer the
//! corpus builds and the integration it registers, then `evolve` of whatever is decided.
//!
//! Properties: no panic; a body that does not decode is `CodecError::Protobuf` /
//! `CodecError::Json` (answered 400 `malformed`), never another kind; a decoded command
//! encodes and decodes back to itself (protobuf always, JSON whenever pbjson can write it);
//! `decide` answers events or a `Rejection` with a code; every decided event survives the
//! store's protobuf round trip (`decode_event`).

use std::sync::OnceLock;

use ledger_bus::{CodecError, Encoding, decode_command, encode_command};
use ledger_domain::{Event, Stream, proto};
use ledger_fuzz::{cases, corpus, json_corpus, mutated_bytes, mutated_json};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use prost::Message;

const TARGET: &str = "commands";
const PROTOBUF_TARGET: &str = "commands-protobuf";

/// The corpus's commands (proto3 JSON), decoded.
fn seed_commands() -> Vec<proto::Command> {
    corpus(TARGET)
        .iter()
        .map(|entry| {
            decode_command(Encoding::Json, &entry.bytes)
                .unwrap_or_else(|error| panic!("corpus {TARGET}/{}: {error}", entry.name))
        })
        .collect()
}

/// The streams commands are decided against: empty, the customer the corpus's customer
/// commands build (each decided in order; refused ones left out) and the integration its
/// integration commands build. Built once.
fn streams() -> &'static [Stream] {
    static STREAMS: OnceLock<Vec<Stream>> = OnceLock::new();
    STREAMS.get_or_init(build_streams)
}

fn build_streams() -> Vec<Stream> {
    let mut customer = Stream::Empty;
    let mut integration = Stream::Empty;
    for command in seed_commands() {
        let kind = command.kind.as_ref().expect("corpus commands have a kind");
        let stream = if ledger_domain::is_integration_command(kind) {
            &mut integration
        } else {
            &mut customer
        };
        if let Ok(events) = stream.decide(&command) {
            let at = ledger_domain::occurred_at_unix_micros(&command);
            for event in &events {
                *stream = std::mem::take(stream).evolve(event, at);
            }
        }
    }
    assert!(
        matches!(customer, Stream::Customer(_)),
        "the corpus registers no customer"
    );
    assert!(
        matches!(integration, Stream::Integration(_)),
        "the corpus registers no integration"
    );
    vec![Stream::Empty, customer, integration]
}

/// The protobuf seeds: the corpus's commands encoded, and the files of
/// `corpus/commands-protobuf/` (hand-made bodies and regressions).
fn protobuf_seeds() -> Vec<Vec<u8>> {
    seed_commands()
        .iter()
        .map(|command| command.encode_to_vec())
        .chain(corpus(PROTOBUF_TARGET).into_iter().map(|entry| entry.bytes))
        .collect()
}

fn check(encoding: Encoding, body: &[u8], streams: &[Stream]) -> Result<(), TestCaseError> {
    let command = match decode_command(encoding, body) {
        Ok(command) => command,
        Err(CodecError::Protobuf(_)) if encoding == Encoding::Protobuf => return Ok(()),
        Err(CodecError::Json(_)) if encoding == Encoding::Json => return Ok(()),
        Err(other) => {
            return Err(TestCaseError::fail(format!(
                "{encoding:?} body refused with the wrong kind of error: {other:?}"
            )));
        }
    };
    let protobuf = encode_command(Encoding::Protobuf, &command);
    let again = decode_command(Encoding::Protobuf, &protobuf)
        .map_err(|error| TestCaseError::fail(format!("protobuf round trip: {error}")))?;
    prop_assert_eq!(&again, &command, "protobuf round trip");
    // pbjson refuses to write an enum value the schema does not name (a protobuf body may
    // carry one); every command it can write must read back the same.
    if let Ok(json) = serde_json::to_vec(&command) {
        let again = decode_command(Encoding::Json, &json)
            .map_err(|error| TestCaseError::fail(format!("JSON round trip: {error}")))?;
        prop_assert_eq!(&again, &command, "JSON round trip");
    } else {
        prop_assert_eq!(
            encoding,
            Encoding::Protobuf,
            "a JSON command pbjson cannot write"
        );
    }
    for stream in streams {
        decide(stream, &command)?;
    }
    Ok(())
}

fn decide(stream: &Stream, command: &proto::Command) -> Result<(), TestCaseError> {
    match stream.decide(command) {
        Err(rejection) => {
            prop_assert!(!rejection.rejection_code().is_empty());
        }
        Ok(events) => {
            let _ = stream.unique_key_changes(&events);
            let at = ledger_domain::occurred_at_unix_micros(command);
            let mut state = stream.clone();
            for event in &events {
                let payload = proto::Event {
                    kind: Some(event.clone()),
                }
                .encode_to_vec();
                let stored: Event = ledger_domain::decode_event(&payload)
                    .map_err(|error| TestCaseError::fail(format!("stored event: {error}")))?;
                prop_assert_eq!(&stored, event);
                state = state.evolve(event, at);
            }
            prop_assert!(state.version() >= stream.version());
        }
    }
    Ok(())
}

#[test]
fn commands_corpus_replays_as_json_and_protobuf() {
    let streams = streams();
    for entry in corpus(TARGET) {
        check(Encoding::Json, &entry.bytes, streams)
            .unwrap_or_else(|error| panic!("{TARGET}/{}: {error}", entry.name));
    }
    for (index, body) in protobuf_seeds().iter().enumerate() {
        check(Encoding::Protobuf, body, streams)
            .unwrap_or_else(|error| panic!("{TARGET} protobuf seed {index}: {error}"));
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn fuzz_json_commands(body in mutated_json(json_corpus(TARGET))) {
        check(Encoding::Json, &body, streams())?;
    }

    #[test]
    fn fuzz_protobuf_commands(body in mutated_bytes(protobuf_seeds())) {
        check(Encoding::Protobuf, &body, streams())?;
    }
}
