//! Integration secrets sealed before they are recorded: a webhook's signing secret, an SMTP
//! password and a Slack webhook URL (a credential itself) never enter an event or a read model
//! in clear text.
//!
//! The writer seals them in the events [`decide_integration`](ledger_domain::decide_integration)
//! returns ([`SecretKeys::seal_event`]); only the delivery worker opens them
//! ([`SecretKeys::open_target`]). A sealed secret is a string in the field it replaces:
//!
//! ```text
//! sealed:v1:<key id>:<nonce, base64url>:<ciphertext and tag, base64url>
//! ```
//!
//! ChaCha20-Poly1305 (RFC 8439, from `ring`) with a random 96-bit nonce per secret; the
//! associated data is the integration id and the field's name, so a ciphertext copied into
//! another integration or field does not open. Keys come from outside the database
//! ([`SecretKeys::parse`]): the first seals, all open, so keys rotate by adding a new one in
//! front. Events recorded before sealing existed keep their clear text; it is passed through.
//!
//! It knows nothing about PostgreSQL, NATS or HTTP.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ledger_domain::proto::integration_registered::Target as RegisteredTarget;
use ledger_domain::proto::integration_updated::Target as UpdatedTarget;
use ledger_domain::{Event, proto};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;

/// What a sealed secret starts with.
pub const SEALED_PREFIX: &str = "sealed:v1:";
/// A key's length, in bytes (256 bits).
pub const KEY_BYTES: usize = 32;
/// The longest key id, in bytes.
pub const KEY_ID_BYTES_MAX: usize = 32;

/// The secret fields of a target, by the name used in the associated data and in errors.
pub const SLACK_WEBHOOK_URL: &str = "slack.webhook_url";
/// See [`SLACK_WEBHOOK_URL`].
pub const WEBHOOK_SIGNING_SECRET: &str = "webhook.signing_secret";
/// See [`SLACK_WEBHOOK_URL`].
pub const EMAIL_SMTP_PASSWORD: &str = "email.smtp_password";

/// Why keys could not be read or a secret could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "secrets key entry {index} is not `key_id:base64 key` with a key id of 1-32 letters, digits, `_` or `-` and a {KEY_BYTES}-byte key"
    )]
    KeyEntry { index: usize },
    #[error("secrets key id `{key_id}` appears twice")]
    DuplicateKeyId { key_id: String },
    #[error("no secrets key: set LEDGER_SECRETS_KEYS or LEDGER_SECRETS_KEY_FILE")]
    NoKey,
    #[error("cannot read the secrets key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("`{field}` is sealed with key `{key_id}`, which this process does not have")]
    UnknownKey { field: &'static str, key_id: String },
    #[error("`{field}` is not a well-formed sealed secret")]
    Malformed { field: &'static str },
    #[error("`{field}` does not open: tampered with, or sealed for another integration or field")]
    Tampered { field: &'static str },
    #[error("the system's random number generator failed")]
    Random,
}

/// The key ring: the first key seals, every key opens. `Debug` shows the key ids only.
pub struct SecretKeys {
    keys: Vec<(String, LessSafeKey)>,
    random: SystemRandom,
}

impl fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeys")
            .field("key_ids", &self.key_ids())
            .finish_non_exhaustive()
    }
}

impl SecretKeys {
    /// Reads `key_id:base64 key` entries separated by commas or newlines (the format of
    /// `LEDGER_SECRETS_KEYS` and of `LEDGER_SECRETS_KEY_FILE`'s content); the key is 32 bytes
    /// in standard or URL-safe base64 (`openssl rand -base64 32`).
    pub fn parse(text: &str) -> Result<SecretKeys, SecretsError> {
        let mut keys: Vec<(String, LessSafeKey)> = Vec::new();
        let entries = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|entry| !entry.is_empty() && !entry.starts_with('#'));
        for (index, entry) in entries.enumerate() {
            let invalid = SecretsError::KeyEntry { index: index + 1 };
            let (key_id, encoded) = entry.split_once(':').ok_or(invalid.clone())?;
            let key_id_valid = !key_id.is_empty()
                && key_id.len() <= KEY_ID_BYTES_MAX
                && key_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .or_else(|_| URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')))
                .map_err(|_| invalid.clone())?;
            if !key_id_valid || bytes.len() != KEY_BYTES {
                return Err(invalid);
            }
            if keys.iter().any(|(known, _)| known == key_id) {
                return Err(SecretsError::DuplicateKeyId {
                    key_id: key_id.to_owned(),
                });
            }
            let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| invalid)?;
            keys.push((key_id.to_owned(), LessSafeKey::new(key)));
        }
        if keys.is_empty() {
            return Err(SecretsError::NoKey);
        }
        Ok(SecretKeys {
            keys,
            random: SystemRandom::new(),
        })
    }

    /// The keys from `keys` (`LEDGER_SECRETS_KEYS`) or else the file at `key_file`
    /// (`LEDGER_SECRETS_KEY_FILE`); `None` when neither is set.
    pub fn from_settings(
        keys: Option<&str>,
        key_file: Option<&std::path::Path>,
    ) -> Result<Option<SecretKeys>, SecretsError> {
        match (keys, key_file) {
            (Some(keys), _) => SecretKeys::parse(keys).map(Some),
            (None, Some(path)) => {
                let text =
                    std::fs::read_to_string(path).map_err(|error| SecretsError::KeyFile {
                        path: path.display().to_string(),
                        reason: error.to_string(),
                    })?;
                SecretKeys::parse(&text).map(Some)
            }
            (None, None) => Ok(None),
        }
    }

    /// The key ids, the sealing one first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(|(key_id, _)| key_id.as_str())
            .collect()
    }

    /// Seals `clear` for `field` of `integration_id` with the first key. An empty value stays
    /// empty (no SMTP password), and a value already sealed is left as it is.
    pub fn seal(
        &self,
        integration_id: Uuid,
        field: &'static str,
        clear: &str,
    ) -> Result<String, SecretsError> {
        if clear.is_empty() || clear.starts_with(SEALED_PREFIX) {
            return Ok(clear.to_owned());
        }
        let (key_id, key) = self.keys.first().ok_or(SecretsError::NoKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SecretsError::Random)?;
        let mut sealed = clear.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(associated_data(integration_id, field)),
            &mut sealed,
        )
        .map_err(|_| SecretsError::Malformed { field })?;
        Ok(format!(
            "{SEALED_PREFIX}{key_id}:{}:{}",
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(sealed)
        ))
    }

    /// Opens `value` of `field` of `integration_id`; a value that is not sealed (recorded
    /// before sealing existed) is returned as it is.
    pub fn open(
        &self,
        integration_id: Uuid,
        field: &'static str,
        value: &str,
    ) -> Result<String, SecretsError> {
        let Some(sealed) = value.strip_prefix(SEALED_PREFIX) else {
            return Ok(value.to_owned());
        };
        let malformed = SecretsError::Malformed { field };
        let mut parts = sealed.split(':');
        let (Some(key_id), Some(nonce), Some(ciphertext), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed);
        };
        let (_, key) = self
            .keys
            .iter()
            .find(|(known, _)| known == key_id)
            .ok_or_else(|| SecretsError::UnknownKey {
                field,
                key_id: key_id.to_owned(),
            })?;
        let nonce: [u8; NONCE_LEN] = URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()
            .and_then(|nonce| nonce.try_into().ok())
            .ok_or(malformed.clone())?;
        let mut buffer = URL_SAFE_NO_PAD
            .decode(ciphertext)
            .map_err(|_| malformed.clone())?;
        let clear = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data(integration_id, field)),
                &mut buffer,
            )
            .map_err(|_| SecretsError::Tampered { field })?;
        String::from_utf8(clear.to_vec()).map_err(|_| malformed)
    }

    /// The event with its target's secrets sealed for `integration_id`; other events as
    /// they are.
    pub fn seal_event(&self, integration_id: Uuid, event: Event) -> Result<Event, SecretsError> {
        let seal = |target: RegisteredTarget| self.map_target(integration_id, target, Self::seal);
        Ok(match event {
            Event::IntegrationRegistered(mut registered) => {
                registered.target = registered.target.map(seal).transpose()?;
                Event::IntegrationRegistered(registered)
            }
            Event::IntegrationUpdated(mut updated) => {
                updated.target = updated
                    .target
                    .map(|target| seal(registered_target(target)).map(updated_target))
                    .transpose()?;
                Event::IntegrationUpdated(updated)
            }
            other => other,
        })
    }

    /// The target with its secrets opened, for sending.
    pub fn open_target(
        &self,
        integration_id: Uuid,
        target: RegisteredTarget,
    ) -> Result<RegisteredTarget, SecretsError> {
        self.map_target(integration_id, target, Self::open)
    }

    fn map_target(
        &self,
        integration_id: Uuid,
        target: RegisteredTarget,
        apply: fn(&SecretKeys, Uuid, &'static str, &str) -> Result<String, SecretsError>,
    ) -> Result<RegisteredTarget, SecretsError> {
        Ok(match target {
            RegisteredTarget::Slack(slack) => RegisteredTarget::Slack(proto::SlackTarget {
                webhook_url: apply(self, integration_id, SLACK_WEBHOOK_URL, &slack.webhook_url)?,
            }),
            RegisteredTarget::Webhook(webhook) => RegisteredTarget::Webhook(proto::WebhookTarget {
                signing_secret: apply(
                    self,
                    integration_id,
                    WEBHOOK_SIGNING_SECRET,
                    &webhook.signing_secret,
                )?,
                ..webhook
            }),
            RegisteredTarget::Email(email) => RegisteredTarget::Email(proto::EmailTarget {
                smtp_password: apply(
                    self,
                    integration_id,
                    EMAIL_SMTP_PASSWORD,
                    &email.smtp_password,
                )?,
                ..email
            }),
        })
    }
}

/// The key id a value is sealed with, or `None` for clear text.
pub fn sealed_key_id(value: &str) -> Option<&str> {
    value
        .strip_prefix(SEALED_PREFIX)
        .and_then(|sealed| sealed.split(':').next())
}

/// Whether any secret of `target` is sealed (a process without keys cannot send to it).
pub fn target_is_sealed(target: &RegisteredTarget) -> bool {
    let secret = match target {
        RegisteredTarget::Slack(slack) => &slack.webhook_url,
        RegisteredTarget::Webhook(webhook) => &webhook.signing_secret,
        RegisteredTarget::Email(email) => &email.smtp_password,
    };
    sealed_key_id(secret).is_some()
}

/// The integration id's 16 bytes, then the field's name.
fn associated_data(integration_id: Uuid, field: &str) -> Vec<u8> {
    let mut data = integration_id.as_bytes().to_vec();
    data.extend_from_slice(field.as_bytes());
    data
}

fn registered_target(target: UpdatedTarget) -> RegisteredTarget {
    match target {
        UpdatedTarget::Slack(slack) => RegisteredTarget::Slack(slack),
        UpdatedTarget::Webhook(webhook) => RegisteredTarget::Webhook(webhook),
        UpdatedTarget::Email(email) => RegisteredTarget::Email(email),
    }
}

fn updated_target(target: RegisteredTarget) -> UpdatedTarget {
    match target {
        RegisteredTarget::Slack(slack) => UpdatedTarget::Slack(slack),
        RegisteredTarget::Webhook(webhook) => UpdatedTarget::Webhook(webhook),
        RegisteredTarget::Email(email) => UpdatedTarget::Email(email),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    fn integration(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_integration_and_field() {
        let keys = SecretKeys::parse(K1).expect("a key");
        let sealed = keys
            .seal(
                integration(1),
                WEBHOOK_SIGNING_SECRET,
                "whsec_0123456789abcdef",
            )
            .expect("sealed");
        assert_eq!(sealed_key_id(&sealed), Some("k1"));
        assert!(!sealed.contains("whsec"), "{sealed}");
        assert_eq!(
            keys.open(integration(1), WEBHOOK_SIGNING_SECRET, &sealed),
            Ok("whsec_0123456789abcdef".to_owned())
        );
        assert_eq!(
            keys.open(integration(2), WEBHOOK_SIGNING_SECRET, &sealed),
            Err(SecretsError::Tampered {
                field: WEBHOOK_SIGNING_SECRET
            }),
            "moved to another integration"
        );
        assert_eq!(
            keys.open(integration(1), EMAIL_SMTP_PASSWORD, &sealed),
            Err(SecretsError::Tampered {
                field: EMAIL_SMTP_PASSWORD
            }),
            "moved to another field"
        );
        // One bit of the ciphertext flipped, re-encoded: well-formed, but it does not open.
        // (Editing a base64 character instead can touch only the final character's unused
        // bits, which the strict decoder refuses as malformed: CI's flaky failure.)
        let (head, ciphertext) = sealed.rsplit_once(':').expect("a ciphertext");
        let mut bytes = URL_SAFE_NO_PAD.decode(ciphertext).expect("base64url");
        for (index, byte) in bytes.clone().into_iter().enumerate() {
            bytes[index] = byte ^ 0x01;
            let flipped = format!("{head}:{}", URL_SAFE_NO_PAD.encode(&bytes));
            assert_eq!(
                keys.open(integration(1), WEBHOOK_SIGNING_SECRET, &flipped),
                Err(SecretsError::Tampered {
                    field: WEBHOOK_SIGNING_SECRET
                }),
                "byte {index} flipped"
            );
            bytes[index] = byte;
        }
        let not_base64 = format!("{head}:{ciphertext}!");
        assert_eq!(
            keys.open(integration(1), WEBHOOK_SIGNING_SECRET, &not_base64),
            Err(SecretsError::Malformed {
                field: WEBHOOK_SIGNING_SECRET
            })
        );
        assert_ne!(
            keys.seal(
                integration(1),
                WEBHOOK_SIGNING_SECRET,
                "whsec_0123456789abcdef"
            )
            .expect("sealed"),
            sealed,
            "a fresh nonce each time"
        );
    }

    #[test]
    fn keys_rotate_the_first_seals_and_all_open() {
        let old = SecretKeys::parse(K1).expect("a key");
        let sealed_before = old
            .seal(
                integration(1),
                SLACK_WEBHOOK_URL,
                "https://hooks.slack.com/services/T/B/x",
            )
            .expect("sealed");
        let rotated = SecretKeys::parse(&format!("{K2},{K1}")).expect("keys");
        assert_eq!(rotated.key_ids(), ["k2", "k1"]);
        assert_eq!(
            rotated.open(integration(1), SLACK_WEBHOOK_URL, &sealed_before),
            Ok("https://hooks.slack.com/services/T/B/x".to_owned())
        );
        let sealed_after = rotated
            .seal(
                integration(1),
                SLACK_WEBHOOK_URL,
                "https://hooks.slack.com/services/T/B/y",
            )
            .expect("sealed");
        assert_eq!(sealed_key_id(&sealed_after), Some("k2"));
        assert_eq!(
            old.open(integration(1), SLACK_WEBHOOK_URL, &sealed_after),
            Err(SecretsError::UnknownKey {
                field: SLACK_WEBHOOK_URL,
                key_id: "k2".to_owned()
            })
        );
    }

    #[test]
    fn clear_text_of_old_events_and_empty_passwords_pass_through() {
        let keys = SecretKeys::parse(K1).expect("a key");
        assert_eq!(
            keys.open(
                integration(1),
                WEBHOOK_SIGNING_SECRET,
                "whsec_old_clear_text"
            ),
            Ok("whsec_old_clear_text".to_owned())
        );
        assert_eq!(
            keys.seal(integration(1), EMAIL_SMTP_PASSWORD, ""),
            Ok(String::new())
        );
    }

    #[test]
    fn bad_key_settings_are_refused_with_the_entry() {
        assert_eq!(
            SecretKeys::parse("k1:c2hvcnQ=").err(),
            Some(SecretsError::KeyEntry { index: 1 })
        );
        assert_eq!(
            SecretKeys::parse(&format!("{K1},bad id:AAAA")).err(),
            Some(SecretsError::KeyEntry { index: 2 })
        );
        assert_eq!(
            SecretKeys::parse(&format!("{K1}\n{K1}")).err(),
            Some(SecretsError::DuplicateKeyId {
                key_id: "k1".to_owned()
            })
        );
        assert_eq!(
            SecretKeys::parse(" \n# comment\n").err(),
            Some(SecretsError::NoKey)
        );
        let keys = SecretKeys::parse(K1).expect("a key");
        assert!(!format!("{keys:?}").contains("AAEC"), "{keys:?}");
    }

    #[test]
    fn events_are_sealed_field_by_field() {
        let keys = SecretKeys::parse(K1).expect("a key");
        let event = Event::IntegrationRegistered(proto::IntegrationRegistered {
            name: "mail".to_owned(),
            target: Some(RegisteredTarget::Email(proto::EmailTarget {
                smtp_host: "smtp.example.com".to_owned(),
                smtp_username: "ledger".to_owned(),
                smtp_password: "hunter2hunter2".to_owned(),
                ..proto::EmailTarget::default()
            })),
            ..proto::IntegrationRegistered::default()
        });
        let Event::IntegrationRegistered(sealed) =
            keys.seal_event(integration(7), event).expect("sealed")
        else {
            panic!("the same kind of event");
        };
        let Some(RegisteredTarget::Email(email)) = sealed.target.clone() else {
            panic!("an email target");
        };
        assert_eq!(email.smtp_host, "smtp.example.com");
        assert_eq!(email.smtp_username, "ledger");
        assert_eq!(sealed_key_id(&email.smtp_password), Some("k1"));
        let opened = keys
            .open_target(integration(7), sealed.target.expect("a target"))
            .expect("opens");
        let RegisteredTarget::Email(email) = opened else {
            panic!("an email target");
        };
        assert_eq!(email.smtp_password, "hunter2hunter2");
    }
}
