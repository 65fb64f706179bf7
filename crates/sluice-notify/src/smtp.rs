//! A small SMTP client (RFC 5321): EHLO, optional AUTH PLAIN, one message to one recipient.

use crate::tls::Conn;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
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
    pub from: String,
    /// Trusted for TLS (the public roots, and the operator's own CA if configured).
    pub tls: Arc<rustls::ClientConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("no SMTP server is configured ([notifications] smtp_host)")]
    NotConfigured,
    #[error("{0:?} is not an email address sluice will send to")]
    BadAddress(String),
    #[error("cannot reach {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("{0}")]
    Tls(String),
    #[error("the SMTP conversation broke off: {0}")]
    Io(#[from] std::io::Error),
    #[error("the SMTP server refused {command}: {reply}")]
    Refused { command: String, reply: String },
}

pub use sluice_core::people::mail_address_ok as valid_address;

pub fn send(cfg: &SmtpConfig, to: &str, message: &str) -> Result<(), SmtpError> {
    if cfg.host.is_empty() {
        return Err(SmtpError::NotConfigured);
    }
    for a in [to, cfg.from.as_str()] {
        if !valid_address(a) {
            return Err(SmtpError::BadAddress(a.to_owned()));
        }
    }
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let tcp = TcpStream::connect(&addr).map_err(|e| SmtpError::Connect(addr.clone(), e))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(30)))?;
    let conn = match cfg.security {
        SmtpSecurity::Tls => Conn::tls(&cfg.tls, &cfg.host, tcp).map_err(SmtpError::Tls)?,
        _ => Conn::Plain(tcp),
    };
    let mut smtp = BufReader::new(conn);
    expect(&mut smtp, "the greeting", 220)?;
    command(&mut smtp, "EHLO sluice", "EHLO", 250)?;
    if cfg.security == SmtpSecurity::StartTls {
        command(&mut smtp, "STARTTLS", "STARTTLS", 220)?;
        // The server says nothing more until the handshake: nothing is left in the buffer.
        let Conn::Plain(tcp) = smtp.into_inner() else { unreachable!("STARTTLS starts from plain text") };
        smtp = BufReader::new(Conn::tls(&cfg.tls, &cfg.host, tcp).map_err(SmtpError::Tls)?);
        command(&mut smtp, "EHLO sluice", "EHLO after STARTTLS", 250)?;
    }
    if !cfg.username.is_empty() {
        let token = crate::message::base64(format!("\0{}\0{}", cfg.username, cfg.password).as_bytes());
        command(&mut smtp, &format!("AUTH PLAIN {token}"), "the login (AUTH PLAIN)", 235)?;
    }
    command(&mut smtp, &format!("MAIL FROM:<{}>", cfg.from), "the sender", 250)?;
    command(&mut smtp, &format!("RCPT TO:<{to}>"), "the recipient", 250)?;
    command(&mut smtp, "DATA", "DATA", 354)?;
    // The message, dot-stuffed (a line starting with '.' gets another), then a lone '.'.
    let mut data = String::with_capacity(message.len() + 64);
    for line in message.trim_end_matches("\r\n").split("\r\n") {
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(line);
        data.push_str("\r\n");
    }
    data.push('.');
    command(&mut smtp, &data, "the message", 250)?;
    let _ = command(&mut smtp, "QUIT", "QUIT", 221);
    Ok(())
}

fn command(smtp: &mut BufReader<Conn>, line: &str, what: &str, code: u16) -> Result<(), SmtpError> {
    let conn = smtp.get_mut();
    conn.write_all(line.as_bytes())?;
    conn.write_all(b"\r\n")?;
    conn.flush()?;
    expect(smtp, what, code)
}

/// Reads a (possibly multi-line) reply and checks its code.
fn expect(reader: &mut impl BufRead, what: &str, code: u16) -> Result<(), SmtpError> {
    let mut reply = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(SmtpError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )));
        }
        reply.push_str(line.trim_end());
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            break;
        }
        reply.push(' ');
    }
    let got: u16 = reply.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
    if got == code { Ok(()) } else { Err(SmtpError::Refused { command: what.to_owned(), reply }) }
}
