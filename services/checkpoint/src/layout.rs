//! Pure logic: where objects live, what a manifest looks like, which files are immutable, which
//! manifest is the newest and what retention deletes. No I/O here, so all of it is unit-tested
//! directly.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

/// One checkpoint: the files of a RocksDB checkpoint directory and where each one lives in GCS.
///
/// Written last, after every object it names, so a manifest only exists when all its files do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Monotonic within a scope: the previous newest id plus one.
    pub id: u64,
    /// Wall-clock time of the upload, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Every file of the checkpoint directory, sorted by name.
    pub files: Vec<ManifestFile>,
    /// Whatever the caller attached (for the runtime: the input offset and changelog offsets).
    pub metadata: serde_json::Value,
}

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// File name inside the checkpoint directory (no directories).
    pub name: String,
    /// Full object name in the bucket.
    pub object: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
}

/// The object-name layout of one scope: `{prefix}/{scope}/manifests/…`, `…/files/…` (shared,
/// content-addressed) and `…/checkpoints/{id}/…` (mutable files of one checkpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    base: String,
}

impl Layout {
    /// `prefix` and `scope` are joined with `/`; empty segments and stray slashes are dropped.
    pub fn new(prefix: &str, scope: &str) -> Self {
        let base = prefix
            .split('/')
            .chain(scope.split('/'))
            .filter(|segment| !segment.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        Self { base }
    }

    /// Everything of this scope starts with this (ends with `/`, or is empty for an empty scope).
    pub fn root(&self) -> String {
        if self.base.is_empty() {
            String::new()
        } else {
            format!("{}/", self.base)
        }
    }

    pub fn manifests_prefix(&self) -> String {
        format!("{}manifests/", self.root())
    }

    pub fn manifest_object(&self, id: u64) -> String {
        format!("{}{id:020}.json", self.manifests_prefix())
    }

    /// The manifest id of `object`, if it is a manifest of this scope.
    pub fn parse_manifest_object(&self, object: &str) -> Option<u64> {
        let digits = object
            .strip_prefix(&self.manifests_prefix())?
            .strip_suffix(".json")?;
        if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// Content-addressed objects shared by every checkpoint of the scope.
    pub fn shared_files_prefix(&self) -> String {
        format!("{}files/", self.root())
    }

    /// Objects of one checkpoint only (its mutable files).
    pub fn checkpoints_prefix(&self) -> String {
        format!("{}checkpoints/", self.root())
    }

    /// Where a file of checkpoint `id` is stored: shared by content if immutable, else under the
    /// checkpoint's own id.
    pub fn file_object(&self, id: u64, name: &str, sha256: &str) -> String {
        if is_immutable(name) {
            format!("{}{sha256}-{name}", self.shared_files_prefix())
        } else {
            format!("{}{id:020}/{name}", self.checkpoints_prefix())
        }
    }
}

/// RocksDB never changes an `.sst` or `.blob` file once written, so those are uploaded once per
/// content and shared. Everything else (`MANIFEST-*`, `CURRENT`, `OPTIONS-*`, `*.log`, …) is
/// stored per checkpoint.
pub fn is_immutable(name: &str) -> bool {
    name.ends_with(".sst") || name.ends_with(".blob")
}

/// Whether `name` may be used as a file name inside a checkpoint directory (a manifest from
/// the bucket must not write outside the restore directory).
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\')
        && !name.contains('\0')
}

/// Parses the manifest stored as manifest `id` of `layout` and checks what restore relies on:
/// the id matches the object name, file names are plain and unique, every object lies in the
/// scope, and every digest is 64 hex digits.
pub fn parse_manifest(layout: &Layout, id: u64, bytes: &[u8]) -> Result<Manifest, String> {
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
    if manifest.id != id {
        return Err(format!(
            "it says id {} but is stored as manifest {id}",
            manifest.id
        ));
    }
    let root = layout.root();
    let mut names = HashSet::new();
    for file in &manifest.files {
        if !is_plain_file_name(&file.name) {
            return Err(format!(
                "file name {:?} is not a plain file name",
                file.name
            ));
        }
        if !names.insert(file.name.as_str()) {
            return Err(format!("file {:?} is listed twice", file.name));
        }
        if !file.object.starts_with(&root) || file.object.len() == root.len() {
            return Err(format!(
                "file {:?} is stored as {:?}, outside {root:?}",
                file.name, file.object
            ));
        }
        if file.sha256.len() != 64 || !file.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "file {:?} has an invalid sha256 {:?}",
                file.name, file.sha256
            ));
        }
    }
    Ok(manifest)
}

/// The next manifest id after the existing ones.
pub fn next_manifest_id(existing: impl IntoIterator<Item = u64>) -> u64 {
    existing.into_iter().max().map_or(1, |max| max + 1)
}

/// Manifest ids of `objects` (those that are manifests of `layout`), newest first.
pub fn manifest_ids_newest_first<'a>(
    layout: &Layout,
    objects: impl IntoIterator<Item = &'a str>,
) -> Vec<u64> {
    let ids: BTreeSet<u64> = objects
        .into_iter()
        .filter_map(|object| layout.parse_manifest_object(object))
        .collect();
    ids.into_iter().rev().collect()
}

/// A manifest fetched for retention: `None` when its object did not parse.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub id: u64,
    pub manifest: Option<Manifest>,
}

/// What [`plan_retention`] decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionPlan {
    /// Ids of the manifests to keep, newest first.
    pub keep: Vec<u64>,
    /// Ids of the manifests to delete (before any file), newest first.
    pub delete_manifests: Vec<u64>,
    /// File objects no remaining manifest refers to, sorted.
    pub delete_files: Vec<String>,
    /// Ids of kept manifests that did not parse. While any exists, no file is deleted, because
    /// what such a manifest refers to is unknown.
    pub unreadable: Vec<u64>,
}

/// Decides what `retain(keep)` deletes.
///
/// `fetched` are the newest manifests, newest first, read until `keep` of them parsed (or the
/// manifests ran out); `older` are the ids of all manifests older than the last fetched one.
/// `file_objects` are all objects under the scope's `files/` and `checkpoints/` prefixes.
///
/// Kept: the newest `keep` manifests that parse, and every unreadable manifest newer than the
/// `keep`-th readable one (all of them when fewer than `keep` parse: one written by a newer
/// version is never deleted for being unreadable). Deleted: every other manifest, then every
/// file object that no kept manifest refers to — unless a kept manifest is unreadable, in which
/// case no file is deleted, since what it refers to is unknown.
pub fn plan_retention(
    keep: usize,
    fetched: &[Fetched],
    older: &[u64],
    file_objects: &[String],
) -> RetentionPlan {
    let mut plan = RetentionPlan::default();
    let mut valid_kept = 0;
    let mut referenced: HashSet<&str> = HashSet::new();
    for entry in fetched {
        if valid_kept >= keep {
            plan.delete_manifests.push(entry.id);
            continue;
        }
        match &entry.manifest {
            Some(manifest) => {
                valid_kept += 1;
                plan.keep.push(entry.id);
                referenced.extend(manifest.files.iter().map(|file| file.object.as_str()));
            }
            None => {
                plan.keep.push(entry.id);
                plan.unreadable.push(entry.id);
            }
        }
    }
    plan.delete_manifests.extend(older.iter().copied());
    plan.delete_manifests.sort_unstable_by(|a, b| b.cmp(a));
    plan.delete_manifests.dedup();
    if plan.unreadable.is_empty() {
        let mut files: Vec<String> = file_objects
            .iter()
            .filter(|object| !referenced.contains(object.as_str()))
            .cloned()
            .collect();
        files.sort();
        files.dedup();
        plan.delete_files = files;
    }
    plan
}

/// Lowercase hex of a digest.
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new("ckpt", "group/store/partition-7")
    }

    fn manifest(id: u64, objects: &[&str]) -> Manifest {
        Manifest {
            id,
            created_at_ms: 1_700_000_000_000 + id,
            files: objects
                .iter()
                .map(|object| ManifestFile {
                    name: object.rsplit('/').next().unwrap().to_owned(),
                    object: (*object).to_owned(),
                    size: 1,
                    sha256: "00".repeat(32),
                })
                .collect(),
            metadata: serde_json::json!({ "offset": id }),
        }
    }

    fn fetched(id: u64, objects: &[&str]) -> Fetched {
        Fetched {
            id,
            manifest: Some(manifest(id, objects)),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn prefix_and_scope_join_without_stray_slashes() {
        assert_eq!(
            Layout::new("ckpt/", "/g/s/partition-7/").root(),
            "ckpt/g/s/partition-7/"
        );
        assert_eq!(Layout::new("", "p-1").root(), "p-1/");
        assert_eq!(Layout::new("", "").root(), "");
        assert_eq!(
            Layout::new("a//b", "c").manifests_prefix(),
            "a/b/c/manifests/"
        );
    }

    #[test]
    fn manifest_names_are_zero_padded_and_parse_back() {
        let layout = layout();
        let object = layout.manifest_object(42);
        assert_eq!(
            object,
            "ckpt/group/store/partition-7/manifests/00000000000000000042.json"
        );
        assert_eq!(layout.parse_manifest_object(&object), Some(42));
        assert_eq!(
            layout.parse_manifest_object(&layout.manifest_object(u64::MAX)),
            Some(u64::MAX)
        );
    }

    #[test]
    fn foreign_objects_are_not_manifests() {
        let layout = layout();
        for object in [
            "ckpt/group/store/partition-7/manifests/42.json",
            "ckpt/group/store/partition-7/manifests/0000000000000000004x.json",
            "ckpt/group/store/partition-7/manifests/00000000000000000042.json.tmp",
            "ckpt/group/store/partition-70/manifests/00000000000000000042.json",
            "ckpt/group/store/partition-7/files/00000000000000000042.json",
            "ckpt/group/store/partition-7/manifests/sub/00000000000000000042.json",
        ] {
            assert_eq!(layout.parse_manifest_object(object), None, "{object}");
        }
    }

    #[test]
    fn only_sst_and_blob_files_are_immutable() {
        for name in ["000012.sst", "000013.blob"] {
            assert!(is_immutable(name), "{name}");
        }
        for name in [
            "MANIFEST-000005",
            "CURRENT",
            "OPTIONS-000007",
            "000004.log",
            "IDENTITY",
            "sst",
        ] {
            assert!(!is_immutable(name), "{name}");
        }
    }

    #[test]
    fn immutable_files_are_content_addressed_and_mutable_ones_per_checkpoint() {
        let layout = layout();
        assert_eq!(
            layout.file_object(3, "000012.sst", "abcd"),
            "ckpt/group/store/partition-7/files/abcd-000012.sst"
        );
        assert_eq!(
            layout.file_object(3, "MANIFEST-000005", "abcd"),
            "ckpt/group/store/partition-7/checkpoints/00000000000000000003/MANIFEST-000005"
        );
    }

    #[test]
    fn file_names_that_escape_the_directory_are_rejected() {
        assert!(is_plain_file_name("000012.sst"));
        for name in ["", ".", "..", "../x", "a/b", "a\\b", "x\0"] {
            assert!(!is_plain_file_name(name), "{name:?}");
        }
    }

    #[test]
    fn next_id_follows_the_newest() {
        assert_eq!(next_manifest_id([]), 1);
        assert_eq!(next_manifest_id([3, 9, 4]), 10);
    }

    #[test]
    fn newest_first_ignores_foreign_objects() {
        let layout = layout();
        let objects = [
            layout.manifest_object(2),
            layout.manifest_object(10),
            "ckpt/group/store/partition-7/files/x-000001.sst".to_owned(),
            layout.manifest_object(7),
        ];
        assert_eq!(
            manifest_ids_newest_first(&layout, objects.iter().map(String::as_str)),
            vec![10, 7, 2]
        );
    }

    #[test]
    fn manifest_json_round_trips() {
        let original = manifest(5, &["ckpt/files/aa-000001.sst"]);
        let text = serde_json::to_string(&original).unwrap();
        let parsed: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, original);
    }

    #[test]
    fn retention_keeps_shared_files_and_deletes_what_only_old_manifests_used() {
        let plan = plan_retention(
            1,
            &[
                fetched(3, &["f/a.sst", "f/b.sst", "c/3/MANIFEST"]),
                fetched(2, &["f/a.sst", "f/old.sst", "c/2/MANIFEST"]),
            ],
            &[1],
            &strings(&[
                "f/a.sst",
                "f/b.sst",
                "f/old.sst",
                "c/3/MANIFEST",
                "c/2/MANIFEST",
                "c/1/MANIFEST",
                "f/orphan.sst",
            ]),
        );
        assert_eq!(plan.keep, vec![3]);
        assert_eq!(plan.delete_manifests, vec![2, 1]);
        assert_eq!(
            plan.delete_files,
            strings(&["c/1/MANIFEST", "c/2/MANIFEST", "f/old.sst", "f/orphan.sst"])
        );
        assert!(plan.unreadable.is_empty());
    }

    #[test]
    fn retention_with_fewer_manifests_than_keep_deletes_only_orphans() {
        let plan = plan_retention(
            5,
            &[fetched(2, &["f/a.sst"]), fetched(1, &["f/b.sst"])],
            &[],
            &strings(&["f/a.sst", "f/b.sst", "f/orphan.sst"]),
        );
        assert_eq!(plan.keep, vec![2, 1]);
        assert!(plan.delete_manifests.is_empty());
        assert_eq!(plan.delete_files, strings(&["f/orphan.sst"]));
    }

    #[test]
    fn retention_of_zero_deletes_everything() {
        let plan = plan_retention(0, &[], &[4, 3], &strings(&["f/a.sst", "c/4/CURRENT"]));
        assert!(plan.keep.is_empty());
        assert_eq!(plan.delete_manifests, vec![4, 3]);
        assert_eq!(plan.delete_files, strings(&["c/4/CURRENT", "f/a.sst"]));
    }

    #[test]
    fn an_unreadable_newer_manifest_is_kept_and_blocks_file_deletion() {
        let plan = plan_retention(
            1,
            &[
                Fetched {
                    id: 5,
                    manifest: None,
                },
                fetched(4, &["f/a.sst"]),
                fetched(3, &["f/b.sst"]),
            ],
            &[2],
            &strings(&["f/a.sst", "f/b.sst"]),
        );
        assert_eq!(plan.keep, vec![5, 4]);
        assert_eq!(plan.unreadable, vec![5]);
        assert_eq!(plan.delete_manifests, vec![3, 2]);
        assert!(plan.delete_files.is_empty());
    }

    #[test]
    fn unreadable_manifests_are_kept_until_enough_readable_ones_are() {
        let plan = plan_retention(
            2,
            &[
                fetched(4, &["f/a.sst"]),
                Fetched {
                    id: 3,
                    manifest: None,
                },
            ],
            &[],
            &strings(&["f/a.sst", "f/b.sst"]),
        );
        assert_eq!(plan.keep, vec![4, 3]);
        assert_eq!(plan.unreadable, vec![3]);
        assert!(plan.delete_manifests.is_empty());
        assert!(plan.delete_files.is_empty());
    }

    #[test]
    fn a_stored_manifest_parses_when_consistent() {
        let layout = layout();
        let good = manifest(7, &["ckpt/group/store/partition-7/files/00-000001.sst"]);
        let bytes = serde_json::to_vec(&good).unwrap();
        assert_eq!(parse_manifest(&layout, 7, &bytes), Ok(good));
        let message = parse_manifest(&layout, 8, &bytes).unwrap_err();
        assert!(message.contains("id 7"), "{message}");
        assert!(parse_manifest(&layout, 7, b"{not json").is_err());
    }

    #[test]
    fn a_stored_manifest_that_would_escape_is_rejected() {
        let layout = layout();
        let inside = "ckpt/group/store/partition-7/files/00-000001.sst";
        type Change = fn(&mut ManifestFile);
        let cases: [(&str, Change); 4] = [
            ("plain", |f| f.name = "../000001.sst".into()),
            ("outside", |f| f.object = "other/000001.sst".into()),
            ("sha256", |f| f.sha256 = "xyz".into()),
            ("twice", |_| {}),
        ];
        for (expected, change) in cases {
            let mut bad = manifest(1, &[inside]);
            change(&mut bad.files[0]);
            if expected == "twice" {
                bad.files.push(bad.files[0].clone());
            }
            let message =
                parse_manifest(&layout, 1, &serde_json::to_vec(&bad).unwrap()).unwrap_err();
            assert!(message.contains(expected), "{expected}: {message}");
        }
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(to_hex(&[0x00, 0x0f, 0xab]), "000fab");
    }
}
