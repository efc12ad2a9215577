//! What the fuzzing harnesses in `tests/fuzz/` share: the seed corpus kept in this crate's
//! `corpus/<target>/` folders, the run length, and proptest strategies that mutate corpus
//! entries, as raw bytes or (structure-aware) as JSON values, so most random inputs get past
//! the first parser and reach the code behind it.
//!
//! Each harness replays its whole corpus first (the seeds and every regression file), then
//! checks its property on [`cases`] mutated inputs. A failure prints the shrunk input; keep it
//! as a file in the target's corpus folder (`regression-<what>.<ext>`) next to the fix, so it is
//! replayed on every run whatever the strategies become. How to run longer: `docs/testing.md`.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;

/// One corpus file: its name (for failure messages) and its bytes.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The folder of a target's corpus, `corpus/<target>/` in this crate.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// Every file of `corpus/<target>/`, sorted by name.
///
/// # Panics
/// When the folder is missing, unreadable or empty: a harness must not pass on no input.
pub fn corpus(target: &str) -> Vec<Entry> {
    let dir = corpus_dir(target);
    let reading =
        std::fs::read_dir(&dir).unwrap_or_else(|error| panic!("corpus {}: {error}", dir.display()));
    let mut entries: Vec<Entry> = reading
        .map(|item| {
            let path = item
                .unwrap_or_else(|error| panic!("corpus {}: {error}", dir.display()))
                .path();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|error| panic!("corpus {}: {error}", path.display()));
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            Entry { name, bytes }
        })
        .collect();
    assert!(!entries.is_empty(), "corpus {} is empty", dir.display());
    entries.sort_by(|one, other| one.name.cmp(&other.name));
    entries
}

/// The corpus entries of `target` parsed as JSON values (seeds of [`mutated_json`]).
///
/// # Panics
/// When an entry is not JSON: seeds must be valid so mutations start from an accepted shape
/// (invalid inputs belong in a bytes corpus).
pub fn json_corpus(target: &str) -> Vec<Value> {
    corpus(target)
        .into_iter()
        .map(|entry| {
            serde_json::from_slice(&entry.bytes)
                .unwrap_or_else(|error| panic!("corpus {target}/{}: {error}", entry.name))
        })
        .collect()
}

/// Inputs each harness tries after its corpus: `PROPTEST_CASES` when set (to fuzz longer
/// locally), else `default` (sized so the harness takes a few seconds in CI).
pub fn cases(default: u32) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = default;
    }
    config
}

/// One change to a byte string.
#[derive(Debug, Clone)]
enum ByteEdit {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Token {
        at: usize,
        token: &'static str,
    },
    Remove {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    /// Copies a piece of another seed in.
    Splice {
        at: usize,
        seed: usize,
        from: usize,
        len: usize,
    },
}

/// Pieces of text parsers often get wrong: numbers at the edges of their types, exponents,
/// escapes, separators, multibyte and invisible characters.
const TOKENS: &[&str] = &[
    "0",
    "-1",
    "-0",
    "1e400",
    "1.5",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551616",
    "null",
    "true",
    "{}",
    "[]",
    "\"\"",
    "\\u0000",
    "\\ud800",
    "%00",
    "%ff",
    "%C3%A9",
    "%",
    "+",
    "&",
    "=",
    ",",
    ";",
    ".",
    ":",
    "\u{0}",
    "\u{200b}",
    "é",
    "\n",
];

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    let at = any::<usize>();
    prop_oneof![
        (at, 0u8..8).prop_map(|(at, bit)| ByteEdit::Flip { at, bit }),
        (at, any::<u8>()).prop_map(|(at, byte)| ByteEdit::Set { at, byte }),
        (at, proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| ByteEdit::Insert { at, bytes }),
        (at, proptest::sample::select(TOKENS))
            .prop_map(|(at, token)| ByteEdit::Token { at, token }),
        (at, 1usize..16).prop_map(|(at, len)| ByteEdit::Remove { at, len }),
        at.prop_map(|at| ByteEdit::Truncate { at }),
        (at, any::<usize>(), any::<usize>(), 1usize..64).prop_map(|(at, seed, from, len)| {
            ByteEdit::Splice {
                at,
                seed,
                from,
                len,
            }
        }),
    ]
}

fn apply_byte_edit(bytes: &mut Vec<u8>, edit: &ByteEdit, seeds: &[Vec<u8>]) {
    let position = |at: usize, len: usize| at % (len + 1);
    match edit {
        ByteEdit::Flip { at, bit } => {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] ^= 1 << bit;
            }
        }
        ByteEdit::Set { at, byte } => {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] = *byte;
            }
        }
        ByteEdit::Insert { at, bytes: new } => {
            let at = position(*at, bytes.len());
            bytes.splice(at..at, new.iter().copied());
        }
        ByteEdit::Token { at, token } => {
            let at = position(*at, bytes.len());
            bytes.splice(at..at, token.bytes());
        }
        ByteEdit::Remove { at, len } => {
            let at = position(*at, bytes.len());
            let end = (at + len).min(bytes.len());
            bytes.drain(at..end);
        }
        ByteEdit::Truncate { at } => {
            let at = position(*at, bytes.len());
            bytes.truncate(at);
        }
        ByteEdit::Splice {
            at,
            seed,
            from,
            len,
        } => {
            let other = &seeds[seed % seeds.len()];
            let from = position(*from, other.len());
            let piece = &other[from..(from + len).min(other.len())];
            let at = position(*at, bytes.len());
            bytes.splice(at..at, piece.iter().copied());
        }
    }
}

/// A seed of `seeds` with up to eight byte edits (bit flips, overwrites, insertions of random
/// bytes or [`TOKENS`], removals, truncation, pieces of other seeds); sometimes the seed
/// unchanged, sometimes wholly random bytes.
///
/// # Panics
/// When `seeds` is empty.
pub fn mutated_bytes(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    assert!(!seeds.is_empty(), "no seeds to mutate");
    let count = seeds.len();
    let edited =
        (0..count, proptest::collection::vec(byte_edit(), 0..8)).prop_map(move |(index, edits)| {
            let mut bytes = seeds[index].clone();
            for edit in &edits {
                apply_byte_edit(&mut bytes, edit, &seeds);
            }
            bytes
        });
    prop_oneof![
        9 => edited,
        1 => proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

/// One change to a JSON document, at the node with the given index in depth-first order
/// (taken modulo the number of nodes).
#[derive(Debug, Clone)]
enum JsonEdit {
    Replace {
        node: usize,
        with: Value,
    },
    Remove {
        node: usize,
    },
    /// Puts a copy of a node of another seed in place of this one.
    Graft {
        node: usize,
        seed: usize,
        from: usize,
    },
    /// Adds a member to an object (or an item to an array).
    Add {
        node: usize,
        key: String,
        value: Value,
    },
}

/// Numbers at the edges: zero, signs, 32- and 64-bit limits, Unix times of year 9999 and
/// beyond, fractions and a huge float.
fn interesting_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        proptest::sample::select(vec![
            0i64,
            1,
            -1,
            2,
            100,
            i64::from(i32::MAX),
            i64::from(u32::MAX),
            i64::from(u32::MAX) + 1,
            253_402_300_799,
            253_402_300_800,
            9_999_999_999_999,
            i64::MAX / 1_000_000 + 1,
            i64::MAX,
            i64::MIN,
        ])
        .prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        proptest::sample::select(vec![0.5, 1.005, 4.999, 1e15, 1e300, -0.0, 123.456e7])
            .prop_map(Value::from),
    ]
}

/// Text providers and parsers disagree about: currencies, decimals, dates (RFC 3339 at the
/// edges), statuses in several cases, control and invisible characters, long text.
const STRINGS: &[&str] = &[
    "",
    " ",
    "USD",
    "usd",
    "IDR",
    "JPY",
    "KWD",
    "XXX",
    "0",
    "-1",
    "0.00",
    "4.99",
    "4.999",
    "1.",
    ".5",
    "1e3",
    "99999999999999999999",
    "9223372036854775807",
    "2026-01-31T00:00:00Z",
    "2026-01-31T00:00:00.123456789Z",
    "2026-13-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "+275760-09-13T00:00:00Z",
    "2026-01-31T00:00:00+23:59",
    "2026-01-31",
    "DAY",
    "WEEK",
    "MONTH",
    "YEAR",
    "month",
    "day",
    "ACTIVE",
    "APPROVAL_PENDING",
    "SUSPENDED",
    "CANCELLED",
    "EXPIRED",
    "PAID",
    "SETTLED",
    "PENDING",
    "INACTIVE",
    "active",
    "trialing",
    "past_due",
    "paused",
    "canceled",
    "incomplete_expired",
    "draft",
    "open",
    "won",
    "lost",
    "TRIAL",
    "REGULAR",
    "a@example.com",
    "A@EXAMPLE.COM",
    "a\u{200b}@example.com",
    "\u{0}",
    "a\nb",
    "é",
    "cus_1",
    "sub_1",
    "I-1",
    "repl_1",
];

fn interesting_string() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => proptest::sample::select(STRINGS).prop_map(Value::from),
        1 => "\\PC{0,12}".prop_map(Value::from),
        1 => (1usize..2000).prop_map(|len| Value::from("x".repeat(len))),
    ]
}

fn interesting_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => interesting_string(),
        3 => interesting_number(),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Object(serde_json::Map::new())),
        1 => Just(Value::Array(Vec::new())),
    ]
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    let node = any::<usize>();
    prop_oneof![
        4 => (node, interesting_value())
            .prop_map(|(node, with)| JsonEdit::Replace { node, with }),
        2 => node.prop_map(|node| JsonEdit::Remove { node }),
        2 => (node, any::<usize>(), any::<usize>())
            .prop_map(|(node, seed, from)| JsonEdit::Graft { node, seed, from }),
        1 => (node, "[a-z_]{1,12}", interesting_value())
            .prop_map(|(node, key, value)| JsonEdit::Add { node, key, value }),
    ]
}

/// JSON pointers of every node of `value`, depth-first, the root (`""`) first.
fn pointers(value: &Value) -> Vec<String> {
    fn walk(value: &Value, at: String, into: &mut Vec<String>) {
        into.push(at.clone());
        match value {
            Value::Object(members) => {
                for (key, member) in members {
                    let escaped = key.replace('~', "~0").replace('/', "~1");
                    walk(member, format!("{at}/{escaped}"), into);
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(item, format!("{at}/{index}"), into);
                }
            }
            _ => {}
        }
    }
    let mut into = Vec::new();
    walk(value, String::new(), &mut into);
    into
}

fn apply_json_edit(document: &mut Value, edit: &JsonEdit, seeds: &[Value]) {
    let nodes = pointers(document);
    let pick = |node: usize| nodes[node % nodes.len()].clone();
    match edit {
        JsonEdit::Replace { node, with } => {
            if let Some(target) = document.pointer_mut(&pick(*node)) {
                *target = with.clone();
            }
        }
        JsonEdit::Remove { node } => {
            let pointer = pick(*node);
            let Some((parent, last)) = pointer.rsplit_once('/') else {
                *document = Value::Null;
                return;
            };
            let key = last.replace("~1", "/").replace("~0", "~");
            match document.pointer_mut(parent) {
                Some(Value::Object(members)) => {
                    members.remove(&key);
                }
                Some(Value::Array(items)) => {
                    if let Ok(index) = key.parse::<usize>()
                        && index < items.len()
                    {
                        items.remove(index);
                    }
                }
                _ => {}
            }
        }
        JsonEdit::Graft { node, seed, from } => {
            let other = &seeds[seed % seeds.len()];
            let other_nodes = pointers(other);
            let piece = other
                .pointer(&other_nodes[from % other_nodes.len()])
                .cloned()
                .unwrap_or(Value::Null);
            if let Some(target) = document.pointer_mut(&pick(*node)) {
                *target = piece;
            }
        }
        JsonEdit::Add { node, key, value } => match document.pointer_mut(&pick(*node)) {
            Some(Value::Object(members)) => {
                members.insert(key.clone(), value.clone());
            }
            Some(Value::Array(items)) => items.push(value.clone()),
            _ => {}
        },
    }
}

/// A seed of `seeds` with up to six structure-aware edits (a node replaced by an interesting
/// value, removed, replaced by a node of another seed, or an object given a new member),
/// serialized; a few of them then byte-mutated as well ([`mutated_bytes`]'s edits).
///
/// # Panics
/// When `seeds` is empty.
pub fn mutated_json(seeds: Vec<Value>) -> impl Strategy<Value = Vec<u8>> {
    assert!(!seeds.is_empty(), "no seeds to mutate");
    let count = seeds.len();
    let raw: Vec<Vec<u8>> = seeds.iter().map(to_bytes).collect();
    (
        0..count,
        proptest::collection::vec(json_edit(), 0..6),
        proptest::option::weighted(0.1, proptest::collection::vec(byte_edit(), 1..4)),
    )
        .prop_map(move |(index, edits, byte_edits)| {
            let mut document = seeds[index].clone();
            for edit in &edits {
                apply_json_edit(&mut document, edit, &seeds);
            }
            let mut bytes = to_bytes(&document);
            for edit in byte_edits.iter().flatten() {
                apply_byte_edit(&mut bytes, edit, &raw);
            }
            bytes
        })
}

fn to_bytes(value: &Value) -> Vec<u8> {
    // Serializing a `Value` cannot fail: its keys are strings.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_edits_reach_every_node() {
        let document = json!({"a": {"b/c": [1, {"d": 2}]}, "e~": 3});
        assert_eq!(
            pointers(&document),
            [
                "",
                "/a",
                "/a/b~1c",
                "/a/b~1c/0",
                "/a/b~1c/1",
                "/a/b~1c/1/d",
                "/e~0"
            ]
        );
        let mut removed = document.clone();
        apply_json_edit(&mut removed, &JsonEdit::Remove { node: 3 }, &[]);
        assert_eq!(removed, json!({"a": {"b/c": [{"d": 2}]}, "e~": 3}));
        let mut replaced = document.clone();
        let with = Value::from("x");
        apply_json_edit(&mut replaced, &JsonEdit::Replace { node: 6, with }, &[]);
        assert_eq!(replaced, json!({"a": {"b/c": [1, {"d": 2}]}, "e~": "x"}));
        let mut grafted = document.clone();
        let seeds = [json!({"f": [9]})];
        let graft = JsonEdit::Graft {
            node: 1,
            seed: 0,
            from: 1,
        };
        apply_json_edit(&mut grafted, &graft, &seeds);
        assert_eq!(grafted, json!({"a": [9], "e~": 3}));
    }

    #[test]
    fn byte_edits_stay_in_bounds() {
        let seeds = vec![b"abc".to_vec()];
        let mut bytes = b"hello".to_vec();
        apply_byte_edit(&mut bytes, &ByteEdit::Remove { at: 3, len: 10 }, &seeds);
        assert_eq!(bytes, b"hel");
        let splice = ByteEdit::Splice {
            at: 3,
            seed: 0,
            from: 1,
            len: 5,
        };
        apply_byte_edit(&mut bytes, &splice, &seeds);
        assert_eq!(bytes, b"helbc");
        apply_byte_edit(&mut bytes, &ByteEdit::Truncate { at: 2 }, &seeds);
        assert_eq!(bytes, b"he");
    }
}
