//! Notifications of imports: an email (SMTP) to each of a tenant's recipients, with counts,
//! the first errors and the error report attached, and a JSON POST to the tenant's webhook,
//! signed with HMAC-SHA256. Deliveries are queued in the store when an import ends and sent
//! here, with retries and backoff; the store keeps the log. Nothing here can fail an import.

mod message;
mod smtp;
pub mod tls;
mod webhook;

pub use message::plain_email;
pub use sluice_core::hmac_sha256_hex;
pub use smtp::{SmtpConfig, SmtpSecurity, send as send_email, valid_address};
pub use webhook::signature_header;

use sluice_core::delivery::About;
use sluice_store::{Channel, Delivery, SharedStore};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{info, warn};

/// Attempts before a delivery is given up, and the first wait between them (doubling).
pub const MAX_ATTEMPTS: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_secs(2);

pub struct Notifier {
    pub store: SharedStore,
    pub smtp: SmtpConfig,
    /// Let tenants' webhooks reach private addresses (this machine, the local network).
    pub allow_private_webhooks: bool,
}

/// Tenants sent for at once. Each tenant's deliveries go one at a time, oldest first, so a
/// receiver that hangs (up to its 30 s deadline per attempt) holds up only its own tenant.
const LANES: usize = 8;
/// Deliveries a lane takes before the queue is read again.
const PER_LANE: usize = 20;
/// How long a lane's claim on its deliveries lasts: longer than a lane can take (each attempt
/// ends within 30 s). A node that dies mid-lane leaves the rest to be sent when it runs out.
const LEASE: Duration = Duration::from_secs(PER_LANE as u64 * 45);

impl Notifier {
    /// Sends what is due until `shutdown` resolves; `wake` is notified when imports end.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let running: Arc<Mutex<HashSet<String>>> = Arc::default();
        let stopping = Arc::new(AtomicBool::new(false));
        loop {
            let me = self.clone();
            let due =
                match tokio::task::spawn_blocking(move || me.store.claim_deliveries(PER_LANE, LEASE)).await {
                    Ok(Ok(due)) => due,
                    Ok(Err(e)) => {
                        warn!("notifier: {e}");
                        Vec::new()
                    }
                    Err(e) => {
                        warn!("notifier: {e}");
                        Vec::new()
                    }
                };
            let mut not_now: Vec<i64> = Vec::new();
            for lane in lanes(due) {
                let tenant = lane[0].tenant.clone();
                {
                    let mut busy = running.lock().unwrap_or_else(|p| p.into_inner());
                    if busy.len() >= LANES || !busy.insert(tenant.clone()) {
                        // Claimed, but no lane for it now: given back, due at the next look.
                        not_now.extend(lane.iter().map(|d| d.id));
                        continue;
                    }
                }
                let (me, running, stopping, wake) =
                    (self.clone(), running.clone(), stopping.clone(), wake.clone());
                tokio::task::spawn_blocking(move || {
                    for (i, d) in lane.iter().enumerate() {
                        if stopping.load(Ordering::Relaxed) {
                            // Stopping: what this lane has not attempted is due again at once
                            // (for another node, or this one's next start).
                            let rest: Vec<i64> = lane[i..].iter().map(|d| d.id).collect();
                            if let Err(e) = me.store.release_deliveries(&rest) {
                                warn!(tenant = d.tenant, "notifier: giving back deliveries: {e}");
                            }
                            break;
                        }
                        me.attempt(d);
                    }
                    info!(tenant, "{} notification(s) attempted", lane.len());
                    running.lock().unwrap_or_else(|p| p.into_inner()).remove(&tenant);
                    // Look at the queue again at once: more of this tenant's may be due.
                    wake.notify_one();
                });
            }
            if !not_now.is_empty() {
                let me = self.clone();
                match tokio::task::spawn_blocking(move || me.store.release_deliveries(&not_now)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!("notifier: giving back deliveries: {e}"),
                    Err(e) => warn!("notifier: giving back deliveries: {e}"),
                }
            }
            tokio::select! {
                _ = &mut shutdown => {
                    // Lanes finish the attempt they are in and start no other.
                    stopping.store(true, Ordering::Relaxed);
                    return;
                }
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Attempts one delivery and records the outcome: sent, a retry after a backoff, or
    /// given up after `MAX_ATTEMPTS`.
    fn attempt(&self, d: &Delivery) {
        let result = self.send(d);
        let (error, retry) = match &result {
            Ok(()) => (None, None),
            Err(e) if d.attempts + 1 < MAX_ATTEMPTS => {
                let wait = FIRST_RETRY * 2u32.saturating_pow(d.attempts);
                (Some(e.as_str()), Some(sluice_store::now_ms() + wait.as_millis() as i64))
            }
            Err(e) => (Some(e.as_str()), None),
        };
        if let Some(e) = error {
            warn!(
                tenant = d.tenant,
                about = ?d.about,
                target = d.target,
                attempt = d.attempts + 1,
                "notification not delivered: {e}"
            );
        }
        if let Err(e) = self.store.delivery_attempted(d.id, error, retry) {
            warn!("notifier: {e}");
        }
    }

    fn send(&self, d: &Delivery) -> Result<(), String> {
        let import_id = match d.about {
            About::Import(id) => id,
            About::ExportRun(run) => return self.send_export_failure(d, run),
        };
        let import = self
            .store
            .import(import_id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("import {import_id} no longer exists"))?;
        let errors = self.store.import_errors(import_id, 10, 0).map_err(|e| e.to_string())?;
        match d.channel {
            Channel::Email => {
                let report = import.report_file.as_ref().and_then(|p| std::fs::read(p).ok());
                let mail = message::email(&self.smtp.from, &d.target, &import, &errors, report.as_deref());
                smtp::send(&self.smtp, &d.target, &mail).map_err(|e| e.to_string())
            }
            Channel::Webhook => self.post(d, &message::webhook_body(d.id, &import, &errors)),
        }
    }

    /// A saved export's failed run, by email or webhook.
    fn send_export_failure(&self, d: &Delivery, run_id: i64) -> Result<(), String> {
        let run = self
            .store
            .export_run(run_id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("export run {run_id} no longer exists"))?;
        match d.channel {
            Channel::Email => {
                let mail = message::export_failed_email(&self.smtp.from, &d.target, &run);
                smtp::send(&self.smtp, &d.target, &mail).map_err(|e| e.to_string())
            }
            Channel::Webhook => self.post(d, &message::export_failed_body(d.id, &run)),
        }
    }

    /// Posts a webhook body, signed with the tenant's secret.
    fn post(&self, d: &Delivery, body: &str) -> Result<(), String> {
        let tenant = self.store.require_tenant(&d.tenant).map_err(|e| e.to_string())?;
        let secret = tenant.webhook.map(|(_, s)| s).unwrap_or_default();
        webhook::post(&self.smtp.tls.client, &d.target, &secret, d.id, body, self.allow_private_webhooks)
    }
}

/// Due deliveries grouped per tenant, tenants in the order of their oldest delivery.
fn lanes(due: Vec<Delivery>) -> Vec<Vec<Delivery>> {
    let mut lanes: Vec<Vec<Delivery>> = Vec::new();
    let mut lane_of: std::collections::HashMap<String, usize> = Default::default();
    for d in due {
        match lane_of.get(&d.tenant) {
            Some(&i) => lanes[i].push(d),
            None => {
                lane_of.insert(d.tenant.clone(), lanes.len());
                lanes.push(vec![d]);
            }
        }
    }
    lanes
}
