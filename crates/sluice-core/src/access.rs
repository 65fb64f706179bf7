//! Who may come in, as the store keeps them: dashboard accounts and their roles, REST API keys,
//! tenants' SSH keys. Plain records: the store reads and writes them, the front doors check
//! them.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Owner,
    User,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            "user" => Some(Role::User),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Owner => "owner",
            Role::User => "user",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    /// `None` for the operator's admin.
    pub tenant: Option<String>,
    pub email: String,
    pub role: Role,
    /// An owner, or a user an owner granted it: may manage SFTP credentials and settings.
    pub manages: bool,
    pub password_hash: String,
    /// Logs in with a second factor (TOTP) after the password.
    pub second_factor: bool,
}

/// An account's second factor as stored: its TOTP secret sealed (`[secrets] key_file`), one
/// being enrolled (until a code from it is confirmed), the last step used, and how many
/// recovery codes are left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecondFactor {
    pub sealed: Option<String>,
    pub pending: Option<String>,
    pub last_step: Option<i64>,
    pub recovery_codes_left: i64,
}

/// Whose key it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOwner {
    Operator,
    Tenant(String),
}

/// What an API key may do: read only, or read and change; and, optionally, only some import
/// types' records, imports and exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyScope {
    pub write: bool,
    /// Empty: every type.
    pub types: Vec<String>,
}

impl Default for KeyScope {
    fn default() -> Self {
        KeyScope { write: true, types: Vec::new() }
    }
}

impl KeyScope {
    /// `read` or `write`.
    pub fn access(&self) -> &'static str {
        if self.write { "write" } else { "read" }
    }

    /// The types as a store keeps them: joined by commas (empty: every type).
    pub fn types_column(&self) -> String {
        self.types.join(",")
    }

    /// A scope as a store keeps it: [`KeyScope::access`] and [`KeyScope::types_column`].
    pub fn from_columns(access: &str, types: &str) -> Self {
        KeyScope {
            write: access == "write",
            types: types.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
        }
    }

    /// Whether the key reaches records, imports and exports of `type_name` (a package's files,
    /// `oneroster.users`, belong to the package's type, `oneroster`).
    pub fn covers(&self, type_name: &str) -> bool {
        let base = type_name.split('.').next().unwrap_or(type_name);
        self.types.is_empty() || self.types.iter().any(|t| t == type_name || t == base)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: i64,
    pub owner: KeyOwner,
    pub name: String,
    pub scope: KeyScope,
    /// The token's first characters, to tell keys apart in listings.
    pub prefix: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// An SSH public key allowed to log in as a tenant, in OpenSSH `authorized_keys` terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    /// e.g. `ssh-ed25519`
    pub algorithm: String,
    /// The base64 key blob, exactly as in the `.pub` file.
    pub key_base64: String,
    pub comment: String,
    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}
