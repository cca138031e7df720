//! Incremental RocksDB checkpoints against the GCS emulator: real RocksDB checkpoints are
//! uploaded, reused, restored byte for byte, caught when corrupted, and pruned by retention.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{DB, Options};
use trendstream_checkpoint::{CheckpointStore, Error, GcsClient, GcsConfig, Manifest};
use trendstream_e2e::{TestEnv, unique_name};

const OTHER: &str = "other";

/// A client for a new bucket in the emulator.
async fn new_bucket() -> anyhow::Result<GcsClient> {
    let env = TestEnv::load()?;
    let endpoint = env.get("GCS_ENDPOINT")?.to_owned();
    let bucket = unique_name("checkpoints");
    trendstream_e2e::gcs::create_bucket(&endpoint, &bucket).await?;
    Ok(GcsClient::new(GcsConfig {
        bucket,
        prefix: "ckpt".into(),
        endpoint: Some(endpoint),
    })?)
}

fn open_db(path: &Path) -> anyhow::Result<DB> {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    // Files change only when the test says so.
    options.set_disable_auto_compactions(true);
    Ok(DB::open_cf(&options, path, ["default", OTHER])?)
}

/// Writes `count` keys `{prefix}-{i}` into column family `cf` and flushes them into a new SST.
fn write_sst(db: &DB, cf: &str, prefix: &str, count: usize) -> anyhow::Result<()> {
    let handle = db.cf_handle(cf).context("column family")?;
    for i in 0..count {
        let value = format!("{prefix}-{i}-").repeat(8);
        db.put_cf(handle, format!("{prefix}-{i:06}"), value)?;
    }
    db.flush_cf(handle)?;
    Ok(())
}

fn checkpoint(db: &DB, path: &Path) -> anyhow::Result<()> {
    Checkpoint::new(db)?.create_checkpoint(path)?;
    Ok(())
}

/// A database under `work` with one SST in each column family, and a checkpoint of it at
/// `{work}/cp1`.
fn first_checkpoint(work: &Path) -> anyhow::Result<(DB, PathBuf)> {
    let db = open_db(&work.join("db"))?;
    write_sst(&db, "default", "a", 2_000)?;
    write_sst(&db, OTHER, "x", 2_000)?;
    let path = work.join("cp1");
    checkpoint(&db, &path)?;
    Ok((db, path))
}

/// Every file of a directory, by name.
fn files(dir: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().into_string().expect("UTF-8 file name");
        files.insert(name, std::fs::read(entry.path())?);
    }
    Ok(files)
}

fn sst_names(dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    Ok(files(dir)?
        .into_keys()
        .filter(|name| name.ends_with(".sst"))
        .collect())
}

fn object_of<'m>(manifest: &'m Manifest, name: &str) -> &'m str {
    &manifest
        .files
        .iter()
        .find(|file| file.name == name)
        .unwrap_or_else(|| panic!("{name} not in manifest {}", manifest.id))
        .object
}

async fn exists(client: &GcsClient, object: &str) -> anyhow::Result<bool> {
    match client.metadata(object).await {
        Ok(_) => Ok(true),
        Err(error) if error.is_not_found() => Ok(false),
        Err(error) => Err(error.into()),
    }
}

#[tokio::test]
async fn latest_of_an_empty_scope_is_none() -> anyhow::Result<()> {
    let client = new_bucket().await?;
    let store = CheckpointStore::new(client, "group/store/partition-0");
    assert_eq!(store.latest().await?, None);
    assert!(store.manifest_ids().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn checkpoints_upload_incrementally_restore_exactly_and_retain_shared_files()
-> anyhow::Result<()> {
    let client = new_bucket().await?;
    let store = CheckpointStore::new(client.clone(), "group/store/partition-7");
    let work = tempfile::tempdir()?;

    // Checkpoint 1: one SST in each column family; everything is uploaded.
    let (db, cp1) = first_checkpoint(work.path())?;
    assert_eq!(sst_names(&cp1)?.len(), 2);
    let first = store
        .upload(&cp1, serde_json::json!({ "offset": 100 }))
        .await?;
    let cp1_files = files(&cp1)?;
    let cp1_bytes: u64 = cp1_files.values().map(|b| b.len() as u64).sum();
    assert_eq!(first.manifest.id, 1);
    assert_eq!(first.uploaded_files, cp1_files.len());
    assert_eq!(first.uploaded_bytes, cp1_bytes);
    assert_eq!((first.reused_files, first.reused_bytes), (0, 0));
    assert_eq!(first.manifest.metadata["offset"], 100);

    // Checkpoint 2: one more SST; only it and the mutable files are uploaded.
    write_sst(&db, "default", "b", 2_000)?;
    let cp2 = work.path().join("cp2");
    checkpoint(&db, &cp2)?;
    let added: Vec<String> = sst_names(&cp2)?
        .difference(&sst_names(&cp1)?)
        .cloned()
        .collect();
    assert_eq!(added.len(), 1, "one new SST: {added:?}");
    let second = store
        .upload(&cp2, serde_json::json!({ "offset": 200 }))
        .await?;
    let cp2_files = files(&cp2)?;
    let expected_uploaded: BTreeSet<&str> = cp2_files
        .keys()
        .map(String::as_str)
        .filter(|name| !name.ends_with(".sst") || added.iter().any(|a| a == name))
        .collect();
    let shared_bytes: u64 = cp2_files
        .iter()
        .filter(|(name, _)| !expected_uploaded.contains(name.as_str()))
        .map(|(_, bytes)| bytes.len() as u64)
        .sum();
    assert_eq!(second.manifest.id, 2);
    assert_eq!(second.uploaded_files, expected_uploaded.len());
    assert_eq!(second.reused_files, 2, "the two SSTs of checkpoint 1");
    assert!(second.reused_bytes > 0);
    assert_eq!(second.reused_bytes, shared_bytes);
    for name in sst_names(&cp1)? {
        assert_eq!(
            object_of(&first.manifest, &name),
            object_of(&second.manifest, &name),
            "{name} is shared"
        );
    }

    // Checkpoint 3: compacting the other column family replaces its SST; the default's stay.
    // Overlapping keys, so the compaction merges rather than moves the old file.
    write_sst(&db, OTHER, "x", 500)?;
    let other = db.cf_handle(OTHER).context("column family")?;
    db.compact_range_cf(other, None::<&[u8]>, None::<&[u8]>);
    let cp3 = work.path().join("cp3");
    checkpoint(&db, &cp3)?;
    let third = store
        .upload(&cp3, serde_json::json!({ "offset": 300 }))
        .await?;
    assert_eq!(third.manifest.id, 3);
    let gone: Vec<String> = sst_names(&cp2)?
        .difference(&sst_names(&cp3)?)
        .cloned()
        .collect();
    assert_eq!(gone.len(), 1, "compaction replaced the x SST: {gone:?}");
    let only_old = object_of(&second.manifest, &gone[0]).to_owned();

    // The newest checkpoint restores byte for byte, and RocksDB opens it.
    let latest = store.latest().await?.context("a latest manifest")?;
    assert_eq!(latest, third.manifest);
    let restored = work.path().join("restored");
    let report = store.restore(&latest, &restored).await?;
    assert_eq!(report.files, latest.files.len());
    assert_eq!(files(&restored)?, files(&cp3)?);
    {
        let reopened = open_db(&restored)?;
        let handle = reopened.cf_handle(OTHER).context("column family")?;
        assert!(reopened.get(b"b-001999")?.is_some());
        assert!(reopened.get_cf(handle, b"x-000000")?.is_some());
        assert!(reopened.get_cf(handle, b"x-001999")?.is_some());
    }
    let refused = store.restore(&latest, &restored).await.unwrap_err();
    assert!(matches!(refused, Error::TargetNotEmpty { .. }), "{refused}");

    // Retention: manifests 1 and 2 go, and with them the SST only they used; shared SSTs stay.
    let retention = store.retain(1).await?;
    assert_eq!(retention.kept, vec![3]);
    assert_eq!(retention.deleted_manifests, vec![2, 1]);
    assert!(retention.deleted_files > 0);
    assert_eq!(store.manifest_ids().await?, vec![3]);
    assert!(!exists(&client, &only_old).await?, "{only_old} was deleted");
    for file in &latest.files {
        assert!(exists(&client, &file.object).await?, "{} kept", file.object);
    }
    for name in sst_names(&cp1)?.intersection(&sst_names(&cp3)?) {
        assert_eq!(object_of(&first.manifest, name), object_of(&latest, name));
    }
    let again = work.path().join("restored-after-retention");
    store.restore(&latest, &again).await?;
    assert_eq!(files(&again)?, files(&cp3)?);

    // A corrupted object fails the restore, names the object, and leaves nothing behind.
    let victim = latest
        .files
        .iter()
        .find(|file| file.name.ends_with(".sst"))
        .context("an SST")?;
    client
        .upload_bytes(&victim.object, vec![0xAB; victim.size as usize])
        .await?;
    let target = work.path().join("restored-corrupt");
    let error = store.restore(&latest, &target).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::Corrupt { .. }), "{message}");
    assert!(message.contains(&victim.object), "{message}");
    assert!(message.contains(&victim.sha256), "{message}");
    assert!(!target.exists());
    let leftovers: Vec<_> = std::fs::read_dir(work.path())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".restore-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "staging directories left: {leftovers:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_new_store_reuses_what_is_already_in_the_bucket() -> anyhow::Result<()> {
    let client = new_bucket().await?;
    let scope = "group/store/partition-3";
    let work = tempfile::tempdir()?;
    let (_db, cp) = first_checkpoint(work.path())?;
    let sst_count = sst_names(&cp)?.len();

    // An upload that died before its manifest: the files are there, the manifest is not.
    let first = CheckpointStore::new(client.clone(), scope)
        .upload(&cp, serde_json::Value::Null)
        .await?;
    let manifest_object = format!("ckpt/{scope}/manifests/{:020}.json", first.manifest.id);
    client.delete(&manifest_object).await?;

    // A new store (a restarted replica) finds the SSTs by name and sends only the rest.
    let restarted = CheckpointStore::new(client.clone(), scope);
    assert_eq!(restarted.latest().await?, None);
    let second = restarted.upload(&cp, serde_json::Value::Null).await?;
    assert_eq!(second.manifest.id, 1);
    assert_eq!(second.reused_files, sst_count);
    assert_eq!(second.uploaded_files, first.uploaded_files - sst_count);

    // Another one seeds its knowledge from the latest manifest.
    let third = CheckpointStore::new(client.clone(), scope)
        .upload(&cp, serde_json::Value::Null)
        .await?;
    assert_eq!(third.manifest.id, 2);
    assert_eq!(third.reused_files, sst_count);
    Ok(())
}
