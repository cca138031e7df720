//! `UPGRADE_MODE`: what a replica does with the state of a partition it is assigned
//! (docs/upgrades.md has the exact semantics).
//!
//! `last-state` always resumes: state from the volume, else from GCS, then the changelog; input
//! from the committed offsets. `stateless` (Flink's upgrade mode of that name: no state carried
//! over) must tell a restart of the same pod template (a crash, a rebalance, scaling: resume,
//! exactly once) from a new pod template (start over: empty state, input from its current end).
//! The pod template's identity, `UPGRADE_EPOCH`, is committed as the metadata of every input
//! offset ([`EpochMark`]), in the same transaction as the offsets, so the mark and the offsets
//! can never disagree.

/// `UPGRADE_MODE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UpgradeMode {
    #[default]
    LastState,
    Stateless,
}

/// `UPGRADE_EPOCH`: a StatefulSet revision name (`<name>-<hash>`), or any such label value.
pub fn parse_epoch(value: &str) -> Result<String, String> {
    let valid = (4..=63).contains(&value.len())
        && value
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?}: 4 to 63 characters of A-Z a-z 0-9 - _ ., the first a letter or digit"
        ))
    }
}

/// What a stateless job commits with each input offset: the epoch that committed it and where
/// that epoch's changelog begins (the state was empty there), per store index, so a replica
/// without state of this epoch rebuilds it from the changelog alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochMark {
    pub epoch: String,
    pub changelog_start: Vec<i64>,
}

const MARK_PREFIX: &str = "trendstream-epoch/1;";

impl EpochMark {
    /// `trendstream-epoch/1;<epoch>;<offset>,<offset>…`, well below the broker's 4096-byte
    /// limit of offset metadata (`offset.metadata.max.bytes`).
    pub fn encode(&self) -> String {
        let offsets: Vec<String> = self.changelog_start.iter().map(i64::to_string).collect();
        format!("{MARK_PREFIX}{};{}", self.epoch, offsets.join(","))
    }

    /// `None` for metadata that is not a mark (empty, or a last-state commit).
    pub fn decode(metadata: &str) -> Option<Self> {
        let (epoch, offsets) = metadata.strip_prefix(MARK_PREFIX)?.split_once(';')?;
        let changelog_start = if offsets.is_empty() {
            Vec::new()
        } else {
            offsets
                .split(',')
                .map(|o| o.parse().ok())
                .collect::<Option<Vec<i64>>>()?
        };
        Some(Self {
            epoch: parse_epoch(epoch).ok()?,
            changelog_start,
        })
    }
}

/// How a newly assigned partition starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionStart {
    /// State from the volume, else GCS, then the changelog; input from the committed offsets.
    Resume,
    /// Stateless, and this epoch committed the partition before (a restart, a rebalance): as
    /// [`Self::Resume`], but state of an older epoch (a volume or a GCS checkpoint from before
    /// the upgrade) is dropped and the state rebuilt from the mark's changelog offsets.
    ResumeEpoch(EpochMark),
    /// Stateless, and this epoch (the value) never committed the partition: empty state whose
    /// changelogs start at their current end, input from its current end (the last stable
    /// offset).
    Fresh(String),
}

/// Decides how a partition starts from the metadata committed with the offsets of its input
/// topics (`None`: nothing committed). One mark of this epoch is enough: an epoch's first
/// commit of a partition carries the offsets of all its input topics.
pub fn partition_start(
    mode: UpgradeMode,
    epoch: Option<&str>,
    committed: &[Option<&str>],
) -> PartitionStart {
    let (UpgradeMode::Stateless, Some(epoch)) = (mode, epoch) else {
        return PartitionStart::Resume;
    };
    committed
        .iter()
        .flatten()
        .filter_map(|metadata| EpochMark::decode(metadata))
        .find(|mark| mark.epoch == epoch)
        .map_or_else(
            || PartitionStart::Fresh(epoch.to_owned()),
            PartitionStart::ResumeEpoch,
        )
}

/// Whether opened state (from the volume or GCS) may be resumed: under `last-state` always,
/// under `stateless` only state this epoch started (its epoch recorded in the state).
pub fn keeps_state(start: &PartitionStart, state_epoch: Option<&str>) -> bool {
    match start {
        PartitionStart::Resume => true,
        PartitionStart::ResumeEpoch(mark) => state_epoch == Some(mark.epoch.as_str()),
        PartitionStart::Fresh(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "fraud-7c9d5b6f4";
    const BEFORE: &str = "fraud-5f6d8c7b9";

    fn mark(epoch: &str) -> String {
        EpochMark {
            epoch: epoch.into(),
            changelog_start: vec![120, 0],
        }
        .encode()
    }

    #[test]
    fn marks_round_trip_and_anything_else_is_no_mark() {
        let encoded = mark(NOW);
        assert_eq!(encoded, "trendstream-epoch/1;fraud-7c9d5b6f4;120,0");
        assert_eq!(
            EpochMark::decode(&encoded),
            Some(EpochMark {
                epoch: NOW.into(),
                changelog_start: vec![120, 0]
            })
        );
        for other in [
            "",
            "trendstream-epoch/1;",
            "trendstream-epoch/1;x;1",
            "trendstream-epoch/1;fraud-7c9d5b6f4;1,x",
            "trendstream-epoch/2;fraud-7c9d5b6f4;1",
        ] {
            assert_eq!(EpochMark::decode(other), None, "{other:?}");
        }
    }

    #[test]
    fn last_state_always_resumes() {
        for committed in [vec![], vec![None], vec![Some(mark(BEFORE))]] {
            let committed: Vec<Option<&str>> = committed.iter().map(Option::as_deref).collect();
            assert_eq!(
                partition_start(UpgradeMode::LastState, None, &committed),
                PartitionStart::Resume
            );
        }
    }

    #[test]
    fn stateless_starts_fresh_unless_this_epoch_committed_the_partition() {
        let start = |committed: &[Option<&str>]| {
            partition_start(UpgradeMode::Stateless, Some(NOW), committed)
        };
        // A new job, a job that ran as last-state, one from the previous pod template.
        let fresh = PartitionStart::Fresh(NOW.into());
        assert_eq!(start(&[None]), fresh);
        assert_eq!(start(&[Some("")]), fresh);
        assert_eq!(start(&[Some(&mark(BEFORE))]), fresh);
        // A restart of this pod template: resume; one marked input topic is enough.
        let expected = PartitionStart::ResumeEpoch(EpochMark::decode(&mark(NOW)).unwrap());
        assert_eq!(start(&[Some(&mark(NOW))]), expected);
        assert_eq!(start(&[Some(&mark(BEFORE)), Some(&mark(NOW))]), expected);
        assert_eq!(start(&[None, Some(&mark(NOW))]), expected);
    }

    #[test]
    fn only_state_of_this_epoch_is_kept() {
        let resume = PartitionStart::ResumeEpoch(EpochMark::decode(&mark(NOW)).unwrap());
        assert!(keeps_state(&resume, Some(NOW)));
        assert!(
            !keeps_state(&resume, Some(BEFORE)),
            "a volume from before the upgrade"
        );
        assert!(!keeps_state(&resume, None), "state a last-state run left");
        assert!(!keeps_state(&PartitionStart::Fresh(NOW.into()), Some(NOW)));
        assert!(keeps_state(&PartitionStart::Resume, None));
    }

    #[test]
    fn epochs_are_label_values() {
        assert!(parse_epoch("fraud-7c9d5b6f4").is_ok());
        for bad in ["", "abc", "-fraud", "fraud 1", &"x".repeat(64)] {
            assert!(parse_epoch(bad).is_err(), "{bad:?}");
        }
    }
}
