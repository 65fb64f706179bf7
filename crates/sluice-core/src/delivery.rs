//! A notification to one recipient or webhook, of an import's end or of a saved export's failed
//! run: queued, sent (or retried, or given up), and kept as the log.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
}

/// What a notification tells of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum About {
    /// An import ended (its id).
    Import(i64),
    /// A saved export's run failed (the run's id).
    ExportRun(i64),
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub tenant: String,
    pub about: About,
    pub channel: Channel,
    /// An email address, or a webhook URL.
    pub target: String,
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
}
