//! Decoder of the `pgoutput` logical decoding plugin's messages (protocol version 1), as
//! documented in PostgreSQL's "Logical Replication Message Formats". Pure: bytes in, messages
//! out; every malformed message is an error naming what was wrong, never a panic.

use super::lsn::Lsn;

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Begin {
        final_lsn: Lsn,
        /// Commit time, microseconds since 2000-01-01 UTC.
        commit_ts: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_ts: i64,
    },
    Relation(Relation),
    Insert {
        relation: u32,
        new: Tuple,
    },
    Update {
        relation: u32,
        /// The old row: the key columns (`K`) or the whole row with `REPLICA IDENTITY FULL` (`O`).
        old: Option<Tuple>,
        new: Tuple,
    },
    Delete {
        relation: u32,
        old: Tuple,
    },
    Truncate {
        relations: Vec<u32>,
    },
    /// Type, origin and logical-message records: nothing to capture.
    Other(u8),
}

/// A table's description; sent before the first change of the table in a decoding session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Part of the replica identity.
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// One column value of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datum {
    Null,
    /// A TOASTed value that did not change (not sent).
    UnchangedToast,
    /// The value in PostgreSQL's text output format.
    Text(String),
}

pub type Tuple = Vec<Datum>;

/// A message that does not follow the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed pgoutput message {kind:?}: {reason}")]
pub struct PgOutputError {
    pub kind: char,
    pub reason: String,
}

struct Reader<'a> {
    kind: char,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn err(&self, reason: impl Into<String>) -> PgOutputError {
        PgOutputError {
            kind: self.kind,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PgOutputError> {
        if self.bytes.len() < n {
            return Err(self.err(format!(
                "truncated: {n} bytes wanted, {} left",
                self.bytes.len()
            )));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, PgOutputError> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, PgOutputError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, PgOutputError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Result<i32, PgOutputError> {
        self.u32().map(|v| v as i32)
    }

    fn i64(&mut self) -> Result<i64, PgOutputError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn lsn(&mut self) -> Result<Lsn, PgOutputError> {
        self.i64().map(|v| Lsn(v as u64))
    }

    fn cstring(&mut self) -> Result<String, PgOutputError> {
        let end = self
            .bytes
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| self.err("unterminated string"))?;
        let text = std::str::from_utf8(&self.bytes[..end])
            .map_err(|_| self.err("string is not UTF-8"))?
            .to_owned();
        self.bytes = &self.bytes[end + 1..];
        Ok(text)
    }

    fn tuple(&mut self) -> Result<Tuple, PgOutputError> {
        let count = self.i16()?;
        let count = usize::try_from(count).map_err(|_| self.err("negative column count"))?;
        let mut tuple = Vec::with_capacity(count);
        for _ in 0..count {
            tuple.push(match self.u8()? {
                b'n' => Datum::Null,
                b'u' => Datum::UnchangedToast,
                b't' => {
                    let len =
                        usize::try_from(self.i32()?).map_err(|_| self.err("negative length"))?;
                    let text = std::str::from_utf8(self.take(len)?)
                        .map_err(|_| self.err("column text is not UTF-8"))?;
                    Datum::Text(text.to_owned())
                }
                other => return Err(self.err(format!("unknown column kind {:?}", other as char))),
            });
        }
        Ok(tuple)
    }
}

/// Decodes one message.
pub fn decode(bytes: &[u8]) -> Result<Message, PgOutputError> {
    let Some((&tag, rest)) = bytes.split_first() else {
        return Err(PgOutputError {
            kind: '?',
            reason: "empty message".into(),
        });
    };
    let mut r = Reader {
        kind: tag as char,
        bytes: rest,
    };
    Ok(match tag {
        b'B' => Message::Begin {
            final_lsn: r.lsn()?,
            commit_ts: r.i64()?,
            xid: r.u32()?,
        },
        b'C' => {
            let _flags = r.u8()?;
            Message::Commit {
                commit_lsn: r.lsn()?,
                end_lsn: r.lsn()?,
                commit_ts: r.i64()?,
            }
        }
        b'R' => {
            let id = r.u32()?;
            let namespace = r.cstring()?;
            let name = r.cstring()?;
            let _replica_identity = r.u8()?;
            let count = usize::try_from(r.i16()?).map_err(|_| r.err("negative column count"))?;
            let mut columns = Vec::with_capacity(count);
            for _ in 0..count {
                let flags = r.u8()?;
                columns.push(Column {
                    key: flags & 1 == 1,
                    name: r.cstring()?,
                    type_oid: r.u32()?,
                    type_modifier: r.i32()?,
                });
            }
            Message::Relation(Relation {
                id,
                namespace,
                name,
                columns,
            })
        }
        b'I' => {
            let relation = r.u32()?;
            match r.u8()? {
                b'N' => Message::Insert {
                    relation,
                    new: r.tuple()?,
                },
                other => return Err(r.err(format!("expected N, got {:?}", other as char))),
            }
        }
        b'U' => {
            let relation = r.u32()?;
            let (old, marker) = match r.u8()? {
                b'K' | b'O' => {
                    let old = r.tuple()?;
                    (Some(old), r.u8()?)
                }
                other => (None, other),
            };
            if marker != b'N' {
                return Err(r.err(format!("expected N, got {:?}", marker as char)));
            }
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32()?;
            match r.u8()? {
                b'K' | b'O' => Message::Delete {
                    relation,
                    old: r.tuple()?,
                },
                other => return Err(r.err(format!("expected K or O, got {:?}", other as char))),
            }
        }
        b'T' => {
            let count = r.u32()?;
            let _options = r.u8()?;
            let mut relations = Vec::new();
            for _ in 0..count {
                relations.push(r.u32()?);
            }
            Message::Truncate { relations }
        }
        other => Message::Other(other),
    })
}

/// PostgreSQL timestamps count microseconds from 2000-01-01; Unix ms from 1970.
pub const PG_EPOCH_OFFSET_MS: i64 = 946_684_800_000;

/// A pgoutput commit time as epoch milliseconds.
pub fn pg_micros_to_epoch_ms(micros: i64) -> i64 {
    micros.div_euclid(1000) + PG_EPOCH_OFFSET_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple_bytes(values: &[Option<&str>]) -> Vec<u8> {
        let mut b = (values.len() as i16).to_be_bytes().to_vec();
        for v in values {
            match v {
                None => b.push(b'n'),
                Some(t) => {
                    b.push(b't');
                    b.extend((t.len() as i32).to_be_bytes());
                    b.extend(t.as_bytes());
                }
            }
        }
        b
    }

    #[test]
    fn begin_commit_relation_insert_update_delete() {
        let mut begin = vec![b'B'];
        begin.extend(0x10u64.to_be_bytes());
        begin.extend(1_000_000i64.to_be_bytes());
        begin.extend(777u32.to_be_bytes());
        assert_eq!(
            decode(&begin),
            Ok(Message::Begin {
                final_lsn: Lsn(0x10),
                commit_ts: 1_000_000,
                xid: 777
            })
        );

        let mut rel = vec![b'R'];
        rel.extend(16384u32.to_be_bytes());
        rel.extend(b"public\0orders\0");
        rel.push(b'f');
        rel.extend(2i16.to_be_bytes());
        rel.push(1);
        rel.extend(b"id\0");
        rel.extend(25u32.to_be_bytes());
        rel.extend((-1i32).to_be_bytes());
        rel.push(0);
        rel.extend(b"amount\0");
        rel.extend(1700u32.to_be_bytes());
        rel.extend(((12 << 16) + 2 + 4i32).to_be_bytes());
        let Ok(Message::Relation(relation)) = decode(&rel) else {
            panic!("relation");
        };
        assert_eq!(relation.name, "orders");
        assert!(relation.columns[0].key && !relation.columns[1].key);
        assert_eq!(relation.columns[1].type_modifier, (12 << 16) + 6);

        let mut insert = vec![b'I'];
        insert.extend(16384u32.to_be_bytes());
        insert.push(b'N');
        insert.extend(tuple_bytes(&[Some("o-1"), None]));
        assert_eq!(
            decode(&insert),
            Ok(Message::Insert {
                relation: 16384,
                new: vec![Datum::Text("o-1".into()), Datum::Null]
            })
        );

        let mut update = vec![b'U'];
        update.extend(16384u32.to_be_bytes());
        update.push(b'O');
        update.extend(tuple_bytes(&[Some("o-1"), Some("1.00")]));
        update.push(b'N');
        update.extend(tuple_bytes(&[Some("o-1"), Some("2.00")]));
        let Ok(Message::Update {
            old: Some(old),
            new,
            ..
        }) = decode(&update)
        else {
            panic!("update");
        };
        assert_eq!(old[1], Datum::Text("1.00".into()));
        assert_eq!(new[1], Datum::Text("2.00".into()));

        let mut delete = vec![b'D'];
        delete.extend(16384u32.to_be_bytes());
        delete.push(b'K');
        delete.extend(tuple_bytes(&[Some("o-1"), None]));
        assert!(matches!(decode(&delete), Ok(Message::Delete { .. })));

        let mut commit = vec![b'C', 0];
        commit.extend(0x10u64.to_be_bytes());
        commit.extend(0x20u64.to_be_bytes());
        commit.extend(5i64.to_be_bytes());
        assert_eq!(
            decode(&commit),
            Ok(Message::Commit {
                commit_lsn: Lsn(0x10),
                end_lsn: Lsn(0x20),
                commit_ts: 5
            })
        );
    }

    #[test]
    fn truncated_messages_are_errors_not_panics() {
        assert!(decode(&[]).is_err());
        assert!(decode(b"B\0\0").is_err());
        assert!(decode(b"I\0\0\0\x01N\0\x01t\0\0\0\x09ab").is_err());
        assert!(decode(b"R\0\0\0\x01public").is_err());
    }

    #[test]
    fn commit_time_converts_to_unix_millis() {
        assert_eq!(pg_micros_to_epoch_ms(0), 946_684_800_000);
        assert_eq!(pg_micros_to_epoch_ms(1_500), 946_684_800_001);
    }
}
