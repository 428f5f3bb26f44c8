//! `guestloop import stays`: a PMS export (CSV) into CRM through `UpsertStays`, in batches sent
//! by several concurrent workers, with a progress bar. Idempotent like the RPC: importing a file
//! twice inserts nothing twice and earns nothing twice.
//!
//! Columns (a header row names them, in any order): property_id, pms_reservation_id, guest_id,
//! arrival_date, departure_date, room, rate_currency, rate_minor, spend_currency, spend_minor,
//! status (booked, in_house, checked_out, cancelled, no_show).

use std::io::Read;
use std::time::{Duration, Instant};

use futures::StreamExt;
use guestloop_kit::client::{channel, retry_idempotent, AuthedChannel, CallContext};
use guestloop_proto::common::v1::Money;
use guestloop_proto::crm::v1 as pb;
use guestloop_proto::crm::v1::crm_service_client::CrmServiceClient;
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::SecretString;
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;

type Crm = CrmServiceClient<AuthedChannel>;

/// One CSV record.
#[derive(Debug, Deserialize)]
struct Record {
    property_id: String,
    pms_reservation_id: String,
    guest_id: String,
    arrival_date: String,
    departure_date: String,
    #[serde(default)]
    room: String,
    #[serde(default)]
    rate_currency: String,
    #[serde(default)]
    rate_minor: i64,
    #[serde(default)]
    spend_currency: String,
    #[serde(default)]
    spend_minor: i64,
    status: String,
}

fn status(text: &str) -> Option<pb::StayStatus> {
    match text {
        "booked" => Some(pb::StayStatus::Booked),
        "in_house" => Some(pb::StayStatus::InHouse),
        "checked_out" => Some(pb::StayStatus::CheckedOut),
        "cancelled" => Some(pb::StayStatus::Cancelled),
        "no_show" => Some(pb::StayStatus::NoShow),
        _ => None,
    }
}

fn money(currency: String, minor: i64) -> Option<Money> {
    (!currency.is_empty() || minor != 0).then_some(Money {
        currency_code: currency,
        minor_units: minor,
    })
}

impl Record {
    fn into_stay(self, line: u64) -> anyhow::Result<pb::Stay> {
        let status = status(&self.status).ok_or_else(|| {
            anyhow::anyhow!(
                "line {line}: status `{}` is not one of booked, in_house, checked_out, cancelled, no_show",
                self.status
            )
        })?;
        Ok(pb::Stay {
            property_id: self.property_id,
            pms_reservation_id: self.pms_reservation_id,
            guest_id: self.guest_id,
            arrival_date: self.arrival_date,
            departure_date: self.departure_date,
            room: self.room,
            rate: money(self.rate_currency, self.rate_minor),
            spend: money(self.spend_currency, self.spend_minor),
            status: status as i32,
        })
    }
}

/// What an import did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ImportStats {
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// How often a batch was sent again after a transient refusal.
    pub resent: u64,
    pub elapsed: Duration,
}

/// How often a batch is sent at most: the waits between attempts add up to about 16 s, long
/// enough for CRM to restart.
const ATTEMPTS: u32 = 10;

impl ImportStats {
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A CRM client for `endpoint` with `token`.
pub fn client(endpoint: &str, token: &str) -> anyhow::Result<Crm> {
    let context = CallContext::with_token(&SecretString::from(token.to_string()))?;
    Ok(CrmServiceClient::new(InterceptedService::new(
        channel(endpoint, Duration::from_secs(120))?,
        context,
    ))
    .max_decoding_message_size(64 * 1024 * 1024)
    .max_encoding_message_size(64 * 1024 * 1024))
}

/// Reads CSV from `input` and upserts it in batches of `batch` with `workers` concurrent calls.
/// `total_bytes` sizes the progress bar (None: a spinner); `show` hides it for benchmarks.
pub async fn import_stays<R: Read + Send + 'static>(
    crm: Crm,
    input: R,
    total_bytes: Option<u64>,
    batch: usize,
    workers: usize,
    show: bool,
) -> anyhow::Result<ImportStats> {
    anyhow::ensure!(
        (1..=guestloop_crm::MAX_STAYS_PER_CALL).contains(&batch),
        "--batch must be between 1 and {}",
        guestloop_crm::MAX_STAYS_PER_CALL
    );
    anyhow::ensure!(
        (1..=64).contains(&workers),
        "--workers must be between 1 and 64"
    );
    let progress = if !show {
        ProgressBar::hidden()
    } else if let Some(total) = total_bytes {
        ProgressBar::new(total).with_style(ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {msg} eta {eta}",
        )?)
    } else {
        ProgressBar::new_spinner()
    };
    let started = Instant::now();
    let (sender, receiver) = tokio::sync::mpsc::channel::<(u64, Vec<pb::Stay>)>(workers * 2);
    // The reader runs on a blocking thread: CSV parsing is synchronous.
    let reader_progress = progress.clone();
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let mut csv = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(input);
        let mut rows = 0u64;
        let mut current = Vec::with_capacity(batch);
        let mut first_line = 2u64;
        let headers = csv
            .headers()
            .map_err(|e| anyhow::anyhow!("line 1 (header): {e}"))?
            .clone();
        let mut raw = csv::StringRecord::new();
        let mut line = 1u64;
        loop {
            line += 1;
            match csv.read_record(&mut raw) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => anyhow::bail!("line {line}: {e}"),
            }
            let record: Record = raw
                .deserialize(Some(&headers))
                .map_err(|e| anyhow::anyhow!("line {line}: {e}"))?;
            if current.is_empty() {
                first_line = line;
            }
            current.push(record.into_stay(line)?);
            rows += 1;
            if current.len() == batch {
                let full = std::mem::replace(&mut current, Vec::with_capacity(batch));
                if sender.blocking_send((first_line, full)).is_err() {
                    // The importer stopped (a refused batch); its error is reported.
                    return Ok(rows);
                }
                reader_progress.set_position(csv.position().byte());
            }
        }
        if !current.is_empty() {
            let _ = sender.blocking_send((first_line, current));
        }
        reader_progress.set_position(csv.position().byte());
        Ok(rows)
    });
    // A batch is sent again when CRM cannot take it just now (restarting, at its concurrency
    // limit, or racing a merge): the upsert is idempotent, so a batch that did commit before
    // its answer was lost finds its stays unchanged.
    let mut calls = ReceiverStream::new(receiver)
        .map(|(first_line, stays)| {
            let crm = crm.clone();
            async move {
                let count = stays.len() as u64;
                let request = pb::UpsertStaysRequest { stays };
                let mut sent = 0u64;
                retry_idempotent(ATTEMPTS, || {
                    sent += 1;
                    let mut crm = crm.clone();
                    let request = request.clone();
                    async move { crm.upsert_stays(request).await }
                })
                .await
                .map(|answer| (count, sent - 1, answer.into_inner()))
                .map_err(|status| {
                    anyhow::anyhow!(
                        "the batch starting at line {first_line} was refused{}: {:?} {}",
                        if sent > 1 {
                            format!(" (sent {sent} times)")
                        } else {
                            String::new()
                        },
                        status.code(),
                        status.message()
                    )
                })
            }
        })
        .buffer_unordered(workers);
    let mut total = ImportStats::default();
    while let Some(result) = calls.next().await {
        let (count, resent, answer) = match result {
            Ok(done) => done,
            Err(error) => {
                drop(calls);
                progress.abandon();
                let _ = reader.await;
                return Err(error);
            }
        };
        total.rows += count;
        total.resent += resent;
        total.inserted += answer.inserted as u64;
        total.updated += answer.updated as u64;
        total.unchanged += answer.unchanged as u64;
        progress.set_message(format!("{} rows", total.rows));
    }
    let read = reader.await??;
    progress.finish_and_clear();
    anyhow::ensure!(
        read == total.rows,
        "read {read} rows but {} were sent",
        total.rows
    );
    total.elapsed = started.elapsed();
    Ok(total)
}
