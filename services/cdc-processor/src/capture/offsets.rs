//! The capture's position, stored in Kafka in the same transaction as the change records it
//! covers, so that "written to Kafka" and "position recorded" are one atomic step.
//!
//! Topic: a compacted, one-partition topic (default `<prefix>.pg-capture-offsets`), key = the
//! slot name, value = [`CaptureOffset`] JSON. On start the capture reads the last committed
//! value back (read_committed) and skips every transaction whose commit ends at or before
//! `lsn`: those were committed to Kafka but perhaps not yet acknowledged to PostgreSQL, and the
//! slot sends them again from its `confirmed_flush_lsn`.

use serde::{Deserialize, Serialize};

use super::lsn::Lsn;

/// What the capture has committed to Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureOffset {
    pub slot: String,
    /// End LSN of the last transaction written (or the slot's consistent point after the
    /// snapshot), `X/Y` text.
    pub lsn: String,
    /// The snapshot the initial read was taken in: streamed transactions visible in it were
    /// in the snapshot already and are skipped.
    pub snapshot: SnapshotBounds,
}

impl CaptureOffset {
    pub fn lsn(&self) -> Result<Lsn, super::lsn::LsnError> {
        self.lsn.parse()
    }
}

/// A PostgreSQL snapshot as `pg_current_snapshot()` prints it: `xmin:xmax:xip,...` (64-bit
/// transaction ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBounds {
    pub xmin: u64,
    pub xmax: u64,
    pub xip: Vec<u64>,
}

/// Text that is not a `pg_snapshot`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pg_snapshot {0:?} (expected xmin:xmax:xip,...)")]
pub struct SnapshotParseError(String);

impl std::str::FromStr for SnapshotBounds {
    type Err = SnapshotParseError;

    fn from_str(s: &str) -> Result<Self, SnapshotParseError> {
        let err = || SnapshotParseError(s.chars().take(80).collect());
        let mut parts = s.split(':');
        let xmin = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let xmax = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let xip = match parts.next() {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|x| x.parse().map_err(|_| err()))
                .collect::<Result<_, _>>()?,
        };
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Self { xmin, xmax, xip })
    }
}

impl SnapshotBounds {
    /// True when transaction `xid` (pgoutput's 32-bit id) had committed when the snapshot was
    /// taken. The 32-bit id is widened relative to `xmax`: ids within 2^31 of it are the only
    /// ones a live system can be decoding.
    pub fn saw(&self, xid: u32) -> bool {
        let offset = i64::from(xid.wrapping_sub(self.xmax as u32) as i32);
        let full = self.xmax as i64 + offset;
        if full < 0 {
            return true;
        }
        let full = full as u64;
        full < self.xmin || (full < self.xmax && !self.xip.contains(&full))
    }
}

/// True when a streamed transaction must not be written again: its commit ends at or before
/// the position committed to Kafka (it was written, and the capture stopped before the slot was
/// acknowledged, so PostgreSQL sends it again), or the snapshot already saw it.
pub fn already_captured(end_lsn: Lsn, xid: u32, committed: Lsn, snapshot: &SnapshotBounds) -> bool {
    end_lsn <= committed || snapshot.saw(xid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_at_or_below_the_committed_position_or_in_the_snapshot_are_skipped() {
        let snapshot: SnapshotBounds = "100:105:103".parse().expect("snapshot");
        let committed = Lsn(0x500);
        assert!(
            already_captured(Lsn(0x500), 200, committed, &snapshot),
            "exactly the committed end"
        );
        assert!(already_captured(Lsn(0x400), 200, committed, &snapshot));
        assert!(
            already_captured(Lsn(0x600), 101, committed, &snapshot),
            "seen by the snapshot"
        );
        assert!(
            !already_captured(Lsn(0x600), 103, committed, &snapshot),
            "in progress at the snapshot"
        );
        assert!(!already_captured(Lsn(0x501), 200, committed, &snapshot));
    }

    #[test]
    fn snapshot_visibility() {
        let s: SnapshotBounds = "100:105:100,103".parse().expect("snapshot");
        assert_eq!(s.xip, vec![100, 103]);
        assert!(s.saw(99));
        assert!(!s.saw(100), "in progress at the snapshot");
        assert!(s.saw(101));
        assert!(!s.saw(103));
        assert!(!s.saw(105), "started after the snapshot");
        assert!(!s.saw(4000));
        let empty: SnapshotBounds = "7:7:".parse().expect("no xip");
        assert!(empty.xip.is_empty() && empty.saw(6) && !empty.saw(7));
        assert!("x:1:".parse::<SnapshotBounds>().is_err());
    }

    #[test]
    fn widening_across_the_32_bit_wrap() {
        let xmax = (1u64 << 32) + 10;
        let s = SnapshotBounds {
            xmin: xmax,
            xmax,
            xip: vec![],
        };
        assert!(s.saw(u32::MAX), "just before the wrap: older, visible");
        assert!(!s.saw(11));
    }
}
