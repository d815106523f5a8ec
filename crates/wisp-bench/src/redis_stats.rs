//! `run --redis`: what the Redis servers behind a cluster did per message.
//! Before and after every measured phase (or `--find-max` step) each
//! server is asked `INFO commandstats` and `INFO cpu`; the differences,
//! divided by the messages delivered in the phase, are the phase's
//! [`RedisUse`].
//!
//! The first server is the one the nodes talk to (the primary): its
//! commands are counted. Commands a Lua script runs are counted by Redis
//! as well as the `EVALSHA` that ran them, so the count is an upper bound
//! on round trips; the per-command breakdown shows which is which. The CPU
//! (`used_cpu_user` + `used_cpu_sys` of the main process, not of forked
//! children) is summed over every server given, replicas included: they
//! apply every write too. The `INFO` calls this tool makes are left out.

use std::collections::BTreeMap;

use anyhow::Context;
use redis::aio::MultiplexedConnection;
use serde::Serialize;

/// The Redis servers of a cluster, connected.
pub struct RedisProbe {
    servers: Vec<(String, MultiplexedConnection)>,
}

impl std::fmt::Debug for RedisProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<&str> = self.servers.iter().map(|(url, _)| url.as_str()).collect();
        f.debug_struct("RedisProbe")
            .field("servers", &urls)
            .finish()
    }
}

/// One reading of every server.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Calls per command on the first server, `INFO` left out.
    calls: BTreeMap<String, u64>,
    /// Main-process CPU seconds, all servers together.
    cpu_s: f64,
}

/// What Redis did per delivered message during a phase (`redis` in a
/// phase's JSON).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RedisUse {
    /// Commands the first server (the primary) ran per message, those
    /// run inside scripts included.
    pub calls_per_msg: f64,
    /// The same, per command name (as `INFO commandstats` names them).
    pub commands_per_msg: BTreeMap<String, f64>,
    /// CPU of every server given, in µs per message.
    pub cpu_us_per_msg: f64,
}

impl RedisProbe {
    /// Connects to each of `urls` (`redis://host:port`) and reads it once,
    /// so a wrong address is an error before any user is registered.
    pub async fn connect(urls: &[String]) -> anyhow::Result<Self> {
        let mut servers = Vec::with_capacity(urls.len());
        for url in urls {
            let client = redis::Client::open(url.as_str())
                .with_context(|| format!("--redis {url} is not a Redis URL"))?;
            let connection = client
                .get_multiplexed_async_connection()
                .await
                .with_context(|| format!("cannot connect to Redis at {url}"))?;
            servers.push((url.clone(), connection));
        }
        let probe = Self { servers };
        probe.read().await?;
        Ok(probe)
    }

    /// Reads every server now.
    pub async fn read(&self) -> anyhow::Result<Reading> {
        let mut reading = Reading::default();
        for (i, (url, connection)) in self.servers.iter().enumerate() {
            let mut connection = connection.clone();
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .arg("cpu")
                .query_async(&mut connection)
                .await
                .with_context(|| format!("INFO from Redis at {url}"))?;
            let (calls, cpu_s) = parse_info(&info);
            if i == 0 {
                reading.calls = calls;
            }
            reading.cpu_s += cpu_s;
        }
        Ok(reading)
    }
}

impl RedisUse {
    /// What happened between `before` and `after`, per message of
    /// `messages` (`None` for none).
    pub fn between(before: &Reading, after: &Reading, messages: u64) -> Option<Self> {
        if messages == 0 {
            return None;
        }
        let per = |n: f64| n / messages as f64;
        let commands_per_msg: BTreeMap<String, f64> = after
            .calls
            .iter()
            .filter_map(|(name, calls)| {
                let ran = calls.saturating_sub(before.calls.get(name).copied().unwrap_or(0));
                (ran > 0).then(|| (name.clone(), per(ran as f64)))
            })
            .collect();
        Some(Self {
            calls_per_msg: commands_per_msg.values().sum(),
            commands_per_msg,
            cpu_us_per_msg: per((after.cpu_s - before.cpu_s).max(0.0) * 1e6),
        })
    }

    /// One line for the summary: calls and CPU, the busiest commands.
    pub fn render(&self) -> String {
        let mut busiest: Vec<(&String, &f64)> = self.commands_per_msg.iter().collect();
        busiest.sort_by(|a, b| b.1.total_cmp(a.1));
        let top: Vec<String> = busiest
            .iter()
            .take(6)
            .map(|(name, n)| format!("{name} {n:.2}"))
            .collect();
        format!(
            "{:.2} commands/msg ({}), CPU {:.1} µs/msg",
            self.calls_per_msg,
            top.join(", "),
            self.cpu_us_per_msg
        )
    }
}

/// The calls per command and the main process's CPU seconds of an `INFO`
/// reply (`cmdstat_get:calls=3,usec=…` and `used_cpu_sys:0.52` lines).
fn parse_info(info: &str) -> (BTreeMap<String, u64>, f64) {
    let mut calls = BTreeMap::new();
    let mut cpu_s = 0.0;
    for line in info.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("cmdstat_") {
            let Some((name, fields)) = rest.split_once(':') else {
                continue;
            };
            if name == "info" {
                continue;
            }
            let count = fields
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(count) = count {
                calls.insert(name.to_owned(), count);
            }
        } else if let Some(value) = line
            .strip_prefix("used_cpu_sys:")
            .or_else(|| line.strip_prefix("used_cpu_user:"))
        {
            cpu_s += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    (calls, cpu_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Commandstats\r\n\
        cmdstat_evalsha:calls=10,usec=50,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_publish:calls=4,usec=8,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_info:calls=7,usec=70,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n\
        \r\n# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n\
        used_cpu_sys_children:9.000000\r\nused_cpu_user_children:9.000000\r\n";

    #[test]
    fn info_gives_calls_per_command_and_main_process_cpu() {
        let (calls, cpu_s) = parse_info(INFO);
        assert_eq!(calls.get("evalsha"), Some(&10));
        assert_eq!(calls.get("publish"), Some(&4));
        assert_eq!(
            calls.get("info"),
            None,
            "this tool's own calls are left out"
        );
        assert!(
            (cpu_s - 3.75).abs() < 1e-9,
            "children's CPU is not the server's: {cpu_s}"
        );
    }

    #[test]
    fn a_phase_counts_only_what_ran_in_it_per_message() {
        let before = Reading {
            calls: BTreeMap::from([("evalsha".to_owned(), 10), ("publish".to_owned(), 4)]),
            cpu_s: 1.0,
        };
        let after = Reading {
            calls: BTreeMap::from([
                ("evalsha".to_owned(), 30),
                ("publish".to_owned(), 4),
                ("get".to_owned(), 5),
            ]),
            cpu_s: 1.001,
        };
        let used = RedisUse::between(&before, &after, 10).unwrap();
        assert_eq!(
            used.commands_per_msg,
            BTreeMap::from([("evalsha".to_owned(), 2.0), ("get".to_owned(), 0.5)])
        );
        assert!((used.calls_per_msg - 2.5).abs() < 1e-9);
        assert!((used.cpu_us_per_msg - 100.0).abs() < 1e-6, "{used:?}");
        assert!(
            used.render()
                .starts_with("2.50 commands/msg (evalsha 2.00, get 0.50)")
        );
        assert_eq!(RedisUse::between(&before, &after, 0), None);
    }
}
