//! The integration aggregate and [`Stream`]'s dispatch, given / when / then.

use ledger_domain::proto::{self, command::Kind as C, integration_registered::Target};
use ledger_domain::{Event, IntegrationStatus, Rejection, Stream};

const NOW_MICROS: i64 = 1_767_225_600_000_000;

fn command(kind: C) -> proto::Command {
    proto::Command {
        metadata: Some(proto::CommandMetadata {
            idempotency_key: "k".to_owned(),
            customer_id: "0190d6a2-0000-7000-8000-000000000001".to_owned(),
            occurred_at_unix_micros: NOW_MICROS,
            issuer: proto::Issuer::Internal as i32,
            payment_provider: proto::PaymentProvider::Internal as i32,
            ..proto::CommandMetadata::default()
        }),
        kind: Some(kind),
    }
}

fn webhook(secret: &str) -> proto::IntegrationRegistered {
    use proto::NotificationKind as K;
    proto::IntegrationRegistered {
        name: " Ops webhook ".to_owned(),
        target: Some(Target::Webhook(proto::WebhookTarget {
            url: "https://example.com/hooks/ledger".to_owned(),
            signing_secret: secret.to_owned(),
        })),
        kinds: vec![
            K::RefundIssued as i32,
            K::PaymentFailed as i32,
            K::PaymentFailed as i32,
        ],
        filter: None,
    }
}

fn given(events: &[Event]) -> Stream {
    Stream::from_events(events.iter().map(|event| (NOW_MICROS, event)))
}

fn then_event(stream: &Stream, kind: C) -> Event {
    let mut events = stream.decide(&command(kind)).expect("accepted");
    assert_eq!(events.len(), 1);
    events.remove(0)
}

fn then_rejection(stream: &Stream, kind: C) -> &'static str {
    stream
        .decide(&command(kind))
        .expect_err("rejected")
        .rejection_code()
}

#[test]
fn registration_is_made_canonical() {
    let event = then_event(
        &Stream::Empty,
        C::RegisterIntegration(webhook("0123456789abcdef")),
    );
    let Event::IntegrationRegistered(registered) = &event else {
        panic!("{event:?}");
    };
    assert_eq!(registered.name, "Ops webhook");
    assert_eq!(
        registered.kinds,
        vec![
            proto::NotificationKind::PaymentFailed as i32,
            proto::NotificationKind::RefundIssued as i32
        ]
    );
    let stream = given(&[event]);
    let Stream::Integration(integration) = &stream else {
        panic!("{stream:?}");
    };
    assert_eq!(integration.status, IntegrationStatus::Active);
    assert_eq!(integration.version, 1);
}

#[test]
fn invalid_configurations_are_refused() {
    assert_eq!(
        then_rejection(&Stream::Empty, C::RegisterIntegration(webhook("short"))),
        "invalid_field"
    );
    let mut no_kinds = webhook("0123456789abcdef");
    no_kinds.kinds.clear();
    assert_eq!(
        then_rejection(&Stream::Empty, C::RegisterIntegration(no_kinds)),
        "missing_field"
    );
    let mut bad_url = webhook("0123456789abcdef");
    bad_url.target = Some(Target::Slack(proto::SlackTarget {
        webhook_url: "ftp://hooks.slack.com".to_owned(),
    }));
    assert_eq!(
        then_rejection(&Stream::Empty, C::RegisterIntegration(bad_url)),
        "invalid_field"
    );
    let mut email = webhook("0123456789abcdef");
    email.target = Some(Target::Email(proto::EmailTarget {
        to: vec!["ops@example.com".to_owned()],
        from: "ledger@example.com".to_owned(),
        smtp_host: "smtp.example.com".to_owned(),
        smtp_tls: proto::SmtpTls::Starttls as i32,
        ..proto::EmailTarget::default()
    }));
    let event = then_event(&Stream::Empty, C::RegisterIntegration(email));
    let Event::IntegrationRegistered(proto::IntegrationRegistered {
        target: Some(Target::Email(target)),
        ..
    }) = event
    else {
        panic!("{event:?}");
    };
    assert_eq!(
        target.smtp_port, 587,
        "the STARTTLS submission port by default"
    );
}

#[test]
fn pause_resume_update_remove() {
    let registered = then_event(
        &Stream::Empty,
        C::RegisterIntegration(webhook("0123456789abcdef")),
    );
    let stream = given(std::slice::from_ref(&registered));
    assert_eq!(
        then_rejection(&stream, C::RegisterIntegration(webhook("0123456789abcdef"))),
        "integration_already_registered"
    );
    assert_eq!(
        then_rejection(&stream, C::ResumeIntegration(proto::IntegrationResumed {})),
        "integration_invalid_transition"
    );
    let paused = then_event(
        &stream,
        C::PauseIntegration(proto::IntegrationPaused {
            reason: "maintenance".to_owned(),
        }),
    );
    let stream = given(&[registered.clone(), paused.clone()]);
    let Stream::Integration(integration) = &stream else {
        panic!("{stream:?}");
    };
    assert_eq!(integration.status, IntegrationStatus::Paused);
    let resumed = then_event(&stream, C::ResumeIntegration(proto::IntegrationResumed {}));
    let removed = then_event(
        &given(&[registered.clone(), paused.clone(), resumed.clone()]),
        C::RemoveIntegration(proto::IntegrationRemoved::default()),
    );
    let stream = given(&[registered, paused, resumed, removed]);
    assert_eq!(
        then_rejection(
            &stream,
            C::UpdateIntegration(proto::IntegrationUpdated {
                name: "x".to_owned(),
                ..proto::IntegrationUpdated::default()
            })
        ),
        "integration_invalid_transition"
    );
    assert_eq!(stream.version(), 4);
}

#[test]
fn an_update_replaces_the_configuration() {
    let registered = then_event(
        &Stream::Empty,
        C::RegisterIntegration(webhook("0123456789abcdef")),
    );
    let updated = then_event(
        &given(std::slice::from_ref(&registered)),
        C::UpdateIntegration(proto::IntegrationUpdated {
            name: "Slack".to_owned(),
            target: Some(proto::integration_updated::Target::Slack(
                proto::SlackTarget {
                    webhook_url: "https://hooks.slack.com/services/T/B/X".to_owned(),
                },
            )),
            kinds: vec![proto::NotificationKind::CustomerChurned as i32],
            filter: None,
        }),
    );
    let Stream::Integration(integration) = given(&[registered, updated]) else {
        panic!("an integration");
    };
    let config = integration.config.expect("registered");
    assert_eq!(config.name, "Slack");
    assert!(matches!(config.target, Some(Target::Slack(_))));
}

#[test]
fn commands_for_the_other_aggregate_are_refused() {
    let registered = then_event(
        &Stream::Empty,
        C::RegisterIntegration(webhook("0123456789abcdef")),
    );
    let integration = given(std::slice::from_ref(&registered));
    let rejection = integration
        .decide(&command(C::RegisterCustomer(proto::CustomerRegistered {
            email: "ada@example.com".to_owned(),
            ..proto::CustomerRegistered::default()
        })))
        .expect_err("refused");
    assert_eq!(
        rejection,
        Rejection::WrongStream {
            stream: "integration",
            command: "register_customer"
        }
    );
    let customer = given(&[Event::CustomerRegistered(proto::CustomerRegistered {
        email: "ada@example.com".to_owned(),
        ..proto::CustomerRegistered::default()
    })]);
    assert_eq!(
        then_rejection(
            &customer,
            C::RegisterIntegration(webhook("0123456789abcdef"))
        ),
        "wrong_stream"
    );
    // A customer's aggregate counts an integration's event but ignores it.
    let folded = ledger_domain::evolve(ledger_domain::Customer::default(), &registered, NOW_MICROS);
    assert_eq!(folded.version, 1);
    assert!(!folded.is_registered());
}

fn webhook_to(url: &str) -> proto::IntegrationRegistered {
    let mut registration = webhook("0123456789abcdef");
    registration.target = Some(Target::Webhook(proto::WebhookTarget {
        url: url.to_owned(),
        signing_secret: "0123456789abcdef".to_owned(),
    }));
    registration
}

fn email_via(smtp_host: &str) -> proto::IntegrationRegistered {
    let mut registration = webhook("0123456789abcdef");
    registration.target = Some(Target::Email(proto::EmailTarget {
        to: vec!["ops@example.com".to_owned()],
        from: "ledger@example.com".to_owned(),
        smtp_host: smtp_host.to_owned(),
        smtp_tls: proto::SmtpTls::Starttls as i32,
        ..proto::EmailTarget::default()
    }));
    registration
}

const NEVER_A_RECEIVER: &str =
    "an unspecified (0.0.0.0, ::), multicast or broadcast address, which is never a receiver";

#[test]
fn targets_that_can_never_be_receivers_are_refused_at_registration_in_every_spelling() {
    let register =
        |registration| Stream::Empty.decide(&command(C::RegisterIntegration(registration)));
    for url in [
        "http://0.0.0.0/",
        "http://0/",
        "http://0x0.0/",
        "http://00000000000/",
        "https://0.0.0.0:6379/",
        "http://[::]/",
        "http://[0:0:0:0:0:0:0:0]:8080/",
        "http://[::ffff:0.0.0.0]/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://255.255.255.255/",
        "http://4294967295/",
    ] {
        assert_eq!(
            register(webhook_to(url)),
            Err(Rejection::InvalidField {
                field: "webhook.url",
                reason: NEVER_A_RECEIVER,
            }),
            "{url}"
        );
    }
    for url in [
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "dict://127.0.0.1:11211/",
        "https:///path-without-host",
        "https:\\\\evil.example/",
        "https://exa mple.com/",
        "http://[::1/",
    ] {
        assert_eq!(
            register(webhook_to(url)).expect_err(url).rejection_code(),
            "invalid_field",
            "{url}"
        );
    }
    for smtp_host in ["0.0.0.0", "::", "[::]", "0", "224.0.0.1", "ff02::1"] {
        assert_eq!(
            register(email_via(smtp_host)),
            Err(Rejection::InvalidField {
                field: "email.smtp_host",
                reason: NEVER_A_RECEIVER,
            }),
            "{smtp_host}"
        );
    }
    assert_eq!(
        register(email_via("smtp.example.com:25"))
            .expect_err("a port is not part of a host")
            .rejection_code(),
        "invalid_field"
    );
}

/// Loopback, private and link-local hosts depend on the delivery worker's allowlist (its own
/// test receivers live on loopback), so registration records them and the worker refuses them
/// when it sends (projector-notify's `egress` tests).
#[test]
fn internal_hosts_are_left_to_the_delivery_workers_allowlist() {
    for url in [
        "http://127.0.0.1:6379/",
        "http://2130706433/",
        "http://localhost/",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
    ] {
        let events = Stream::Empty
            .decide(&command(C::RegisterIntegration(webhook_to(url))))
            .expect(url);
        assert_eq!(events.len(), 1, "{url}");
    }
}
