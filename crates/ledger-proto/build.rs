//! Compiles `proto/` with protox (a pure-Rust protobuf compiler, so no `protoc` is needed),
//! generates the prost types, and the serde implementations of the proto3 JSON mapping
//! (pbjson) so that a shell client can send commands as JSON.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "ledger/v1/events.proto",
        "ledger/v1/commands.proto",
        "ledger/v1/bus.proto",
        "ledger/v1/connectors.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }
    let descriptors = protox::compile(files, [&proto_root])?;
    let descriptor_bytes = descriptors.encode_to_vec();
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    // JSON field names as in the .proto files (snake_case, like the rest of the ledger);
    // camelCase is accepted on input too, as the proto3 JSON mapping requires.
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .preserve_proto_field_names()
        .build(&[".ledger.v1"])?;
    Ok(())
}
