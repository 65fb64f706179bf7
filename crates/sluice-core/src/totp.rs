//! Time-based one-time passwords (RFC 6238, as every authenticator app makes them: HMAC-SHA1,
//! 30-second steps, 6 digits) and the recovery codes that stand in for a lost phone.
//!
//! A code is accepted for the step it was made in and the ones either side (clocks drift),
//! and only for a step later than the last one the account used: a code seen once (over a
//! shoulder, in a proxy's log) cannot log in again.

use ring::hmac;

pub const STEP_SECS: u64 = 30;
pub const DIGITS: u32 = 6;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation).
pub const SECRET_BYTES: usize = 20;
/// How many recovery codes an account gets.
pub const RECOVERY_CODES: usize = 10;

/// The step `unix_secs` falls in.
pub fn step_at(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECS
}

/// The code of one step.
pub fn code_at_step(secret: &[u8], step: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &step.to_be_bytes());
    let mac = mac.as_ref();
    // Dynamic truncation (RFC 4226 5.3).
    let at = (mac[mac.len() - 1] & 0x0f) as usize;
    let bin = u32::from_be_bytes([mac[at] & 0x7f, mac[at + 1], mac[at + 2], mac[at + 3]]);
    bin % 10u32.pow(DIGITS)
}

/// The code shown at `unix_secs`, as the app shows it (leading zeros kept).
pub fn code_at(secret: &[u8], unix_secs: u64) -> String {
    format!("{:0width$}", code_at_step(secret, step_at(unix_secs)), width = DIGITS as usize)
}

/// The step a typed code belongs to, if it is right at `unix_secs` (one step of drift either
/// way) and later than `last_used` (the step the account last logged in with). Spaces in the
/// typed code are ignored; anything else that is not 6 digits is wrong.
pub fn accept(secret: &[u8], typed: &str, unix_secs: u64, last_used: Option<u64>) -> Option<u64> {
    let typed: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    if typed.len() != DIGITS as usize || !typed.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let typed: u32 = typed.parse().ok()?;
    let now = step_at(unix_secs);
    let mut found = None;
    // Every candidate is computed, so the time taken does not say which step matched.
    for step in now.saturating_sub(1)..=now + 1 {
        let fresh = last_used.is_none_or(|last| step > last);
        if code_at_step(secret, step) == typed && fresh && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// A secret as authenticator apps take it typed in: base32, no padding.
pub fn secret_base32(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// The `otpauth://` address a QR code carries (Google Authenticator's key URI format).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let label = format!("{issuer}:{account}");
    let mut uri = url::Url::parse("otpauth://totp/").unwrap_or_else(|_| unreachable!("a fixed, valid URL"));
    uri.set_path(&format!("/{}", percent(&label)));
    uri.query_pairs_mut()
        .append_pair("secret", &secret_base32(secret))
        .append_pair("issuer", issuer)
        .append_pair("algorithm", "SHA1")
        .append_pair("digits", &DIGITS.to_string())
        .append_pair("period", &STEP_SECS.to_string());
    uri.to_string()
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A recovery code from 50 random bits: ten base32 letters and digits, `xxxxx-xxxxx`.
pub fn recovery_code(random: [u8; 7]) -> String {
    let text = data_encoding::BASE32_NOPAD.encode(&random).to_lowercase();
    format!("{}-{}", &text[..5], &text[5..10])
}

/// A typed recovery code as it is hashed: lower case, without the dash or spaces.
pub fn normalise_recovery_code(typed: &str) -> String {
    typed.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B (SHA-1), the last 6 of its 8 digits.
    #[test]
    fn codes_match_the_rfc_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59, "287082"),
            (1111111109, "081804"),
            (1111111111, "050471"),
            (1234567890, "005924"),
            (2000000000, "279037"),
            (20000000000, "353130"),
        ] {
            assert_eq!(code_at(secret, time), code, "at {time}");
        }
    }

    #[test]
    fn a_code_is_accepted_within_one_step_and_never_twice() {
        let secret = b"12345678901234567890";
        let now = 1111111111;
        let code = code_at(secret, now);
        let step = accept(secret, &code, now, None).expect("right now");
        assert_eq!(step, step_at(now));
        assert_eq!(accept(secret, &code, now + 30, None), Some(step), "one step late");
        assert_eq!(accept(secret, &code, now + 61, None), None, "too late");
        assert_eq!(accept(secret, &code, now, Some(step)), None, "used already");
        assert_eq!(accept(secret, "050 471", now, None), Some(step), "spaces are fine");
        for wrong in ["", "12345", "1234567", "abcdef", "05047l"] {
            assert_eq!(accept(secret, wrong, now, None), None, "{wrong:?}");
        }
    }

    #[test]
    fn secrets_and_addresses_are_as_authenticator_apps_read_them() {
        assert_eq!(secret_base32(b"12345678901234567890"), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let uri = otpauth_uri("sluice", "ann@acme.org", b"12345678901234567890");
        assert!(
            uri.starts_with(
                "otpauth://totp/sluice:ann@acme.org?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=sluice"
            ),
            "{uri}"
        );
        let code = recovery_code([1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(code.len(), 11);
        assert_eq!(normalise_recovery_code(&code.to_uppercase()), code.replace('-', ""));
    }
}
