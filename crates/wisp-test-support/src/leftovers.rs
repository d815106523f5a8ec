//! Where an id still appears in a backend's storage: for the tests that
//! prove a deleted account leaves nothing behind. Each looks for every
//! form an id takes in storage: its 20 raw bytes, lowercase hex (Redis
//! keys, PostgreSQL's text form of `bytea`) and the base32 text users see.

use wisp_proto::UserId;

use crate::cluster::ClusterBackend;

/// The forms `user` takes in storage, as bytes to look for.
pub fn id_forms(user: UserId) -> Vec<Vec<u8>> {
    let hex: String = user.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    vec![
        user.as_bytes().to_vec(),
        hex.into_bytes(),
        user.to_string().into_bytes(),
    ]
}

fn mentions(haystack: &[u8], forms: &[Vec<u8>]) -> bool {
    forms.iter().any(|needle| {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_slice())
    })
}

/// The files of the SQLite data directory (database, WAL, shared memory)
/// that hold `user` in any form.
pub fn in_sqlite_files(data_dir: &std::path::Path, user: UserId) -> Vec<String> {
    sqlite_files_holding(data_dir, &id_forms(user))
}

/// The forms a piece of text takes in storage: its UTF-8 bytes (also
/// PostgreSQL's `text`) and their lowercase hex (Redis keys, `bytea`).
pub fn text_forms(text: &str) -> Vec<Vec<u8>> {
    let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
    vec![text.as_bytes().to_vec(), hex.into_bytes()]
}

/// The files of the SQLite data directory (database, WAL, shared memory)
/// that hold any of `forms`.
pub fn sqlite_files_holding(data_dir: &std::path::Path, forms: &[Vec<u8>]) -> Vec<String> {
    std::fs::read_dir(data_dir)
        .expect("data dir")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| mentions(&std::fs::read(path).unwrap_or_default(), forms))
        .map(|path| path.display().to_string())
        .collect()
}

/// The tables of the backend's PostgreSQL schema with a row that holds
/// `user` (hex, as `bytea` prints, or base32), with how many.
pub async fn in_postgres(cluster: &ClusterBackend, user: UserId) -> Vec<String> {
    let hex = String::from_utf8(id_forms(user)[1].clone()).expect("hex");
    postgres_rows_holding(cluster, &[hex, user.to_string()]).await
}

/// The tables of the backend's PostgreSQL schema with a row whose text
/// form holds any of `needles`, with how many.
pub async fn postgres_rows_holding(cluster: &ClusterBackend, needles: &[String]) -> Vec<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&cluster.pg_url)
        .await
        .expect("PostgreSQL");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(&cluster.schema)
    .fetch_all(&mut conn)
    .await
    .expect("tables");
    assert!(
        tables.iter().any(|t| t == "accounts"),
        "the scan sees the schema's tables: {tables:?}"
    );
    let mut found = Vec::new();
    for table in tables {
        let sql = format!(
            "SELECT count(*) FROM {}.{table} AS t \
             WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) AS n WHERE strpos(t::text, n) > 0)",
            cluster.schema
        );
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(needles)
            .fetch_one(&mut conn)
            .await
            .expect("scan");
        if n > 0 {
            found.push(format!("{table}: {n} rows"));
        }
    }
    found
}

/// The keys under the backend's Redis prefix whose name or value holds
/// `user` in any form.
pub async fn in_redis(cluster: &ClusterBackend, user: UserId) -> Vec<String> {
    redis_keys_holding(cluster, &id_forms(user)).await
}

/// The keys under the backend's Redis prefix whose name or value holds
/// any of `forms`.
pub async fn redis_keys_holding(cluster: &ClusterBackend, forms: &[Vec<u8>]) -> Vec<String> {
    use redis::AsyncCommands;
    let client = redis::Client::open(cluster.redis_url.as_str()).expect("Redis URL");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    let mut keys: Vec<String> = Vec::new();
    let mut iter: redis::AsyncIter<'_, String> = redis
        .scan_match(format!("{}:*", cluster.prefix))
        .await
        .expect("scan");
    while let Some(key) = iter.next_item().await {
        keys.push(key.expect("key"));
    }
    drop(iter);
    assert!(!keys.is_empty(), "the scan sees the prefix's keys");
    let mut found = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .expect("type");
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => redis
                .get::<_, Option<Vec<u8>>>(&key)
                .await
                .expect("get")
                .into_iter()
                .collect(),
            "hash" => redis
                .hgetall::<_, Vec<(Vec<u8>, Vec<u8>)>>(&key)
                .await
                .expect("hgetall")
                .into_iter()
                .flat_map(|(field, value)| [field, value])
                .collect(),
            "zset" => redis.zrange(&key, 0, -1).await.expect("zrange"),
            "set" => redis.smembers(&key).await.expect("smembers"),
            "list" => redis.lrange(&key, 0, -1).await.expect("lrange"),
            _ => Vec::new(),
        };
        if mentions(key.as_bytes(), forms) || values.iter().any(|v| mentions(v, forms)) {
            found.push(key);
        }
    }
    found
}
