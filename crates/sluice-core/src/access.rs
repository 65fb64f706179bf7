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
}

/// Whose key it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOwner {
    Operator,
    Tenant(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: i64,
    pub owner: KeyOwner,
    pub name: String,
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
