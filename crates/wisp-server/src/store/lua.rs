//! The Lua scripts the cluster backend runs in Redis (mailbox writes, rate
//! limits, session leases), sent by their SHA-1 (`EVALSHA`): 40 bytes on
//! the wire instead of the script, and no hashing of the script by Redis on
//! every call. A Redis that does not hold a script (restarted, a replica
//! just promoted: the script cache is neither persisted nor replicated)
//! answers `NOSCRIPT`; the call is then repeated once with the script
//! whole (`EVAL`), which also caches it there. Repeating is safe: a
//! `NOSCRIPT` call ran nothing.

use std::borrow::Cow;

use redis::{Arg, Cmd, ErrorKind, FromRedisValue, RedisError, ToRedisArgs};

use super::StoreError;

/// A script as sent: comments and indentation stripped, and its SHA-1.
#[derive(Debug)]
pub(crate) struct Lua {
    source: String,
    sha1: String,
}

impl Lua {
    /// `source` (a script file), compacted.
    pub(crate) fn new(source: &str) -> Self {
        let source = compact(source);
        let sha1 = redis::Script::new(&source).get_hash().to_owned();
        Self { source, sha1 }
    }

    /// A call of this script with `keys` keys (given first, then the
    /// arguments, with [`LuaCall::arg`]).
    pub(crate) fn call(&'static self, keys: usize) -> LuaCall {
        let mut hashed = redis::cmd("EVALSHA");
        hashed.arg(&self.sha1).arg(keys);
        LuaCall { lua: self, hashed }
    }

    /// The `EVAL` of `hashed`, an `EVALSHA` of this script: the script
    /// whole, then the keys and arguments behind the hash (copied).
    pub(crate) fn whole(&self, hashed: &Cmd) -> Cmd {
        let mut eval = redis::cmd("EVAL");
        eval.arg(&self.source);
        // After the command's name and the hash.
        for arg in hashed.args_iter().skip(2) {
            if let Arg::Simple(bytes) = arg {
                eval.arg(bytes);
            }
        }
        eval
    }

    /// The script as sent with `EVAL`.
    #[cfg(test)]
    pub(crate) fn source(&self) -> &str {
        &self.source
    }
}

/// `source` without its `--` comments, indentation and blank lines. (The
/// scripts hold no `--` inside a string.)
fn compact(source: &str) -> String {
    source
        .lines()
        .map(|line| line.split_once("--").map_or(line, |(code, _)| code).trim())
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// One call of a [`Lua`] script: its keys and arguments, built once as
/// the `EVALSHA` that is sent (the `EVAL` only when Redis lacks the script).
#[derive(Clone)]
pub(crate) struct LuaCall {
    lua: &'static Lua,
    /// `EVALSHA <sha1> <keys> <keys…> <arguments…>`.
    hashed: Cmd,
}

impl LuaCall {
    /// Adds a key (the first `keys` of them) or an argument.
    pub(crate) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.hashed.arg(arg);
        self
    }

    /// The command: by hash, or with the script whole (`whole`, copying
    /// the keys and arguments behind it).
    pub(crate) fn command(&self, whole: bool) -> Cow<'_, Cmd> {
        if whole {
            Cow::Owned(self.lua.whole(&self.hashed))
        } else {
            Cow::Borrowed(&self.hashed)
        }
    }

    /// The script and its `EVALSHA`, for a caller that moves the command
    /// into a pipeline (see [`Lua::whole`] for the fallback).
    pub(crate) fn into_parts(self) -> (&'static Lua, Cmd) {
        (self.lua, self.hashed)
    }

    /// Runs the call on `redis`: by hash, and whole if Redis does not hold
    /// the script.
    pub(crate) async fn query<T, C>(&self, redis: &C) -> Result<T, RedisError>
    where
        T: FromRedisValue,
        C: redis::aio::ConnectionLike + Clone + Send,
    {
        by_hash(|whole| {
            let command = self.command(whole);
            let mut redis = redis.clone();
            async move { command.query_async(&mut redis).await }
        })
        .await
    }
}

/// An error that may be Redis answering `NOSCRIPT`.
pub(crate) trait ScriptMissing {
    /// Whether it is.
    fn script_missing(&self) -> bool;
}

impl ScriptMissing for RedisError {
    fn script_missing(&self) -> bool {
        self.kind() == ErrorKind::Server(redis::ServerErrorKind::NoScript)
    }
}

impl ScriptMissing for StoreError {
    fn script_missing(&self) -> bool {
        match self {
            StoreError::Redis(source) => source
                .downcast_ref::<RedisError>()
                .is_some_and(ScriptMissing::script_missing),
            _ => false,
        }
    }
}

/// Runs `attempt` with the scripts by hash (`false`), and once more with
/// them whole (`true`) if Redis answered `NOSCRIPT`: the one fallback every
/// caller shares, whether it sends one call or a pipeline of them.
pub(crate) async fn by_hash<T, E, Fut>(mut attempt: impl FnMut(bool) -> Fut) -> Result<T, E>
where
    E: ScriptMissing,
    Fut: Future<Output = Result<T, E>>,
{
    match attempt(false).await {
        Err(error) if error.script_missing() => attempt(true).await,
        done => done,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    static ECHO: std::sync::LazyLock<Lua> =
        std::sync::LazyLock::new(|| Lua::new("-- echoes\nreturn {KEYS[1], ARGV[1]} -- both\n"));

    #[test]
    fn a_script_is_sent_by_hash_and_whole_only_when_asked() {
        assert_eq!(ECHO.source(), "return {KEYS[1], ARGV[1]}");
        let mut call = ECHO.call(1);
        call.arg("k").arg(7);
        let packed = String::from_utf8(call.command(false).get_packed_command()).unwrap();
        assert!(packed.contains("EVALSHA"), "{packed}");
        assert!(
            packed.contains(&ECHO.sha1) && !packed.contains("return"),
            "{packed}"
        );
        let whole = String::from_utf8(call.command(true).get_packed_command()).unwrap();
        assert!(whole.contains("EVAL\r\n") && whole.contains("return {KEYS[1], ARGV[1]}"));
        assert!(
            whole.ends_with("$1\r\n1\r\n$1\r\nk\r\n$1\r\n7\r\n"),
            "{whole}"
        );
    }

    /// Whether `redis` holds `lua` in its script cache.
    pub(crate) async fn cached(redis: &mut redis::aio::MultiplexedConnection, lua: &Lua) -> bool {
        let known: Vec<bool> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(&lua.sha1)
            .query_async(redis)
            .await
            .unwrap();
        known == [true]
    }

    /// Against the local Redis: a script it has never seen (flushed from
    /// its cache) still runs, and is then known by its hash.
    #[tokio::test]
    async fn a_redis_without_the_script_is_sent_it_whole_once() {
        let url = std::env::var("WISP_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let Ok(client) = redis::Client::open(url.as_str()) else {
            return;
        };
        let Ok(mut redis) = client.get_multiplexed_async_connection().await else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("no Redis at {url}, and CI=true");
            }
            return;
        };
        // A script of this test's own, so flushing nothing else matters.
        let unique = format!("return {{KEYS[1], ARGV[1], '{}'}}", rand::random::<u64>());
        let lua: &'static Lua = Box::leak(Box::new(Lua::new(&unique)));
        assert!(!cached(&mut redis, lua).await);
        let mut call = lua.call(1);
        call.arg("key").arg("value");
        let (key, value, _): (String, String, String) = call.query(&redis).await.unwrap();
        assert_eq!((key.as_str(), value.as_str()), ("key", "value"));
        assert!(cached(&mut redis, lua).await, "cached by the EVAL");
        let again: (String, String, String) = call.query(&redis).await.unwrap();
        assert_eq!(again.1, "value");
    }
}
