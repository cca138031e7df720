//! The event file (`--events-file`, docs/processors.md): JSON Lines, one line per record in
//! produce order, `{"topic":..,"partition":..,"key":..,"value":"<the exact payload>"}`. Written
//! through a buffer as records are produced, so memory stays bounded whatever the count.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::record::Record;

/// One line of the event file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub topic: String,
    pub partition: i32,
    pub key: String,
    pub value: String,
}

/// The event file could not be written.
#[derive(Debug, Error)]
#[error("events file {path}: {source}")]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// A buffered writer of the event file.
#[derive(Debug)]
pub struct EventFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventFile {
    /// Creates (or truncates) the file.
    pub fn create(path: &Path) -> Result<Self, FileError> {
        let file = File::create(path).map_err(|source| FileError {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 20, file),
        })
    }

    fn error(&self, source: std::io::Error) -> FileError {
        FileError {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends the line of `record`, produced to topic `topic`.
    pub fn write(&mut self, topic: &str, record: &Record) -> Result<(), FileError> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            topic: &'a str,
            partition: i32,
            key: &'a str,
            value: &'a str,
        }
        let line = Borrowed {
            topic,
            partition: record.partition,
            key: &record.key,
            value: &record.value,
        };
        serde_json::to_writer(&mut self.out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|e| self.error(e))
    }

    /// Flushes and syncs the file.
    pub fn finish(mut self) -> Result<PathBuf, FileError> {
        self.out.flush().map_err(|e| self.error(e))?;
        self.out.get_ref().sync_all().map_err(|e| self.error(e))?;
        Ok(self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RecordKind, Topic};

    #[test]
    fn lines_keep_the_payload_byte_for_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let mut file = EventFile::create(&path).expect("create");
        let values = [
            r#"{"a":"ü\"x"}"#,
            "poison pill #1: this is not JSON",
            r#"{"event_id":"e"#,
        ];
        for (i, value) in values.iter().enumerate() {
            let record = Record {
                topic: Topic::Clicks,
                partition: i as i32,
                key: format!("u-{i}"),
                value: (*value).to_owned(),
                ts: None,
                kind: RecordKind::InOrder,
            };
            file.write("clickstream", &record).expect("write");
        }
        file.finish().expect("finish");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<Line> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 3);
        for (i, (line, value)) in lines.iter().zip(values).enumerate() {
            assert_eq!(line.value, value);
            assert_eq!(line.partition, i as i32);
            assert_eq!(line.topic, "clickstream");
        }
        assert!(text.starts_with(r#"{"topic":"clickstream","partition":0,"key":"u-0","value":"#));
    }

    #[test]
    fn an_unwritable_path_is_named() {
        let err = EventFile::create(Path::new("/nonexistent-dir/x.jsonl"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent-dir/x.jsonl"), "{err}");
    }
}
