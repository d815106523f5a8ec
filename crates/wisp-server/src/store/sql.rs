//! The SQL both relational backends share, written once: accounts
//! ([`AccountStore`](super::AccountStore)), friendships (the
//! [`FriendTx`](super::friend_rules::FriendTx) steps the friend rules run,
//! and the friend lists) and one-time-key storage.
//!
//! It is one `macro_rules!`, [`relational_store!`], expanded in
//! [`sqlite`](super::sqlite) and in [`postgres`](super::postgres) (the
//! model is vaultwarden's `db_run!`), rather than code generic over sqlx's
//! `Database`: generic sqlx code must restate on every function that each
//! bound type encodes and decodes for the database and that a connection
//! is an executor, which would bury the SQL it is there to show. The
//! statements use `$n` placeholders, which SQLite accepts too, so each is
//! the same text on both.
//!
//! What stays with each backend is what truly differs: setting up its
//! pools, how a write transaction starts (SQLite `BEGIN IMMEDIATE`,
//! PostgreSQL row locks), the one-time-key claim (PostgreSQL's
//! `SKIP LOCKED`) and the migrations.

use wisp_proto::{UnixMillis, UserId};

use super::{
    ClaimedKey, FriendEntry, IdentityKeys, PendingRequests, RequestEntry, SignedKey, StoreError,
};

/// A user id as a row holds it.
pub(super) fn user_from_row(bytes: &[u8]) -> Result<UserId, StoreError> {
    UserId::from_bytes(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A 32-byte public key as a row holds it.
pub(super) fn key_from_row(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("key of {} bytes", bytes.len())))
}

/// A `count(*)`. A count no `usize` can hold is corrupt data: before this
/// module the two backends fell back to 0 in one place and `usize::MAX` in
/// another, so the same impossible row meant "room for every key" on one
/// path and "at every limit" on the other.
pub(super) fn count_from_row(n: i64) -> Result<usize, StoreError> {
    usize::try_from(n).map_err(|_| StoreError::Corrupt(format!("count of {n}")))
}

/// `(ed25519, curve25519, signature)` as registered.
pub(super) fn identity_from_row(
    (ed25519, curve25519, signature): (Vec<u8>, Vec<u8>, Vec<u8>),
) -> Result<IdentityKeys, StoreError> {
    Ok(IdentityKeys {
        ed25519: key_from_row(&ed25519)?,
        curve25519: key_from_row(&curve25519)?,
        curve25519_signature: signature,
    })
}

/// `(public key, signature)` of a claimed key; `fallback` says which kind.
pub(super) fn claimed_from_row(
    (public_key, signature): (Vec<u8>, Vec<u8>),
    fallback: bool,
) -> Result<ClaimedKey, StoreError> {
    Ok(ClaimedKey {
        key: SignedKey {
            public_key: key_from_row(&public_key)?,
            signature,
        },
        fallback,
    })
}

/// `(user, time)` rows, as read for the friend lists.
pub(super) fn users_from_rows(
    rows: Vec<(Vec<u8>, i64)>,
) -> Result<Vec<(UserId, UnixMillis)>, StoreError> {
    rows.into_iter()
        .map(|(user, at)| Ok((user_from_row(&user)?, UnixMillis(at))))
        .collect()
}

/// The three lists of [`FriendStore::pending`](super::FriendStore::pending).
pub(super) fn pending_from_rows(
    incoming: Vec<(UserId, UnixMillis)>,
    outgoing: Vec<(UserId, UnixMillis)>,
    blocked: Vec<(UserId, UnixMillis)>,
) -> PendingRequests {
    let entries = |rows: Vec<(UserId, UnixMillis)>| {
        rows.into_iter()
            .map(|(user, created)| RequestEntry { user, created })
            .collect()
    };
    PendingRequests {
        incoming: entries(incoming),
        outgoing: entries(outgoing),
        blocked: blocked.into_iter().map(|(user, _)| user).collect(),
    }
}

/// [`FriendStore::friends`](super::FriendStore::friends) from its rows.
pub(super) fn friends_from_rows(rows: Vec<(UserId, UnixMillis)>) -> Vec<FriendEntry> {
    rows.into_iter()
        .map(|(user, since)| FriendEntry { user, since })
        .collect()
}

/// Implements `AccountStore`, `FriendStore` and `PreKeyStore` for a
/// relational store `$store` on the sqlx database `$db`, with the SQL
/// written once here. `$readers` and `$writer` name the store's pools for
/// queries and for single writing statements (the same pool on
/// PostgreSQL). Expanded once per backend module, which provides:
///
/// - `async fn begin_write(&self, users: &[UserId]) ->
///   Result<sqlx::Transaction<'_, $db>, StoreError>`: a transaction in
///   which no other write can change those users' friendships, requests,
///   blocks or keys until it ends;
/// - `const CLAIM_ONE_TIME_KEY: &str`: the statement that deletes the
///   owner's (`$1`) oldest one-time key and returns its `public_key,
///   signature`, safe against concurrent claims.
macro_rules! relational_store {
    ($store:ty, $db:ty, readers: $readers:ident, writer: $writer:ident) => {
        /// The friend rules' primitive steps inside one write transaction
        /// (see `begin_write`).
        struct FriendSteps<'c>(&'c mut <$db as ::sqlx::Database>::Connection);

        impl FriendSteps<'_> {
            async fn count(
                &mut self,
                sql: &'static str,
                user: ::wisp_proto::UserId,
            ) -> Result<usize, $crate::store::StoreError> {
                let n: i64 = ::sqlx::query_scalar(sql)
                    .bind(user.as_bytes().as_slice())
                    .fetch_one(&mut *self.0)
                    .await?;
                $crate::store::sql::count_from_row(n)
            }

            /// Whether `sql` over `(a, b)` finds a row.
            async fn exists(
                &mut self,
                sql: &'static str,
                a: ::wisp_proto::UserId,
                b: ::wisp_proto::UserId,
            ) -> Result<bool, $crate::store::StoreError> {
                let row = ::sqlx::query(sql)
                    .bind(a.as_bytes().as_slice())
                    .bind(b.as_bytes().as_slice())
                    .fetch_optional(&mut *self.0)
                    .await?;
                Ok(row.is_some())
            }

            /// Runs `sql` over `(a, b)`; returns whether it changed a row.
            async fn change(
                &mut self,
                sql: &'static str,
                a: ::wisp_proto::UserId,
                b: ::wisp_proto::UserId,
            ) -> Result<bool, $crate::store::StoreError> {
                let done = ::sqlx::query(sql)
                    .bind(a.as_bytes().as_slice())
                    .bind(b.as_bytes().as_slice())
                    .execute(&mut *self.0)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn insert(
                &mut self,
                sql: &'static str,
                a: ::wisp_proto::UserId,
                b: ::wisp_proto::UserId,
                now: ::wisp_proto::UnixMillis,
            ) -> Result<(), $crate::store::StoreError> {
                ::sqlx::query(sql)
                    .bind(a.as_bytes().as_slice())
                    .bind(b.as_bytes().as_slice())
                    .bind(now.0)
                    .execute(&mut *self.0)
                    .await?;
                Ok(())
            }
        }

        #[::async_trait::async_trait]
        impl $crate::store::friend_rules::FriendTx for FriendSteps<'_> {
            async fn delete_expired_requests(
                &mut self,
                user: ::wisp_proto::UserId,
                cutoff: ::wisp_proto::UnixMillis,
            ) -> Result<(), $crate::store::StoreError> {
                ::sqlx::query(
                    "DELETE FROM friend_requests \
                     WHERE (from_user = $1 OR to_user = $1) AND created_ms <= $2",
                )
                .bind(user.as_bytes().as_slice())
                .bind(cutoff.0)
                .execute(&mut *self.0)
                .await?;
                Ok(())
            }

            async fn has_blocked(
                &mut self,
                owner: ::wisp_proto::UserId,
                other: ::wisp_proto::UserId,
            ) -> Result<bool, $crate::store::StoreError> {
                let sql = "SELECT 1 FROM blocks WHERE owner = $1 AND blocked = $2";
                self.exists(sql, owner, other).await
            }

            async fn are_friends(
                &mut self,
                a: ::wisp_proto::UserId,
                b: ::wisp_proto::UserId,
            ) -> Result<bool, $crate::store::StoreError> {
                let sql = "SELECT 1 FROM friends WHERE owner = $1 AND friend = $2";
                self.exists(sql, a, b).await
            }

            async fn has_request(
                &mut self,
                from: ::wisp_proto::UserId,
                to: ::wisp_proto::UserId,
            ) -> Result<bool, $crate::store::StoreError> {
                let sql = "SELECT 1 FROM friend_requests WHERE from_user = $1 AND to_user = $2";
                self.exists(sql, from, to).await
            }

            async fn friend_count(
                &mut self,
                user: ::wisp_proto::UserId,
            ) -> Result<usize, $crate::store::StoreError> {
                self.count("SELECT count(*) FROM friends WHERE owner = $1", user)
                    .await
            }

            async fn outgoing_count(
                &mut self,
                user: ::wisp_proto::UserId,
            ) -> Result<usize, $crate::store::StoreError> {
                let sql = "SELECT count(*) FROM friend_requests WHERE from_user = $1";
                self.count(sql, user).await
            }

            async fn visible_incoming_count(
                &mut self,
                user: ::wisp_proto::UserId,
            ) -> Result<usize, $crate::store::StoreError> {
                let sql = "SELECT count(*) FROM friend_requests WHERE to_user = $1 \
                           AND from_user NOT IN (SELECT blocked FROM blocks WHERE owner = $1)";
                self.count(sql, user).await
            }

            async fn block_count(
                &mut self,
                user: ::wisp_proto::UserId,
            ) -> Result<usize, $crate::store::StoreError> {
                self.count("SELECT count(*) FROM blocks WHERE owner = $1", user)
                    .await
            }

            async fn insert_request(
                &mut self,
                from: ::wisp_proto::UserId,
                to: ::wisp_proto::UserId,
                now: ::wisp_proto::UnixMillis,
            ) -> Result<(), $crate::store::StoreError> {
                let sql = "INSERT INTO friend_requests (from_user, to_user, created_ms) \
                           VALUES ($1, $2, $3)";
                self.insert(sql, from, to, now).await
            }

            async fn delete_request(
                &mut self,
                from: ::wisp_proto::UserId,
                to: ::wisp_proto::UserId,
            ) -> Result<bool, $crate::store::StoreError> {
                let sql = "DELETE FROM friend_requests WHERE from_user = $1 AND to_user = $2";
                self.change(sql, from, to).await
            }

            async fn insert_friendship(
                &mut self,
                a: ::wisp_proto::UserId,
                b: ::wisp_proto::UserId,
                now: ::wisp_proto::UnixMillis,
            ) -> Result<(), $crate::store::StoreError> {
                let sql = "INSERT INTO friends (owner, friend, since_ms) VALUES ($1, $2, $3)";
                self.insert(sql, a, b, now).await?;
                self.insert(sql, b, a, now).await
            }

            async fn delete_friendship(
                &mut self,
                a: ::wisp_proto::UserId,
                b: ::wisp_proto::UserId,
            ) -> Result<bool, $crate::store::StoreError> {
                let sql = "DELETE FROM friends \
                           WHERE (owner = $1 AND friend = $2) OR (owner = $2 AND friend = $1)";
                self.change(sql, a, b).await
            }

            async fn insert_block(
                &mut self,
                owner: ::wisp_proto::UserId,
                other: ::wisp_proto::UserId,
                now: ::wisp_proto::UnixMillis,
            ) -> Result<(), $crate::store::StoreError> {
                let sql = "INSERT INTO blocks (owner, blocked, created_ms) VALUES ($1, $2, $3) \
                           ON CONFLICT DO NOTHING";
                self.insert(sql, owner, other, now).await
            }

            async fn delete_block(
                &mut self,
                owner: ::wisp_proto::UserId,
                other: ::wisp_proto::UserId,
            ) -> Result<bool, $crate::store::StoreError> {
                let sql = "DELETE FROM blocks WHERE owner = $1 AND blocked = $2";
                self.change(sql, owner, other).await
            }
        }

        impl $store {
            /// Runs `work` inside one write transaction on `users` (see
            /// `begin_write`), committing only when it succeeds.
            async fn write_friends<T, F>(
                &self,
                users: [::wisp_proto::UserId; 2],
                work: F,
            ) -> Result<T, $crate::store::FriendError>
            where
                F: for<'c> FnOnce(
                        &'c mut FriendSteps<'_>,
                    ) -> ::std::pin::Pin<
                        Box<
                            dyn ::std::future::Future<
                                    Output = Result<T, $crate::store::FriendError>,
                                > + Send
                                + 'c,
                        >,
                    > + Send,
                T: Send,
            {
                let mut tx = self.begin_write(&users).await?;
                let result = {
                    let mut steps = FriendSteps(&mut tx);
                    work(&mut steps).await
                };
                match result {
                    Ok(value) => {
                        tx.commit().await.map_err($crate::store::StoreError::from)?;
                        Ok(value)
                    }
                    Err(error) => {
                        if let Err(rollback) = tx.rollback().await {
                            ::tracing::error!(%rollback, "rollback failed");
                        }
                        Err(error)
                    }
                }
            }

            /// `(user, time)` rows of `sql` over `user`, from the readers.
            async fn user_list(
                &self,
                sql: &'static str,
                user: ::wisp_proto::UserId,
            ) -> Result<Vec<(::wisp_proto::UserId, ::wisp_proto::UnixMillis)>, $crate::store::StoreError>
            {
                let rows: Vec<(Vec<u8>, i64)> = ::sqlx::query_as(sql)
                    .bind(user.as_bytes().as_slice())
                    .fetch_all(&self.$readers)
                    .await?;
                $crate::store::sql::users_from_rows(rows)
            }

            /// Like `user_list`, for requests: `sql` also takes (`$2`) the
            /// cutoff at or before which requests have expired.
            async fn live_request_list(
                &self,
                sql: &'static str,
                user: ::wisp_proto::UserId,
                cutoff: ::wisp_proto::UnixMillis,
            ) -> Result<Vec<(::wisp_proto::UserId, ::wisp_proto::UnixMillis)>, $crate::store::StoreError>
            {
                let rows: Vec<(Vec<u8>, i64)> = ::sqlx::query_as(sql)
                    .bind(user.as_bytes().as_slice())
                    .bind(cutoff.0)
                    .fetch_all(&self.$readers)
                    .await?;
                $crate::store::sql::users_from_rows(rows)
            }

            /// How many one-time keys `owner` has, on `conn`.
            async fn one_time_count(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                owner: ::wisp_proto::UserId,
            ) -> Result<usize, $crate::store::StoreError> {
                let n: i64 =
                    ::sqlx::query_scalar("SELECT count(*) FROM one_time_keys WHERE owner = $1")
                        .bind(owner.as_bytes().as_slice())
                        .fetch_one(conn)
                        .await?;
                $crate::store::sql::count_from_row(n)
            }
        }

        #[::async_trait::async_trait]
        impl $crate::store::AccountStore for $store {
            async fn create_account(
                &self,
                user: ::wisp_proto::UserId,
                keys: &$crate::store::IdentityKeys,
                now: ::wisp_proto::UnixMillis,
            ) -> Result<(), $crate::store::CreateAccountError> {
                let tombstone = $crate::store::tombstone(user);
                // Not over a deleted account's tombstone (tombstones are
                // never removed, so the check and the insert cannot race).
                let done = ::sqlx::query(
                    "INSERT INTO accounts \
                     (user_id, ed25519_key, curve25519_key, identity_signature, created_ms) \
                     SELECT $1, $2, $3, $4, $5 \
                     WHERE NOT EXISTS (SELECT 1 FROM deleted_accounts WHERE digest = $6) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(user.as_bytes().as_slice())
                .bind(keys.ed25519.as_slice())
                .bind(keys.curve25519.as_slice())
                .bind(keys.curve25519_signature.as_slice())
                .bind(now.0)
                .bind(tombstone.as_slice())
                .execute(&self.$writer)
                .await
                .map_err($crate::store::StoreError::from)?;
                if done.rows_affected() > 0 {
                    return Ok(());
                }
                let deleted: Option<i32> =
                    ::sqlx::query_scalar("SELECT 1 FROM deleted_accounts WHERE digest = $1")
                        .bind(tombstone.as_slice())
                        .fetch_optional(&self.$writer)
                        .await
                        .map_err($crate::store::StoreError::from)?;
                Err(match deleted {
                    Some(_) => $crate::store::CreateAccountError::Deleted,
                    None => $crate::store::CreateAccountError::AlreadyRegistered,
                })
            }

            async fn delete_account(
                &self,
                user: ::wisp_proto::UserId,
            ) -> Result<Vec<::wisp_proto::UserId>, $crate::store::StoreError> {
                let me = user.as_bytes().as_slice();
                let mut tx = self.begin_write(&[user]).await?;
                let friends: Vec<Vec<u8>> =
                    ::sqlx::query_scalar("SELECT friend FROM friends WHERE owner = $1")
                        .bind(me)
                        .fetch_all(&mut *tx)
                        .await?;
                // Each friendship is stored once per side: the friend's row
                // by its primary key, not by a scan of every friendship.
                for friend in &friends {
                    ::sqlx::query("DELETE FROM friends WHERE owner = $1 AND friend = $2")
                        .bind(friend.as_slice())
                        .bind(me)
                        .execute(&mut *tx)
                        .await?;
                }
                for sql in [
                    "DELETE FROM friends WHERE owner = $1",
                    "DELETE FROM friend_requests WHERE from_user = $1",
                    "DELETE FROM friend_requests WHERE to_user = $1",
                    "DELETE FROM blocks WHERE owner = $1",
                    "DELETE FROM blocks WHERE blocked = $1",
                    "DELETE FROM one_time_keys WHERE owner = $1",
                    "DELETE FROM fallback_keys WHERE owner = $1",
                    "DELETE FROM accounts WHERE user_id = $1",
                ] {
                    ::sqlx::query(sql).bind(me).execute(&mut *tx).await?;
                }
                ::sqlx::query(
                    "INSERT INTO deleted_accounts (digest) VALUES ($1) ON CONFLICT DO NOTHING",
                )
                .bind($crate::store::tombstone(user).as_slice())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                friends
                    .iter()
                    .map(|friend| $crate::store::sql::user_from_row(friend))
                    .collect()
            }

            async fn identity(
                &self,
                user: ::wisp_proto::UserId,
            ) -> Result<Option<$crate::store::IdentityKeys>, $crate::store::StoreError> {
                let row: Option<(Vec<u8>, Vec<u8>, Vec<u8>)> = ::sqlx::query_as(
                    "SELECT ed25519_key, curve25519_key, identity_signature \
                     FROM accounts WHERE user_id = $1",
                )
                .bind(user.as_bytes().as_slice())
                .fetch_optional(&self.$readers)
                .await?;
                row.map($crate::store::sql::identity_from_row).transpose()
            }

            async fn server_name(&self, proposed: &str) -> Result<String, $crate::store::StoreError> {
                ::sqlx::query(
                    "INSERT INTO meta (key, value) VALUES ('server_name', $1) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(proposed)
                .execute(&self.$writer)
                .await?;
                // From the writer too: a reader might not see the insert yet.
                Ok(
                    ::sqlx::query_scalar("SELECT value FROM meta WHERE key = 'server_name'")
                        .fetch_one(&self.$writer)
                        .await?,
                )
            }

            async fn ping(&self) -> Result<(), $crate::store::StoreError> {
                ::sqlx::query("SELECT 1").execute(&self.$readers).await?;
                Ok(())
            }
        }

        #[::async_trait::async_trait]
        impl $crate::store::FriendStore for $store {
            async fn request_with(
                &self,
                from: ::wisp_proto::UserId,
                to: ::wisp_proto::UserId,
                now: ::wisp_proto::UnixMillis,
                introduction: $crate::store::Introduction,
            ) -> Result<$crate::store::RequestOutcome, $crate::store::FriendError> {
                self.write_friends([from, to], |tx| {
                    Box::pin($crate::store::friend_rules::request(
                        tx,
                        from,
                        to,
                        now,
                        introduction,
                    ))
                })
                .await
            }

            async fn purge_expired_requests(
                &self,
                now: ::wisp_proto::UnixMillis,
            ) -> Result<u64, $crate::store::StoreError> {
                let cutoff = $crate::store::friend_rules::request_cutoff(now);
                let done = ::sqlx::query("DELETE FROM friend_requests WHERE created_ms <= $1")
                    .bind(cutoff.0)
                    .execute(&self.$writer)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn accept(
                &self,
                me: ::wisp_proto::UserId,
                from: ::wisp_proto::UserId,
                now: ::wisp_proto::UnixMillis,
            ) -> Result<(), $crate::store::FriendError> {
                self.write_friends([me, from], |tx| {
                    Box::pin($crate::store::friend_rules::accept(tx, me, from, now))
                })
                .await
            }

            async fn decline(
                &self,
                me: ::wisp_proto::UserId,
                from: ::wisp_proto::UserId,
            ) -> Result<(), $crate::store::FriendError> {
                self.write_friends([me, from], |tx| {
                    Box::pin($crate::store::friend_rules::decline(tx, me, from))
                })
                .await
            }

            async fn cancel(
                &self,
                me: ::wisp_proto::UserId,
                to: ::wisp_proto::UserId,
            ) -> Result<(), $crate::store::FriendError> {
                self.decline(to, me).await
            }

            async fn remove(
                &self,
                me: ::wisp_proto::UserId,
                other: ::wisp_proto::UserId,
            ) -> Result<(), $crate::store::FriendError> {
                self.write_friends([me, other], |tx| {
                    Box::pin($crate::store::friend_rules::remove(tx, me, other))
                })
                .await
            }

            async fn block(
                &self,
                me: ::wisp_proto::UserId,
                other: ::wisp_proto::UserId,
                now: ::wisp_proto::UnixMillis,
            ) -> Result<bool, $crate::store::FriendError> {
                self.write_friends([me, other], |tx| {
                    Box::pin($crate::store::friend_rules::block(tx, me, other, now))
                })
                .await
            }

            async fn unblock(
                &self,
                me: ::wisp_proto::UserId,
                other: ::wisp_proto::UserId,
            ) -> Result<(), $crate::store::FriendError> {
                self.write_friends([me, other], |tx| {
                    Box::pin($crate::store::friend_rules::unblock(tx, me, other))
                })
                .await
            }

            async fn friends(
                &self,
                me: ::wisp_proto::UserId,
            ) -> Result<Vec<$crate::store::FriendEntry>, $crate::store::StoreError> {
                let rows = self
                    .user_list(
                        "SELECT friend, since_ms FROM friends WHERE owner = $1 \
                         ORDER BY since_ms, friend",
                        me,
                    )
                    .await?;
                Ok($crate::store::sql::friends_from_rows(rows))
            }

            async fn pending(
                &self,
                me: ::wisp_proto::UserId,
                now: ::wisp_proto::UnixMillis,
            ) -> Result<$crate::store::PendingRequests, $crate::store::StoreError> {
                let cutoff = $crate::store::friend_rules::request_cutoff(now);
                let incoming = self
                    .live_request_list(
                        "SELECT from_user, created_ms FROM friend_requests WHERE to_user = $1 \
                         AND created_ms > $2 \
                         AND from_user NOT IN (SELECT blocked FROM blocks WHERE owner = $1) \
                         ORDER BY created_ms, from_user",
                        me,
                        cutoff,
                    )
                    .await?;
                let outgoing = self
                    .live_request_list(
                        "SELECT to_user, created_ms FROM friend_requests WHERE from_user = $1 \
                         AND created_ms > $2 \
                         ORDER BY created_ms, to_user",
                        me,
                        cutoff,
                    )
                    .await?;
                let blocked = self
                    .user_list(
                        "SELECT blocked, created_ms FROM blocks WHERE owner = $1 \
                         ORDER BY created_ms, blocked",
                        me,
                    )
                    .await?;
                Ok($crate::store::sql::pending_from_rows(
                    incoming, outgoing, blocked,
                ))
            }

            async fn are_friends(
                &self,
                a: ::wisp_proto::UserId,
                b: ::wisp_proto::UserId,
            ) -> Result<bool, $crate::store::StoreError> {
                let row = ::sqlx::query("SELECT 1 FROM friends WHERE owner = $1 AND friend = $2")
                    .bind(a.as_bytes().as_slice())
                    .bind(b.as_bytes().as_slice())
                    .fetch_optional(&self.$readers)
                    .await?;
                Ok(row.is_some())
            }
        }

        #[::async_trait::async_trait]
        impl $crate::store::PreKeyStore for $store {
            async fn add_keys(
                &self,
                owner: ::wisp_proto::UserId,
                one_time: &[$crate::store::SignedKey],
                fallback: Option<&$crate::store::SignedKey>,
            ) -> Result<usize, $crate::store::StoreError> {
                // One upload at a time per owner, so the cap holds.
                let mut tx = self.begin_write(&[owner]).await?;
                let stored = Self::one_time_count(&mut tx, owner).await?;
                let room = ::wisp_proto::limits::MAX_STORED_ONE_TIME_KEYS.saturating_sub(stored);
                for key in one_time.iter().take(room) {
                    ::sqlx::query(
                        "INSERT INTO one_time_keys (owner, public_key, signature) \
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(owner.as_bytes().as_slice())
                    .bind(key.public_key.as_slice())
                    .bind(key.signature.as_slice())
                    .execute(&mut *tx)
                    .await?;
                }
                if let Some(key) = fallback {
                    ::sqlx::query(
                        "INSERT INTO fallback_keys (owner, public_key, signature) \
                         VALUES ($1, $2, $3) ON CONFLICT (owner) DO UPDATE \
                         SET public_key = excluded.public_key, signature = excluded.signature",
                    )
                    .bind(owner.as_bytes().as_slice())
                    .bind(key.public_key.as_slice())
                    .bind(key.signature.as_slice())
                    .execute(&mut *tx)
                    .await?;
                }
                let total = Self::one_time_count(&mut tx, owner).await?;
                tx.commit().await?;
                Ok(total)
            }

            async fn claim(
                &self,
                owner: ::wisp_proto::UserId,
            ) -> Result<Option<$crate::store::ClaimedKey>, $crate::store::StoreError> {
                let one_time: Option<(Vec<u8>, Vec<u8>)> =
                    ::sqlx::query_as(Self::CLAIM_ONE_TIME_KEY)
                        .bind(owner.as_bytes().as_slice())
                        .fetch_optional(&self.$writer)
                        .await?;
                if let Some(row) = one_time {
                    return $crate::store::sql::claimed_from_row(row, false).map(Some);
                }
                let fallback: Option<(Vec<u8>, Vec<u8>)> = ::sqlx::query_as(
                    "SELECT public_key, signature FROM fallback_keys WHERE owner = $1",
                )
                .bind(owner.as_bytes().as_slice())
                .fetch_optional(&self.$writer)
                .await?;
                fallback
                    .map(|row| $crate::store::sql::claimed_from_row(row, true))
                    .transpose()
            }

            async fn one_time_key_count(
                &self,
                owner: ::wisp_proto::UserId,
            ) -> Result<usize, $crate::store::StoreError> {
                let mut conn = self.$readers.acquire().await?;
                Self::one_time_count(&mut conn, owner).await
            }
        }
    };
}

pub(super) use relational_store;

/// Applies `$migration`, a `&(version, name, sql)`, on the open
/// transaction `$tx` unless `schema_migrations` records it, and records it
/// with the statement `$record` (`$1` the version, `$2` the name). Used by
/// both backends' migration runners, which differ in how they lock.
macro_rules! apply_migration {
    ($tx:ident, $migration:expr, $record:expr) => {{
        let (version, name, sql): &(i64, &'static str, &'static str) = $migration;
        let applied: Option<i64> =
            ::sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *$tx)
                .await?;
        if applied.is_none() {
            ::sqlx::raw_sql(*sql)
                .execute(&mut *$tx)
                .await
                .map_err(|e| $crate::store::StoreError::Migration {
                    version: *version,
                    name: *name,
                    source: Box::new(e),
                })?;
            ::sqlx::query($record)
                .bind(version)
                .bind(name)
                .execute(&mut *$tx)
                .await?;
            ::tracing::info!(version, name, "applied schema migration");
        }
    }};
}

pub(super) use apply_migration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_count_is_corrupt_data_not_a_limit() {
        assert_eq!(count_from_row(3).unwrap(), 3);
        assert!(matches!(count_from_row(-1), Err(StoreError::Corrupt(_))));
    }
}
