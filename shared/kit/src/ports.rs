//! Free TCP ports on 127.0.0.1 for servers started by this process (the private PostgreSQL,
//! services in tests and benchmarks, `guestloop up` in its own tests).
//!
//! A port found by binding port 0 comes from the kernel's ephemeral range, the same range
//! outgoing connections take their local ports from: between finding such a port and binding
//! it, a new database connection may take it, and the kernel may hand it out again to the next
//! caller. Ports are therefore chosen below (or above) the ephemeral range, where the kernel
//! never assigns ports by itself, and in sequence from a random start, so that one process never
//! gets the same port twice and parallel test processes rarely meet.

use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The lowest port handed out: clear of the registered ports most often in use on a
/// development machine (PostgreSQL 5432, web servers 8000–8999, …).
const LOWEST: u16 = 20_000;

/// Where Linux takes ephemeral ports from when its setting cannot be read.
const DEFAULT_EPHEMERAL: RangeInclusive<u16> = 32_768..=60_999;

/// A free TCP port on 127.0.0.1, outside the kernel's ephemeral range. Best effort against
/// other processes, which may bind the port before the caller does; within this process the
/// same port is not returned twice until the whole range has been used.
pub fn free_port() -> anyhow::Result<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static START: OnceLock<u32> = OnceLock::new();
    let range = candidate_range(&ephemeral_range());
    let Some(range) = range else {
        return kernel_port();
    };
    let len = u32::from(*range.end() - *range.start()) + 1;
    let start = *START.get_or_init(|| rand::random::<u32>() % len);
    for _ in 0..len.min(4_096) {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % len;
        let port = *range.start() + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    kernel_port()
}

/// The port the kernel picks for a bind to port 0 (the fallback when no range is left).
fn kernel_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The kernel's ephemeral port range (Linux), or the Linux default elsewhere.
fn ephemeral_range() -> RangeInclusive<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| parse_range(&text))
        .unwrap_or(DEFAULT_EPHEMERAL)
}

fn parse_range(text: &str) -> Option<RangeInclusive<u16>> {
    let mut bounds = text.split_whitespace().map(str::parse::<u16>);
    let low = bounds.next()?.ok()?;
    let high = bounds.next()?.ok()?;
    (low <= high).then_some(low..=high)
}

/// The larger stretch of ports from [`LOWEST`] up that lies outside `ephemeral`, if any
/// stretch of at least 1,000 ports does.
fn candidate_range(ephemeral: &RangeInclusive<u16>) -> Option<RangeInclusive<u16>> {
    let below = (*ephemeral.start() > LOWEST).then(|| LOWEST..=*ephemeral.start() - 1);
    let above =
        (*ephemeral.end() < u16::MAX).then(|| (*ephemeral.end()).max(LOWEST - 1) + 1..=u16::MAX);
    let size = |r: &RangeInclusive<u16>| u32::from(*r.end()) + 1 - u32::from(*r.start());
    [below, above]
        .into_iter()
        .flatten()
        .filter(|r| size(r) >= 1_000)
        .max_by_key(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_linux_default_leaves_the_ports_below_it() {
        assert_eq!(candidate_range(&(32_768..=60_999)), Some(20_000..=32_767));
    }

    #[test]
    fn a_low_ephemeral_range_leaves_the_ports_above_it() {
        assert_eq!(candidate_range(&(1_024..=40_000)), Some(40_001..=65_535));
        assert_eq!(candidate_range(&(10_000..=19_000)), Some(20_000..=65_535));
    }

    #[test]
    fn a_range_covering_everything_leaves_nothing() {
        assert_eq!(candidate_range(&(1_024..=65_535)), None);
        assert_eq!(candidate_range(&(20_500..=65_000)), None);
    }

    #[test]
    fn the_kernel_setting_is_read_as_two_numbers() {
        assert_eq!(parse_range("32768\t60999\n"), Some(32_768..=60_999));
        assert_eq!(parse_range("60999 32768"), None);
        assert_eq!(parse_range("garbage"), None);
        assert_eq!(parse_range("1024"), None);
    }

    #[test]
    fn ports_are_outside_the_ephemeral_range_and_never_repeat() -> anyhow::Result<()> {
        let ephemeral = ephemeral_range();
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect::<Result<_, _>>()?;
        let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        if candidate_range(&ephemeral).is_some() {
            assert!(ports.iter().all(|p| !ephemeral.contains(p)), "{ports:?}");
        }
        Ok(())
    }
}
