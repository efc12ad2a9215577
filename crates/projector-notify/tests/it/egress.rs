//! Server-side request forgery, as an attacker would try it: integrations aimed at loopback,
//! private, link-local and cloud-metadata addresses in every spelling, and names that resolve
//! to them. The worker refuses each when it connects, records why, and nothing arrives.

use std::collections::BTreeMap;

use ledger_devenv::receivers::HttpReceiver;
use ledger_domain::proto::{self, integration_registered::Target};
use ledger_testkit::ledger::{TestLedger, eventually};
use ledger_testkit::smtp::SmtpServer;
use projector_notify::EgressPolicy;

use crate::{
    SECRET, WAIT_MS, Worker, failed_payment, fast_delivery, register_integration, start_projector,
};

fn webhook_to(url: String) -> Target {
    Target::Webhook(proto::WebhookTarget {
        url,
        signing_secret: SECRET.to_owned(),
    })
}

fn email_via(smtp_host: &str, smtp_port: u16) -> Target {
    Target::Email(proto::EmailTarget {
        to: vec!["ops@example.com".to_owned()],
        from: "ledger@example.com".to_owned(),
        smtp_host: smtp_host.to_owned(),
        smtp_port: u32::from(smtp_port),
        smtp_tls: proto::SmtpTls::None as i32,
        smtp_username: String::new(),
        smtp_password: String::new(),
    })
}

fn refused(host: &str, address: &str, scope: &str) -> String {
    format!(
        "`{host}` is {address}, a {scope} address, not in the worker's allowlist (--notify-allow-internal)"
    )
}

#[tokio::test]
async fn internal_targets_are_refused_when_sending_and_nothing_reaches_the_receivers() {
    let ledger = TestLedger::new().await;
    let receiver = HttpReceiver::start().await;
    let smtp = SmtpServer::start();
    let port = receiver.url.rsplit(':').next().expect("a port").to_owned();
    let writer = ledger.start_writer();
    let projector = start_projector(&ledger, false).await;
    // http:// and the SMTP server's port are allowed, so each refusal is the address's.
    let mut config = fast_delivery();
    config.egress = EgressPolicy {
        allow_http: true,
        ..EgressPolicy::default()
    };
    config.egress.smtp_ports.push(smtp.port);
    let worker = Worker::start(&ledger, config);

    let loopback = |host: &str| refused(host, "127.0.0.1", "loopback");
    let cases = [
        (
            webhook_to(format!("http://localhost:{port}/")),
            loopback("localhost"),
        ),
        (
            webhook_to(format!("http://vm:{port}/hooks")),
            loopback("vm"),
        ),
        (
            webhook_to(format!("http://127.0.0.1:{port}/")),
            loopback("127.0.0.1"),
        ),
        (
            webhook_to("http://127.0.0.1:6379/".to_owned()),
            loopback("127.0.0.1"),
        ),
        (
            webhook_to(format!("http://2130706433:{port}/")),
            loopback("127.0.0.1"),
        ),
        (
            webhook_to(format!("http://0x7f.1:{port}/")),
            loopback("127.0.0.1"),
        ),
        (
            webhook_to(format!("http://017700000001:{port}/")),
            loopback("127.0.0.1"),
        ),
        (
            webhook_to(format!("http://[::ffff:127.0.0.1]:{port}/")),
            loopback("::ffff:7f00:1"),
        ),
        (
            webhook_to(format!("http://[::1]:{port}/")),
            refused("::1", "::1", "loopback"),
        ),
        (
            webhook_to(format!("http://user%3Aname:p%40ss@127.0.0.1:{port}/")),
            loopback("127.0.0.1"),
        ),
        (
            webhook_to("http://169.254.169.254/latest/meta-data".to_owned()),
            refused("169.254.169.254", "169.254.169.254", "link-local"),
        ),
        (
            webhook_to("http://10.0.0.1/".to_owned()),
            refused("10.0.0.1", "10.0.0.1", "private"),
        ),
        (
            Target::Slack(proto::SlackTarget {
                webhook_url: format!("http://localhost:{port}/services/T000/B000/XXXX"),
            }),
            loopback("localhost"),
        ),
        (email_via("localhost", smtp.port), loopback("localhost")),
        (
            email_via("::ffff:127.0.0.1", smtp.port),
            loopback("::ffff:127.0.0.1"),
        ),
        (
            email_via("127.0.0.1", 6379),
            "SMTP port 6379 refused: not in the worker's --notify-smtp-ports".to_owned(),
        ),
    ];
    let mut expected = BTreeMap::new();
    for (index, (target, error)) in cases.into_iter().enumerate() {
        let integration = register_integration(&ledger, &format!("attack-{index}"), target).await;
        expected.insert(integration, error);
    }
    failed_payment(&ledger, "mallory").await;

    let client = ledger.database().client().await;
    let errors = || async {
        client
            .query(
                "SELECT integration_id, last_error FROM notify_delivery.deliveries \
                 WHERE attempts > 0",
                &[],
            )
            .await
            .expect("deliveries")
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    row.get::<_, Option<String>>(1).unwrap_or_default(),
                )
            })
            .collect::<BTreeMap<uuid::Uuid, String>>()
    };
    assert!(eventually(WAIT_MS, || async { errors().await.len() == expected.len() }).await);
    for (integration, error) in errors().await {
        let wanted = &expected[&integration];
        assert!(
            error.ends_with(wanted.as_str()),
            "{error:?} should end with {wanted:?}"
        );
    }
    assert_eq!(receiver.requests().len(), 0);
    assert_eq!(smtp.messages().len(), 0);
    worker.stop().await;
    projector.stop().await;
    writer.stop().await.expect("writer");
}
