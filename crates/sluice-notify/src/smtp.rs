//! Sending one notification email through lettre's SMTP transport: it reads the server's EHLO
//! capabilities, upgrades with STARTTLS (and fails rather than go on in clear text when the
//! server does not offer it), picks an AUTH mechanism the server offers, and dot-stuffs the
//! message. The message itself (headers, parts) is written by [`crate::message`].

use crate::tls::Trust;
use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{SmtpTransport, Transport};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain SMTP: a relay on the same machine or network.
    None,
    /// Plain, then upgraded with STARTTLS (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl SmtpSecurity {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(SmtpSecurity::None),
            "starttls" => Some(SmtpSecurity::StartTls),
            "tls" => Some(SmtpSecurity::Tls),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Empty: email notifications are off.
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: String,
    pub password: String,
    /// Send the user name and password over a connection that is not encrypted
    /// (`smtp_security = "none"`); off unless the operator says so.
    pub plaintext_auth: bool,
    pub from: String,
    /// Trusted for TLS (the public roots, and the operator's own CA if configured).
    pub tls: Trust,
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("no SMTP server is configured ([notifications] smtp_host)")]
    NotConfigured,
    #[error("{0:?} is not an email address sluice will send to")]
    BadAddress(String),
    #[error(
        "not sending the SMTP password in clear text: smtp_security is \"none\"; use \"starttls\" or \"tls\", or set [notifications] smtp_plaintext_auth = true for a relay on a trusted network"
    )]
    PlaintextAuth,
    #[error("TLS settings for {host}: {why}")]
    Tls { host: String, why: String },
    #[error("sending to {host}:{port} failed: {why}")]
    Send { host: String, port: u16, why: String },
}

pub use sluice_core::people::mail_address_ok as valid_address;

/// Sends `message` (a complete RFC 5322 message, CRLF line ends) to `to`.
pub fn send(cfg: &SmtpConfig, to: &str, message: &str) -> Result<(), SmtpError> {
    if cfg.host.is_empty() {
        return Err(SmtpError::NotConfigured);
    }
    let address = |a: &str| -> Result<Address, SmtpError> {
        if !valid_address(a) {
            return Err(SmtpError::BadAddress(a.to_owned()));
        }
        a.parse::<Address>().map_err(|_| SmtpError::BadAddress(a.to_owned()))
    };
    let envelope = Envelope::new(Some(address(&cfg.from)?), vec![address(to)?])
        .map_err(|_| SmtpError::BadAddress(to.to_owned()))?;
    let transport = transport(cfg)?;
    transport.send_raw(&envelope, message.as_bytes()).map_err(|e| SmtpError::Send {
        host: cfg.host.clone(),
        port: cfg.port,
        why: describe(&e),
    })?;
    Ok(())
}

/// The transport for `cfg`: refuses to send credentials unencrypted unless allowed.
fn transport(cfg: &SmtpConfig) -> Result<SmtpTransport, SmtpError> {
    let with_auth = !cfg.username.is_empty();
    if with_auth && cfg.security == SmtpSecurity::None && !cfg.plaintext_auth {
        return Err(SmtpError::PlaintextAuth);
    }
    let tls = match cfg.security {
        SmtpSecurity::None => Tls::None,
        SmtpSecurity::StartTls => Tls::Required(tls_parameters(cfg)?),
        SmtpSecurity::Tls => Tls::Wrapper(tls_parameters(cfg)?),
    };
    let mut builder = SmtpTransport::builder_dangerous(cfg.host.as_str())
        .port(cfg.port)
        .tls(tls)
        .hello_name(ClientId::Domain("sluice".into()))
        .timeout(Some(Duration::from_secs(30)));
    if with_auth {
        builder = builder.credentials(Credentials::new(cfg.username.clone(), cfg.password.clone()));
    }
    Ok(builder.build())
}

fn tls_parameters(cfg: &SmtpConfig) -> Result<TlsParameters, SmtpError> {
    let bad = |why: String| SmtpError::Tls { host: cfg.host.clone(), why };
    let mut params =
        TlsParameters::builder(cfg.host.clone()).certificate_store(CertificateStore::WebpkiRoots);
    for root in &cfg.tls.extra_roots {
        params = params
            .add_root_certificate(Certificate::from_der(root.to_vec()).map_err(|e| bad(e.to_string()))?);
    }
    params.build_rustls().map_err(|e| bad(e.to_string()))
}

/// lettre's error with its causes (the TLS or I/O reason is in the source chain).
fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    fn config(port: u16, security: SmtpSecurity, username: &str, plaintext_auth: bool) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            security,
            username: username.into(),
            password: "s3cret-smtp-pw".into(),
            plaintext_auth,
            from: "sluice@district.org".into(),
            tls: crate::tls::trust(None).unwrap(),
        }
    }

    /// A one-connection SMTP server offering `ehlo` extensions; returns every line it read.
    fn fake_server(ehlo: &'static [&'static str]) -> (u16, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let Ok((stream, _)) = listener.accept() else { return seen };
            let mut out = stream.try_clone().unwrap();
            let mut lines = BufReader::new(stream);
            let _ = out.write_all(b"220 fake ESMTP\r\n");
            let mut in_data = false;
            loop {
                let mut line = String::new();
                if lines.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end().to_owned();
                seen.push(line.clone());
                let reply: String = if in_data {
                    if line != "." {
                        continue;
                    }
                    in_data = false;
                    "250 queued".into()
                } else if line.starts_with("EHLO") {
                    let mut r = String::from("250-fake");
                    for e in ehlo {
                        r.push_str("\r\n250-");
                        r.push_str(e);
                    }
                    r.push_str("\r\n250 8BITMIME");
                    r
                } else if line.starts_with("AUTH") {
                    "235 ok".into()
                } else if line == "DATA" {
                    in_data = true;
                    "354 go on".into()
                } else if line == "QUIT" {
                    let _ = out.write_all(b"221 bye\r\n");
                    break;
                } else if line == "STARTTLS" {
                    "454 not today".into()
                } else {
                    "250 ok".into()
                };
                let _ = out.write_all(format!("{reply}\r\n").as_bytes());
            }
            seen
        });
        (port, handle)
    }

    const MESSAGE: &str =
        "From: sluice@district.org\r\nTo: ops@district.org\r\nSubject: t\r\n\r\n.dot line\r\nbody\r\n";

    #[test]
    fn credentials_are_not_sent_in_clear_text_unless_the_operator_allows_it() {
        // Nothing listens: the refusal comes before any connection.
        let err =
            send(&config(1, SmtpSecurity::None, "mailer", false), "ops@district.org", MESSAGE).unwrap_err();
        assert!(matches!(err, SmtpError::PlaintextAuth), "{err}");
        assert!(err.to_string().contains("smtp_plaintext_auth"), "{err}");

        let (port, server) = fake_server(&["AUTH PLAIN LOGIN"]);
        send(&config(port, SmtpSecurity::None, "mailer", true), "ops@district.org", MESSAGE).unwrap();
        let seen = server.join().unwrap();
        assert!(seen.iter().any(|l| l.starts_with("AUTH PLAIN")), "{seen:?}");
    }

    #[test]
    fn the_message_is_dot_stuffed_and_sent_without_auth_when_none_is_configured() {
        let (port, server) = fake_server(&[]);
        send(&config(port, SmtpSecurity::None, "", false), "ops@district.org", MESSAGE).unwrap();
        let seen = server.join().unwrap();
        assert!(seen.contains(&"MAIL FROM:<sluice@district.org>".to_owned()), "{seen:?}");
        assert!(seen.contains(&"RCPT TO:<ops@district.org>".to_owned()), "{seen:?}");
        assert!(seen.contains(&"..dot line".to_owned()), "a leading dot is doubled: {seen:?}");
        assert!(!seen.iter().any(|l| l.starts_with("AUTH")), "{seen:?}");
    }

    #[test]
    fn starttls_that_the_server_does_not_offer_fails_before_credentials_are_sent() {
        let (port, server) = fake_server(&["AUTH PLAIN"]);
        let err = send(&config(port, SmtpSecurity::StartTls, "mailer", false), "ops@district.org", MESSAGE)
            .unwrap_err();
        assert!(matches!(err, SmtpError::Send { .. }), "{err}");
        let seen = server.join().unwrap();
        assert!(!seen.iter().any(|l| l.starts_with("AUTH") || l.starts_with("MAIL")), "{seen:?}");
    }

    #[test]
    fn addresses_are_checked_before_connecting() {
        let err = send(&config(1, SmtpSecurity::None, "", false), "not an address", MESSAGE).unwrap_err();
        assert!(matches!(err, SmtpError::BadAddress(_)), "{err}");
    }
}
