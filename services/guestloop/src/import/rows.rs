//! The stays of a PMS export (CSV), each with the line of the file it starts on, so that every
//! error names the line an integrator opens the file at.
//!
//! The CSV reader's own record position is where it began to look for the record: before the
//! blank lines it skips and, in a file with CRLF line ends, before the `\n` ending the line
//! above. So a record's line is counted back from its end instead: the line holding its last
//! byte, less the line breaks inside its quoted fields.

use std::collections::VecDeque;
use std::io::{self, Read};

use guestloop_proto::common::v1::Money;
use guestloop_proto::crm::v1 as pb;
use serde::Deserialize;

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
    /// Read by `minor_units`: a blank cell is no amount, as a missing column.
    #[serde(default)]
    rate_minor: String,
    #[serde(default)]
    spend_currency: String,
    #[serde(default)]
    spend_minor: String,
    status: String,
    /// When the PMS last changed the reservation (RFC 3339); optional column, blank for none.
    #[serde(default)]
    pms_modified_time: String,
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

/// An amount cell in minor units: blank (a booking with no rate yet, say) reads as 0.
fn minor_units(cell: &str, column: &str, line: u64) -> anyhow::Result<i64> {
    if cell.is_empty() {
        return Ok(0);
    }
    cell.parse().map_err(|_| {
        anyhow::anyhow!(
            "line {line}, column {column}: `{cell}` is not a whole number of minor units"
        )
    })
}

/// A modification-time cell: blank is none; else RFC 3339 with an offset.
fn modified_time(cell: &str, line: u64) -> anyhow::Result<Option<prost_types::Timestamp>> {
    if cell.is_empty() {
        return Ok(None);
    }
    let at = chrono::DateTime::parse_from_rfc3339(cell).map_err(|_| {
        anyhow::anyhow!(
            "line {line}, column pms_modified_time: `{cell}` is not an RFC 3339 time such as \
             2026-12-07T09:30:00Z"
        )
    })?;
    Ok(Some(guestloop_kit::time::to_timestamp(at.to_utc())))
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
        let rate = minor_units(&self.rate_minor, "rate_minor", line)?;
        let spend = minor_units(&self.spend_minor, "spend_minor", line)?;
        let modified = modified_time(&self.pms_modified_time, line)?;
        Ok(pb::Stay {
            property_id: self.property_id,
            pms_reservation_id: self.pms_reservation_id,
            guest_id: self.guest_id,
            arrival_date: self.arrival_date,
            departure_date: self.departure_date,
            room: self.room,
            rate: money(self.rate_currency, rate),
            spend: money(self.spend_currency, spend),
            status: status as i32,
            pms_modified_time: modified,
        })
    }
}

/// The input, noting where its line breaks are until the CSV reader has passed them. A line
/// break is `\n`, `\r\n` or a `\r` alone (as spreadsheets on old Macs export): each is noted at
/// its last byte.
struct LineBreaks<R> {
    /// The input after its byte-order mark, if it has one.
    inner: io::Chain<io::Cursor<Vec<u8>>, R>,
    /// Bytes read so far.
    read: u64,
    /// Offsets of the line breaks read but not yet passed.
    ahead: VecDeque<u64>,
    /// How many line breaks were passed.
    passed: u64,
    /// The offset of a `\r` that ended the bytes read so far: a line break of its own unless a
    /// `\n` comes next.
    carriage_return: Option<u64>,
}

/// The UTF-8 byte-order mark spreadsheets write at the start of a CSV export.
const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

impl<R: Read> LineBreaks<R> {
    /// Reads past a byte-order mark here, whatever the reads deliver at a time (the CSV reader
    /// skips one only when its first read holds all of it).
    fn new(mut input: R) -> io::Result<Self> {
        let mut start = Vec::with_capacity(BYTE_ORDER_MARK.len());
        while start.len() < BYTE_ORDER_MARK.len() && BYTE_ORDER_MARK.starts_with(&start) {
            let mut byte = [0u8; 1];
            match input.read(&mut byte) {
                Ok(0) => break,
                Ok(_) => start.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if start == BYTE_ORDER_MARK {
            start.clear();
        }
        Ok(Self {
            inner: io::Cursor::new(start).chain(input),
            read: 0,
            ahead: VecDeque::new(),
            passed: 0,
            carriage_return: None,
        })
    }
}

impl<R> LineBreaks<R> {
    /// The line (from 1) of the byte at `offset`; offsets asked for never decrease.
    fn line_of(&mut self, offset: u64) -> u64 {
        while self.ahead.front().is_some_and(|&at| at < offset) {
            self.ahead.pop_front();
            self.passed += 1;
        }
        self.passed + 1
    }
}

/// How many line breaks `bytes` holds: each `\n`, and each `\r` no `\n` follows.
fn line_breaks(bytes: &[u8]) -> u64 {
    let breaks = bytes.iter().enumerate().filter(|(i, b)| match b {
        b'\n' => true,
        b'\r' => bytes.get(i + 1) != Some(&b'\n'),
        _ => false,
    });
    breaks.count() as u64
}

impl<R: Read> Read for LineBreaks<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let start = self.read;
        let bytes = &buf[..n];
        if let Some(at) = self.carriage_return.take() {
            if bytes.first() != Some(&b'\n') {
                self.ahead.push_back(at);
            }
        }
        for (i, byte) in bytes.iter().enumerate() {
            let at = start + i as u64;
            match (byte, bytes.get(i + 1)) {
                (b'\n', _) => self.ahead.push_back(at),
                (b'\r', Some(b'\n')) => {}
                (b'\r', Some(_)) => self.ahead.push_back(at),
                (b'\r', None) => self.carriage_return = Some(at),
                _ => {}
            }
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// Reads stays from a CSV export with a header row.
pub struct StayRows<R> {
    csv: csv::Reader<LineBreaks<R>>,
    headers: csv::StringRecord,
    bytes: csv::ByteRecord,
}

impl<R: Read> StayRows<R> {
    pub fn new(input: R) -> anyhow::Result<Self> {
        // Fields are trimmed here, after the line breaks of quoted fields are counted.
        let input = LineBreaks::new(input).map_err(|e| anyhow::anyhow!("reading the file: {e}"))?;
        let mut csv = csv::ReaderBuilder::new().from_reader(input);
        let mut headers = csv
            .headers()
            .map_err(|e| anyhow::anyhow!("line 1 (header): {e}"))?
            .clone();
        headers.trim();
        Ok(Self {
            csv,
            headers,
            bytes: csv::ByteRecord::new(),
        })
    }

    /// How much of the input was read, in bytes.
    pub fn bytes_read(&self) -> u64 {
        self.csv.position().byte()
    }

    /// The next stay and the line of the file it starts on; `None` at the end of the file.
    pub fn next_stay(&mut self) -> anyhow::Result<Option<(u64, pb::Stay)>> {
        let read = self.csv.read_byte_record(&mut self.bytes);
        let line = self.record_line();
        match read {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => return Err(self.describe(&e, line)),
        }
        let mut text = csv::StringRecord::from_byte_record(std::mem::take(&mut self.bytes))
            .map_err(|e| {
                let column = self.column(e.utf8_error().field() as u64);
                anyhow::anyhow!("line {line}{column}: not UTF-8 text")
            })?;
        text.trim();
        let record: Record = text
            .deserialize(Some(&self.headers))
            .map_err(|e| self.describe(&e, line))?;
        self.bytes = text.into_byte_record();
        Ok(Some((line, record.into_stay(line)?)))
    }

    /// The line the record just read starts on: the line of its last byte (its line break, if
    /// any, belongs to that line), less the line breaks within its fields.
    fn record_line(&mut self) -> u64 {
        let end = self.csv.position().byte();
        let within = line_breaks(self.bytes.as_slice());
        let last = self.csv.get_mut().line_of(end.saturating_sub(1));
        last.saturating_sub(within)
    }

    /// `, column <name>` for field `index`, when the header names it.
    fn column(&self, index: u64) -> String {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.headers.get(i))
            .map(|name| format!(", column {name}"))
            .unwrap_or_default()
    }

    /// A CSV error at `line`, in the file's terms (its own position text can be a line early).
    fn describe(&self, error: &csv::Error, line: u64) -> anyhow::Error {
        match error.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => anyhow::anyhow!("line {line}: {len} fields, but the header has {expected_len}"),
            csv::ErrorKind::Deserialize { err, .. } => {
                let column = err.field().map(|f| self.column(f)).unwrap_or_default();
                anyhow::anyhow!("line {line}{column}: {}", err.kind())
            }
            csv::ErrorKind::Io(e) => anyhow::anyhow!("reading the file (near line {line}): {e}"),
            _ => anyhow::anyhow!("line {line}: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "property_id,pms_reservation_id,guest_id,arrival_date,departure_date,room,rate_currency,rate_minor,spend_currency,spend_minor,status";

    fn row(reservation: &str, room: &str, status: &str) -> String {
        format!("lisbon,{reservation},g1,2026-01-01,2026-01-03,{room},EUR,100,EUR,0,{status}")
    }

    /// Each stay's reservation and line, until the first error (its message); the same read a
    /// byte at a time, so that line breaks fall across reads.
    fn read(file: &str) -> (Vec<(String, u64)>, Option<String>) {
        let whole = read_from(file.as_bytes());
        assert_eq!(read_from(ByteByByte(file.as_bytes())), whole, "{file:?}");
        whole
    }

    /// A reader that gives one byte per read.
    struct ByteByByte<'a>(&'a [u8]);

    impl Read for ByteByByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((byte, rest)), Some(slot)) => {
                    *slot = *byte;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn read_from(input: impl Read) -> (Vec<(String, u64)>, Option<String>) {
        let mut rows = match StayRows::new(input) {
            Ok(rows) => rows,
            Err(e) => return (Vec::new(), Some(e.to_string())),
        };
        let mut read = Vec::new();
        loop {
            match rows.next_stay() {
                Ok(Some((line, stay))) => read.push((stay.pms_reservation_id, line)),
                Ok(None) => return (read, None),
                Err(e) => return (read, Some(e.to_string())),
            }
        }
    }

    fn lines(read: &[(String, u64)]) -> Vec<(&str, u64)> {
        read.iter().map(|(r, l)| (r.as_str(), *l)).collect()
    }

    #[test]
    fn each_stay_names_the_line_it_starts_on() {
        let (a, b, c) = (
            row("A", "101", "checked_out"),
            row("B", "102", "booked"),
            row("C", "103", "cancelled"),
        );
        let multi = row("M", "\"101\nannex\"", "checked_out");
        for (file, expected) in [
            (format!("{HEADER}\n{a}\n{b}\n"), vec![("A", 2), ("B", 3)]),
            (
                format!("{HEADER}\n{a}\n\n\n{b}\n{c}"),
                vec![("A", 2), ("B", 5), ("C", 6)],
            ),
            (format!("{HEADER}\n\n{a}\n"), vec![("A", 3)]),
            (
                format!("{HEADER}\r\n{a}\r\n{b}\r\n"),
                vec![("A", 2), ("B", 3)],
            ),
            (
                format!("{HEADER}\r\n{a}\r\n\r\n{b}\r\n{c}"),
                vec![("A", 2), ("B", 4), ("C", 5)],
            ),
            (
                format!("{HEADER}\n{multi}\n{b}\n"),
                vec![("M", 2), ("B", 4)],
            ),
            (
                format!("{HEADER}\r\n{}\r\n\r\n{b}\r\n", multi.replace('\n', "\r\n")),
                vec![("M", 2), ("B", 5)],
            ),
            (
                format!("\u{feff}{HEADER}\n{a}\n\n{b}\n"),
                vec![("A", 2), ("B", 4)],
            ),
            (
                format!("{HEADER}\r{a}\r\r{b}\r{c}"),
                vec![("A", 2), ("B", 4), ("C", 5)],
            ),
            (
                format!("{HEADER}\r{}\r{b}\r", multi.replace('\n', "\r")),
                vec![("M", 2), ("B", 4)],
            ),
            (
                format!("{HEADER}\n{a}\r\n\r{b}\r{c}\n"),
                vec![("A", 2), ("B", 4), ("C", 5)],
            ),
        ] {
            let (read, error) = read(&file);
            assert_eq!(error, None, "{file:?}");
            assert_eq!(lines(&read), expected, "{file:?}");
        }
    }

    #[test]
    fn blank_amount_cells_are_no_amount() -> anyhow::Result<()> {
        let file = format!(
            "{HEADER}\nlisbon,B1,g1,2026-01-01,2026-01-03,101,,,,,booked\n\
             lisbon,B2,g1,2026-01-01,2026-01-03,101,EUR,,EUR, ,booked\n"
        );
        let mut rows = StayRows::new(file.as_bytes())?;
        let mut amounts = Vec::new();
        while let Some((_, stay)) = rows.next_stay()? {
            amounts.push((stay.rate, stay.spend));
        }
        let euros = Some(Money {
            currency_code: "EUR".into(),
            minor_units: 0,
        });
        assert_eq!(
            amounts,
            vec![(None, None), (euros.clone(), euros)],
            "as if the columns were missing"
        );
        Ok(())
    }

    #[test]
    fn a_modification_time_column_is_read_when_present() -> anyhow::Result<()> {
        let file = format!(
            "{HEADER},pms_modified_time\n{},2026-01-03T10:15:00+01:00\n{},\n",
            row("A", "101", "checked_out"),
            row("B", "102", "booked")
        );
        let mut rows = StayRows::new(file.as_bytes())?;
        let mut times = Vec::new();
        while let Some((_, stay)) = rows.next_stay()? {
            times.push(stay.pms_modified_time.map(|t| (t.seconds, t.nanos)));
        }
        // 09:15 UTC; a blank cell is no time.
        assert_eq!(times, vec![Some((1_767_431_700, 0)), None]);
        let bad = format!(
            "{HEADER},pms_modified_time\n{},yesterday\n",
            row("A", "101", "checked_out")
        );
        let (_, error) = read(&bad);
        assert_eq!(
            error.as_deref(),
            Some(
                "line 2, column pms_modified_time: `yesterday` is not an RFC 3339 time such as \
                 2026-12-07T09:30:00Z"
            )
        );
        Ok(())
    }

    #[test]
    fn errors_name_the_line_of_the_file() {
        let a = row("A", "101", "checked_out");
        let multi = row("M", "\"101\nannex\"", "checked_out");
        for (file, expected) in [
            (
                format!(
                    "{HEADER}\r\n{a}\r\n\r\n{}\r\n",
                    row("B", "102", "checkedout")
                ),
                "line 4: status `checkedout`",
            ),
            (
                format!("{HEADER}\n{multi}\n{}\n", row("B", "102", "checkedout")),
                "line 4: status `checkedout`",
            ),
            (
                format!("{HEADER}\n{a}\n\n{a},extra\n"),
                "line 4: 12 fields, but the header has 11",
            ),
            (
                format!("{HEADER}\n\n{}\n", a.replace(",100,", ",abc,")),
                "line 3, column rate_minor: `abc` is not a whole number",
            ),
        ] {
            let (_, error) = read(&file);
            assert!(
                error.as_deref().is_some_and(|e| e.starts_with(expected)),
                "{file:?}: {error:?}"
            );
        }
    }
}
