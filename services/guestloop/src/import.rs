//! `guestloop import stays`: a PMS export (CSV) into CRM through `UpsertStays`, in batches sent
//! by several concurrent workers, with a progress bar. Idempotent like the RPC: importing a file
//! twice inserts nothing twice and earns nothing twice.
//!
//! Columns (a header row names them, in any order): property_id, pms_reservation_id, guest_id,
//! arrival_date, departure_date, room, rate_currency, rate_minor, spend_currency, spend_minor,
//! status (booked, in_house, checked_out, cancelled, no_show). The amounts (rate_minor,
//! spend_minor) are whole minor units; an empty cell, like a missing column, is no amount.

mod rows;

use std::io::Read;
use std::time::{Duration, Instant};

use futures::StreamExt;
use guestloop_kit::client::{channel, retry_idempotent, AuthedChannel, CallContext};
use guestloop_proto::crm::v1 as pb;
use guestloop_proto::crm::v1::crm_service_client::CrmServiceClient;
use indicatif::{ProgressBar, ProgressStyle};
use rows::StayRows;
use secrecy::SecretString;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;

type Crm = CrmServiceClient<AuthedChannel>;

/// What an import did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ImportStats {
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Rows CRM left alone as it holds a later version of their reservation.
    pub stale: u64,
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
    // Each batch goes with the line of the file each of its stays starts on.
    let (sender, receiver) = tokio::sync::mpsc::channel::<(Vec<u64>, Vec<pb::Stay>)>(workers * 2);
    // The reader runs on a blocking thread: CSV parsing is synchronous.
    let reader_progress = progress.clone();
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let mut file = StayRows::new(input)?;
        let mut rows = 0u64;
        let (mut lines, mut stays) = (Vec::with_capacity(batch), Vec::with_capacity(batch));
        while let Some((line, stay)) = file.next_stay()? {
            lines.push(line);
            stays.push(stay);
            rows += 1;
            if stays.len() == batch {
                let full = (
                    std::mem::replace(&mut lines, Vec::with_capacity(batch)),
                    std::mem::replace(&mut stays, Vec::with_capacity(batch)),
                );
                if sender.blocking_send(full).is_err() {
                    // The importer stopped (a refused batch); its error is reported.
                    return Ok(rows);
                }
                reader_progress.set_position(file.bytes_read());
            }
        }
        if !stays.is_empty() {
            let _ = sender.blocking_send((lines, stays));
        }
        reader_progress.set_position(file.bytes_read());
        Ok(rows)
    });
    // A batch is sent again when CRM cannot take it just now (restarting, at its concurrency
    // limit, or racing a merge): the upsert is idempotent, so a batch that did commit before
    // its answer was lost finds its stays unchanged.
    let mut calls = ReceiverStream::new(receiver)
        .map(|(lines, stays)| {
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
                .map_err(|status| refused(&lines, sent, &status))
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
        total.stale += answer.stale as u64;
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

/// A refused batch, by the lines of the file CRM's answer names (`stays[i]` is the batch's
/// `i`th stay), else by the line the batch starts on.
fn refused(lines: &[u64], sent: u64, status: &tonic::Status) -> anyhow::Error {
    let message = status.message();
    let named = named_rows(message, lines);
    let sent = if sent > 1 {
        format!(" (sent {sent} times)")
    } else {
        String::new()
    };
    let code = status.code();
    match named.as_slice() {
        [] => anyhow::anyhow!(
            "the batch starting at line {} was refused{sent}: {code:?} {message}",
            lines.first().copied().unwrap_or(0)
        ),
        [(index, line)] => {
            anyhow::anyhow!(
                "line {line} was refused{sent}: {code:?} {message} [stays[{index}] is line {line}]"
            )
        }
        many => {
            const LISTED: usize = 10;
            let more = if many.len() > LISTED { ", …" } else { "" };
            let lines: Vec<String> = many
                .iter()
                .take(LISTED)
                .map(|(_, l)| l.to_string())
                .collect();
            let legend: Vec<String> = many
                .iter()
                .take(LISTED)
                .map(|(i, l)| format!("stays[{i}] is line {l}"))
                .collect();
            anyhow::anyhow!(
                "lines {}{more} were refused{sent}: {code:?} {message} [{}{more}]",
                lines.join(", "),
                legend.join(", ")
            )
        }
    }
}

/// The batch rows (`stays[i]`) `message` names, with their lines, in the file's order.
fn named_rows(message: &str, lines: &[u64]) -> Vec<(usize, u64)> {
    let mut named: Vec<(usize, u64)> = message
        .split("stays[")
        .skip(1)
        .filter_map(|rest| rest.split_once(']')?.0.parse::<usize>().ok())
        .filter_map(|index| Some((index, *lines.get(index)?)))
        .collect();
    named.sort_unstable_by_key(|(index, _)| *index);
    named.dedup();
    named
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_lines_of_the_rows_it_names() {
        let lines = [2, 3, 5, 9];
        let one = tonic::Status::invalid_argument(
            "invalid request: stays[1].departure_date: must be after arrival_date",
        );
        let error = refused(&lines, 1, &one).to_string();
        assert!(
            error.starts_with("line 3 was refused: InvalidArgument"),
            "{error}"
        );
        assert!(
            error.contains("stays[1].departure_date") && error.ends_with("[stays[1] is line 3]"),
            "{error}"
        );
        let two = tonic::Status::invalid_argument(
            "invalid request: stays[3].room: too long; stays[2].rate.currency_code: unknown; stays[3].guest_id: empty",
        );
        let error = refused(&lines, 2, &two).to_string();
        assert!(
            error.starts_with("lines 5, 9 were refused (sent 2 times): InvalidArgument")
                && error.ends_with("[stays[2] is line 5, stays[3] is line 9]"),
            "{error}"
        );
        let whole = tonic::Status::unavailable("crm is restarting");
        let error = refused(&lines, 10, &whole).to_string();
        assert_eq!(
            error,
            "the batch starting at line 2 was refused (sent 10 times): Unavailable crm is restarting"
        );
        let outside =
            tonic::Status::permission_denied("stays[7]: guest g belongs to another chain");
        assert!(refused(&lines, 1, &outside)
            .to_string()
            .starts_with("the batch starting at line 2"));
    }
}
