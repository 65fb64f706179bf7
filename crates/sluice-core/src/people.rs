//! Who a record is about. Records of types that declare a person (guardians, staff, students)
//! are roles of people; a person is matched by the source system's id within a role, else by
//! exact name, email and phone (ClassTag's rule), so one person may hold several roles.

/// A person's contact details as compared: names exact (trimmed), email without case, phone
/// as its digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Contact {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
}

impl Contact {
    pub fn new(first_name: &str, last_name: &str, email: &str, phone: &str) -> Self {
        Self {
            first_name: first_name.trim().to_owned(),
            last_name: last_name.trim().to_owned(),
            email: email.trim().to_lowercase(),
            phone: phone.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect(),
        }
    }

    /// Stands in for a missing source id in a record's key: the same contact details make the
    /// same key, different ones a different record.
    pub fn key(&self) -> String {
        format!("~{}|{}|{}|{}", self.first_name, self.last_name, self.email, self.phone)
    }

    pub fn describe(&self) -> String {
        let mut s = format!("{} {}", self.first_name, self.last_name);
        for part in [&self.email, &self.phone].into_iter().filter(|p| !p.is_empty()) {
            s.push_str(&format!(", {part}"));
        }
        s
    }
}

/// How many addresses one tenant's notifications may go to.
pub const MAX_RECIPIENTS: usize = 20;

/// An address notifications may be sent to, and that is safe on an SMTP command line and in
/// a header: no spaces, angle brackets, quotes or line breaks; a local part and a domain.
pub fn mail_address_ok(a: &str) -> bool {
    !a.chars().any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
        && a.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
}

/// A tenant's notification recipients as typed (a list, or one comma-separated line):
/// trimmed, lower-cased and checked; the error says what to fix.
pub fn recipients<'a>(typed: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let list: Vec<String> = typed
        .into_iter()
        .flat_map(|t| t.split(','))
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty())
        .collect();
    if list.len() > MAX_RECIPIENTS {
        return Err(format!("at most {MAX_RECIPIENTS} addresses"));
    }
    match list.iter().find(|e| !mail_address_ok(e)) {
        Some(bad) => Err(format!("{bad:?} is not an email address")),
        None => Ok(list),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_details_compare_without_formatting() {
        let a = Contact::new(" Ann ", "Lee", "Ann@Example.org", "(555) 010-2000");
        let b = Contact::new("Ann", "Lee", "ann@example.org", "5550102000");
        assert_eq!(a, b);
        assert_eq!(a.key(), "~Ann|Lee|ann@example.org|5550102000");
        assert_ne!(a, Contact::new("Ann", "Lee", "ann@example.org", "5550102001"));
        assert_eq!(a.describe(), "Ann Lee, ann@example.org, 5550102000");
    }

    #[test]
    fn recipients_and_webhooks_are_checked_as_typed() {
        assert_eq!(super::recipients([" Ops@X.org, b@y.org ,"]).unwrap(), ["ops@x.org", "b@y.org"]);
        assert!(super::recipients(["a@x.org", "not one"]).unwrap_err().contains("\"not one\""));
        let many = vec!["a@x.org"; super::MAX_RECIPIENTS + 1];
        assert!(super::recipients(many).unwrap_err().contains("at most"));
    }

    #[test]
    fn mail_addresses_cannot_carry_smtp_commands_or_headers() {
        assert!(super::mail_address_ok("ops@district.org") && super::mail_address_ok("sluice@localhost"));
        for bad in [
            "",
            "ops",
            "@x.org",
            "a@b@c",
            "a b@x.org",
            "a@x.org\r\nRCPT TO:<evil@x.org>",
            "<a@x.org>",
            "a@x.org,b@y.org",
        ] {
            assert!(!super::mail_address_ok(bad), "{bad:?}");
        }
    }
}
