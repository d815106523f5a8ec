//! The embedded store's hot path: a message stored, fetched and burned, one
//! at a time and 64 at once (the group commit's case).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use wisp_proto::{MessageId, UserId};
use wisp_server::store::sqlite::SqliteStore;
use wisp_server::store::{MailboxStore, NewMessage};

/// The per-conversation cap the server applies; bytes unlimited.
const QUOTA: wisp_server::store::Quota = wisp_server::store::Quota::messages(1000);

fn lifecycle(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = runtime.block_on(SqliteStore::open(dir.path())).unwrap();
    let sender = UserId::from_ed25519(&[1; 32]);
    let recipient = UserId::from_ed25519(&[2; 32]);
    let ciphertext = vec![0xab_u8; 200];
    let now = wisp_proto::UnixMillis(1_795_485_132_326);
    let mut n = 0u64;
    let message = |n: u64| -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&n.to_be_bytes());
        id
    };
    c.bench_function("store, fetch, burn one message", |b| {
        b.iter(|| {
            n += 1;
            let id = message(n);
            runtime.block_on(async {
                let accepted = store
                    .put(
                        NewMessage {
                            sender,
                            recipient,
                            client_msg_id: &id,
                            ciphertext: &ciphertext,
                            sent_at: now,
                            expires_at: now.plus(std::time::Duration::from_secs(3600)),
                        },
                        &QUOTA,
                    )
                    .await
                    .unwrap();
                let got = store
                    .fetch(recipient, MessageId(accepted.id.0 - 1), now, 16)
                    .await
                    .unwrap();
                assert_eq!(got.len(), 1);
                store.burn(recipient, &[accepted.id]).await.unwrap();
            });
        })
    });
    c.bench_function("store and burn 64 messages concurrently", |b| {
        b.iter(|| {
            let ids: Vec<[u8; 16]> = (0..64)
                .map(|_| {
                    n += 1;
                    message(n)
                })
                .collect();
            runtime.block_on(async {
                let puts = ids.iter().map(|id| {
                    store.put(
                        NewMessage {
                            sender,
                            recipient,
                            client_msg_id: id,
                            ciphertext: &ciphertext,
                            sent_at: now,
                            expires_at: now.plus(std::time::Duration::from_secs(3600)),
                        },
                        &QUOTA,
                    )
                });
                let accepted = futures_util::future::join_all(puts).await;
                let ids: Vec<[MessageId; 1]> =
                    accepted.into_iter().map(|a| [a.unwrap().id]).collect();
                let burns = ids.iter().map(|id| store.burn(recipient, id));
                for burned in futures_util::future::join_all(burns).await {
                    burned.unwrap();
                }
            });
        })
    });
    runtime.block_on(store.close());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = lifecycle
}
criterion_main!(benches);
