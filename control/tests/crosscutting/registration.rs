//! Registration with email verification (`require_email_verification`,
//! issue 18): every address gets the same 202, mail goes through a real
//! SMTP server on loopback, the account exists only once the token is
//! presented, and tokens are single-use. SQLite and PostgreSQL.

use std::time::Duration;

use delta_control::mailer::{SmtpConfig, SmtpTls};
use delta_test_servers::smtp::{ReceivedMail, SmtpServer, SmtpServerConfig};

use super::common::eventually;
use super::*;

const PASSWORD: &str = "correct horse battery staple";

async fn verifying(dialect: Dialect) -> (Control, SmtpServer) {
    let smtp = SmtpServer::start(SmtpServerConfig::default())
        .await
        .expect("smtp");
    let port = smtp.addr().port();
    let ctl = Control::start_with(dialect, move |c| {
        c.require_email_verification = true;
        c.smtp = Some(SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(port),
            tls: SmtpTls::None,
            username: None,
            password_file: None,
            from: "Delta <noreply@delta.test>".into(),
        });
    })
    .await;
    (ctl, smtp)
}

async fn register(ctl: &Control, email: &str) -> (StatusCode, Value) {
    ctl.call(
        Method::POST,
        "/v1/auth/register",
        None,
        Some(json!({ "email": email, "password": PASSWORD })),
    )
    .await
}

async fn login(ctl: &Control, email: &str) -> StatusCode {
    ctl.call(
        Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({ "email": email, "password": PASSWORD })),
    )
    .await
    .0
}

/// The `n`th mail to arrive (waiting for it).
async fn mail(smtp: &SmtpServer, n: usize) -> ReceivedMail {
    eventually("a mail", Duration::from_secs(20), || async {
        smtp.messages().get(n).cloned()
    })
    .await
}

/// The token in a verification mail: its one 64-hex-digit line.
fn token_of(mail: &ReceivedMail) -> Option<String> {
    mail.body()
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
}

on_both!(
    registration_reveals_no_account_and_needs_the_emailed_token,
    |dialect| async move {
        let (ctl, smtp) = verifying(dialect).await;
        let (status, first) = register(&ctl, "Carol@Example.com").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{first}");
        assert_eq!(
            first,
            json!({ "status": "verification_sent", "email": "carol@example.com" })
        );
        let sent = mail(&smtp, 0).await;
        assert_eq!(sent.rcpt_to, ["carol@example.com"]);
        let token = token_of(&sent).expect("a token in the mail");
        // No account yet.
        assert_eq!(
            login(&ctl, "carol@example.com").await,
            StatusCode::UNAUTHORIZED
        );

        let verify = |token: String| {
            let ctl = &ctl;
            async move {
                ctl.call(
                    Method::POST,
                    "/v1/auth/verify-email",
                    None,
                    Some(json!({ "token": token })),
                )
                .await
            }
        };
        let (status, created) = verify(token.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["user"]["email"], "carol@example.com");
        assert_eq!(login(&ctl, "carol@example.com").await, StatusCode::OK);
        // Single use.
        let (status, e) = verify(token).await;
        assert_eq!(
            (status, e["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("invalid_token"))
        );
        let (status, _) = verify("0".repeat(64)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = verify("not a token".into()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

        // The address has an account now: the same answer as for a new one,
        // the owner is told, no token is sent and nothing changes.
        let (status, again) = register(&ctl, "carol@example.com").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{again}");
        assert_eq!(
            again,
            json!({ "status": "verification_sent", "email": "carol@example.com" })
        );
        let warning = mail(&smtp, 1).await;
        assert_eq!(warning.rcpt_to, ["carol@example.com"]);
        assert!(
            warning
                .header("Subject")
                .unwrap_or_default()
                .contains("tried to register")
        );
        assert_eq!(token_of(&warning), None, "{}", warning.body());
        assert_eq!(login(&ctl, "carol@example.com").await, StatusCode::OK);

        // A second registration of a pending address replaces the first token.
        register(&ctl, "dave@example.com").await;
        let old = token_of(&mail(&smtp, 2).await).expect("token");
        register(&ctl, "dave@example.com").await;
        let new = token_of(&mail(&smtp, 3).await).expect("token");
        assert_ne!(old, new);
        assert_eq!(verify(old).await.0, StatusCode::NOT_FOUND);
        assert_eq!(verify(new).await.0, StatusCode::CREATED);
        // Bad input is still refused before anything is sent.
        let (status, _) = ctl
            .call(
                Method::POST,
                "/v1/auth/register",
                None,
                Some(json!({ "email": "erin@example.com", "password": "short" })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(smtp.messages().len(), 4);
    }
);

#[test]
fn verification_needs_a_relay() {
    let config = delta_control::config::ControlConfig {
        require_email_verification: true,
        ..Default::default()
    };
    let err = config.validate().expect_err("refused");
    assert!(err.to_string().contains("[smtp]"), "{err}");
}
