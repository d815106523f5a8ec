//! The sessions cap across the nodes of a cluster: every logged-in
//! connection holds a lease in its account's registry in Redis
//! (`sessions.lua`), and a login that takes the account over
//! `--max-sessions-per-user` closes the oldest sessions wherever they are:
//! here at once, on another node through the bus (a kick on the account's
//! channel, which only nodes where the account is connected hear).
//!
//! A lease lapses [`LEASE`] after its last renewal; each node renews its
//! sessions' leases every third of that, so the sessions of a node that
//! died stop counting within [`LEASE`] (until then they only make the
//! next logins close them, never a live session early: theirs are the
//! oldest entries). If Redis does not answer, the login goes on under the
//! node's own cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wisp_proto::UserId;

use crate::store::StoreError;
use crate::store::lua::{Lua, LuaCall};
use crate::store::redis_link::RedisLink;

/// How long a session counts without a renewal.
pub(crate) const LEASE: Duration = Duration::from_secs(120);

/// Renewals per batch sent to Redis in one pipeline.
const RENEW_BATCH: usize = 500;

static SCRIPT: std::sync::LazyLock<Lua> =
    std::sync::LazyLock::new(|| Lua::new(include_str!("sessions.lua")));

/// A session over the cap, to be closed: the node holding it, and its
/// connection there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Evicted {
    pub(crate) node: u64,
    pub(crate) connection: u64,
}

/// This node's view of the registry: the sessions it holds leases for.
#[derive(Debug)]
pub(crate) struct Registry {
    link: RedisLink,
    prefix: String,
    node: u64,
    /// Registry member → account, of every live session here.
    live: Mutex<HashMap<String, UserId>>,
}

/// A live session's place in the registry; dropping it ends the session
/// there.
#[derive(Debug)]
pub(crate) struct Lease {
    registry: Arc<Registry>,
    user: UserId,
    member: String,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.registry.live().remove(&self.member);
        let registry = Arc::clone(&self.registry);
        let (user, member) = (self.user, std::mem::take(&mut self.member));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // Failing, it lapses with its lease.
                let _ = registry.run(user, "end", &[member]).await;
            });
        }
    }
}

fn parse_member(member: &str) -> Option<Evicted> {
    let mut parts = member.split(':').skip(1);
    let node = parts.next()?.parse().ok()?;
    let connection = parts.next()?.parse().ok()?;
    Some(Evicted { node, connection })
}

impl Registry {
    pub(crate) fn new(link: RedisLink, prefix: &str, node: u64) -> Self {
        Self {
            link,
            prefix: prefix.to_owned(),
            node,
            live: Mutex::default(),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserId>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn key(&self, user: UserId) -> String {
        format!(
            "{}:sessions:{{{}}}",
            self.prefix,
            data_encoding::HEXLOWER.encode(user.as_bytes())
        )
    }

    fn script(&self, user: UserId, action: &str, args: &[String]) -> LuaCall {
        let mut command = SCRIPT.call(1);
        command
            .arg(self.key(user))
            .arg(action)
            .arg(u64::try_from(LEASE.as_millis()).unwrap_or(u64::MAX))
            .arg(args);
        command
    }

    async fn run(
        &self,
        user: UserId,
        action: &str,
        args: &[String],
    ) -> Result<Vec<String>, StoreError> {
        Ok(self.script(user, action, args).query(&self.link).await?)
    }

    /// Registers connection `connection` of `user` here, and removes the
    /// account's oldest sessions beyond `cap`: the lease, and the sessions
    /// to close.
    pub(crate) async fn start(
        self: &Arc<Self>,
        user: UserId,
        connection: u64,
        cap: usize,
    ) -> Result<(Lease, Vec<Evicted>), StoreError> {
        let args = [format!("{}:{connection}", self.node), cap.to_string()];
        let mut reply = self.run(user, "start", &args).await?.into_iter();
        let member = reply
            .next()
            .ok_or_else(|| StoreError::Corrupt("empty session registry reply".into()))?;
        self.live().insert(member.clone(), user);
        let lease = Lease {
            registry: Arc::clone(self),
            user,
            member,
        };
        Ok((lease, reply.filter_map(|m| parse_member(&m)).collect()))
    }

    /// Renews the lease of every live session here.
    async fn renew_all(&self) -> Result<(), StoreError> {
        let mut by_user: HashMap<UserId, Vec<String>> = HashMap::new();
        for (member, user) in self.live().iter() {
            by_user.entry(*user).or_default().push(member.clone());
        }
        let users: Vec<(UserId, Vec<String>)> = by_user.into_iter().collect();
        for batch in users.chunks(RENEW_BATCH) {
            let calls: Vec<LuaCall> = batch
                .iter()
                .map(|(user, members)| self.script(*user, "renew", members))
                .collect();
            crate::store::lua::by_hash(|whole| {
                let mut pipe = redis::pipe();
                for call in &calls {
                    pipe.add_command(call.command(whole).into_owned()).ignore();
                }
                let mut link = self.link.clone();
                async move { pipe.query_async::<()>(&mut link).await }
            })
            .await?;
        }
        Ok(())
    }
}

/// Renews this node's leases every third of [`LEASE`], until `shutdown`.
pub(crate) async fn renew(registry: Arc<Registry>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(LEASE / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        if let Err(error) = registry.renew_all().await {
            tracing::warn!(%error, "cannot renew session leases; retrying at the next renewal");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_name_their_node_and_connection() {
        assert_eq!(
            parse_member("1764000000123456:42:7"),
            Some(Evicted {
                node: 42,
                connection: 7
            })
        );
        assert_eq!(parse_member("garbage"), None);
    }

    #[tokio::test]
    async fn logins_over_the_cap_evict_the_oldest_anywhere_and_ends_free_room() {
        let Some(mailbox) = crate::store::redis_mailbox::tests::open().await else {
            return;
        };
        let link = mailbox.link();
        let prefix = format!("wisp-test-sessions-{:016x}", rand::random::<u64>());
        let one = Arc::new(Registry::new(link.clone(), &prefix, 1));
        let two = Arc::new(Registry::new(link, &prefix, 2));
        let user = UserId::from_ed25519(&[5; 32]);
        let (first, none) = one.start(user, 10, 2).await.unwrap();
        assert!(none.is_empty());
        let (_second, none) = two.start(user, 20, 2).await.unwrap();
        assert!(none.is_empty());
        let (third, evicted) = two.start(user, 21, 2).await.unwrap();
        assert_eq!(
            evicted,
            [Evicted {
                node: 1,
                connection: 10
            }]
        );
        // The evicted one's end is a no-op; an ended session frees room.
        drop(first);
        drop(third);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_fourth, none) = one.start(user, 11, 2).await.unwrap();
        assert!(none.is_empty(), "{none:?}");
        // Renewals keep what is live, and do not bring back what was
        // evicted.
        two.renew_all().await.unwrap();
        one.renew_all().await.unwrap();
        let count: usize = redis::cmd("ZCARD")
            .arg(one.key(user))
            .query_async(&mut one.link.clone())
            .await
            .unwrap();
        assert_eq!(count, 2);
        let _: () = redis::cmd("DEL")
            .arg(one.key(user))
            .query_async(&mut one.link.clone())
            .await
            .unwrap();
    }
}
