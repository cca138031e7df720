//! PostgreSQL smoke test: logical replication (wal_level=logical) with the pgoutput plugin,
//! the one the native CDC capture reads.

use tokio_postgres::NoTls;
use trendstream_e2e::{TestEnv, unique_name};

#[tokio::test]
async fn a_logical_slot_sees_an_insert() -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let url = env.get("PG_URL")?;
    println!("PostgreSQL at {url}");
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);

    let wal_level: String = client.query_one("SHOW wal_level", &[]).await?.get(0);
    assert_eq!(wal_level, "logical");

    let name = unique_name("smoke").replace('-', "_");
    let table = format!("orders_{name}");
    let slot = format!("slot_{name}");
    let publication = format!("pub_{name}");
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL);
             CREATE PUBLICATION {publication} FOR TABLE {table};"
        ))
        .await?;
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await?;
    client
        .execute(&format!("INSERT INTO {table} VALUES (42, 5000.25)"), &[])
        .await?;

    let rows = client
        .query(
            "SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL,
                 'proto_version', '1', 'publication_names', $2)",
            &[&slot, &publication],
        )
        .await?;
    let messages: Vec<Vec<u8>> = rows.iter().map(|row| row.get(0)).collect();
    // pgoutput: Begin, Relation, Insert, Commit; the Insert carries the row as text columns.
    let kinds: Vec<char> = messages
        .iter()
        .filter_map(|m| m.first().map(|b| *b as char))
        .collect();
    assert_eq!(kinds, vec!['B', 'R', 'I', 'C'], "pgoutput message kinds");
    let insert = &messages[2];
    let text = String::from_utf8_lossy(insert);
    assert!(
        text.contains("42") && text.contains("5000.25"),
        "insert message {text:?}"
    );

    client
        .batch_execute(&format!(
            "SELECT pg_drop_replication_slot('{slot}'); DROP PUBLICATION {publication}; DROP TABLE {table};"
        ))
        .await?;
    Ok(())
}
