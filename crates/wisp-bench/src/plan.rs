//! The brief's traffic model, and the bill of machines it implies.
//!
//! Daily volumes and peak rates follow the brief exactly: a share of users
//! is active each day; each active user logs in once (logins spread over
//! the login peak hours) and sends `msgs_per_day` messages to each of
//! `friends` friends (sends packed into the peak hours); every message is
//! read and deleted once. At 100k users that is ≈3 logins/s and ≈1,000
//! sends/s; at 10M, ≈93,000 sends/s.
//!
//! Sizes are estimates from Wisp's schema (documented per constant), and
//! the bill of machines divides peak load by a measured node capacity
//! (`wisp-bench run --json`), keeping the headroom asked for.

use serde::Serialize;

/// The model's inputs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Model {
    /// Registered users.
    pub users: u64,
    /// Share of users active on a day.
    pub dau: f64,
    /// Friends an active user talks to.
    pub friends: u64,
    /// Messages an active user sends each friend a day.
    pub msgs_per_day: u64,
    /// Hours into which the day's messages are packed.
    pub peak_hours: f64,
    /// Hours into which the day's logins are packed.
    pub login_peak_hours: f64,
    /// Friendships an active user has (the cap is 20).
    pub relations_per_user: u64,
}

impl Model {
    /// The brief's figures for `users` registered users.
    pub fn brief(users: u64) -> Self {
        Self {
            users,
            dau: 0.4,
            friends: 5,
            msgs_per_day: 100,
            peak_hours: 6.0,
            login_peak_hours: 4.0,
            relations_per_user: 20,
        }
    }
}

/// One operation's daily volume and peak rate.
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub name: &'static str,
    pub per_day: f64,
    pub peak_per_s: f64,
    pub note: &'static str,
}

/// Bytes a stored item takes, with its indexes (estimates from the schema;
/// PostgreSQL rows carry a 24-byte header plus alignment and index entries).
mod bytes {
    /// An account: id (20), two keys (32 + 32), a signature (64), times,
    /// plus row header and the primary-key index.
    pub(super) const ACCOUNT: f64 = 260.0;
    /// A one-time or fallback key: owner, key id, key (32), signature (64),
    /// plus header and index. A user keeps up to 100.
    pub(super) const ONE_TIME_KEY: f64 = 200.0;
    /// One-time keys kept per user (the server's cap).
    pub(super) const KEYS_PER_USER: f64 = 100.0;
    /// A friendship row (two ids, state, time) plus both lookup indexes.
    pub(super) const RELATION: f64 = 150.0;
    /// An in-flight message in Redis, measured: 100,000 stores with
    /// 200-byte ciphertexts through the mailbox's own put script on Redis
    /// 7.0 grew `used_memory` by 1,106 bytes a message (the hash with
    /// sender and ciphertext, entries in two sorted sets, the retry record,
    /// and the keys' names with their hex ids).
    pub(super) const REDIS_MESSAGE: f64 = 1_106.0;
}

/// What the model implies: operations and storage.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub model: Model,
    pub operations: Vec<Operation>,
    pub sql_rows: u64,
    pub sql_bytes: f64,
    /// Messages in flight if every message of a full hour at peak rate
    /// waited its whole 60 minutes unread.
    pub redis_worst_messages: f64,
    pub redis_worst_bytes: f64,
    pub bill: Option<Bill>,
}

/// Machines for the deployment, from a measured node capacity.
#[derive(Debug, Clone, Serialize)]
pub struct Bill {
    /// Messages per second one node sustained in the measured run.
    pub node_msgs_per_s: f64,
    /// Share of capacity planned to be used at peak.
    pub headroom: f64,
    /// Nodes at the active site (peak load, plus one to lose).
    pub nodes: u64,
    /// PostgreSQL machines: a primary and a synchronous replica at the
    /// active site, a replica at the standby site.
    pub postgres: u64,
    /// Redis shards (primaries) needed for memory or operations.
    pub redis_shards: u64,
    /// Redis machines: each shard's primary and replica at the active site,
    /// a replica at the standby site.
    pub redis_machines: u64,
    /// Nodes kept warm at the standby site.
    pub standby_nodes: u64,
}

/// Assumptions of the bill that are not measured by the run.
#[derive(Debug, Clone, Copy)]
pub struct Machines {
    /// Usable memory of a Redis machine, bytes.
    pub redis_memory: f64,
    /// Redis commands one shard serves per second.
    pub redis_ops_per_s: f64,
    /// Share of capacity planned to be used at peak.
    pub headroom: f64,
}

/// Redis round trips per message: store, fetch, burn.
const REDIS_OPS_PER_MESSAGE: f64 = 3.0;

impl Plan {
    /// Works the model out; with a measured node capacity, the bill too.
    pub fn new(model: Model, node_msgs_per_s: Option<f64>, machines: Machines) -> Self {
        let active = model.users as f64 * model.dau;
        let sends = active * model.friends as f64 * model.msgs_per_day as f64;
        let send_peak = sends / (model.peak_hours * 3600.0);
        let logins = active;
        let relations = active * model.relations_per_user as f64;
        let operations = vec![
            Operation {
                name: "register",
                per_day: model.users as f64 / 365.0,
                peak_per_s: model.users as f64 / 365.0 / 86_400.0,
                note: "all users within the first year",
            },
            Operation {
                name: "login",
                per_day: logins,
                peak_per_s: logins / (model.login_peak_hours * 3600.0),
                note: "each active user once",
            },
            Operation {
                name: "add friend",
                per_day: relations / 365.0,
                peak_per_s: relations / 365.0 / 86_400.0,
                note: "relations built up over a year",
            },
            Operation {
                name: "send",
                per_day: sends,
                peak_per_s: send_peak,
                note: "active × friends × messages",
            },
            Operation {
                name: "read",
                per_day: sends,
                peak_per_s: send_peak,
                note: "every message is read once",
            },
            Operation {
                name: "delete",
                per_day: sends,
                peak_per_s: send_peak,
                note: "burned when read",
            },
        ];
        let keys = model.users as f64 * bytes::KEYS_PER_USER;
        let sql_rows = (model.users as f64 + keys + relations) as u64;
        let sql_bytes = model.users as f64 * bytes::ACCOUNT
            + keys * bytes::ONE_TIME_KEY
            + relations * bytes::RELATION;
        let redis_worst_messages = send_peak * 3600.0;
        let redis_worst_bytes = redis_worst_messages * bytes::REDIS_MESSAGE;
        let bill = node_msgs_per_s.map(|capacity| {
            let usable = capacity * machines.headroom;
            let nodes = (send_peak / usable).ceil().max(1.0) as u64 + 1;
            let by_memory = redis_worst_bytes / machines.redis_memory;
            let by_ops =
                send_peak * REDIS_OPS_PER_MESSAGE / (machines.redis_ops_per_s * machines.headroom);
            let redis_shards = by_memory.max(by_ops).ceil().max(1.0) as u64;
            Bill {
                node_msgs_per_s: capacity,
                headroom: machines.headroom,
                nodes,
                postgres: 3,
                redis_shards,
                redis_machines: redis_shards * 3,
                standby_nodes: nodes,
            }
        });
        Self {
            model,
            operations,
            sql_rows,
            sql_bytes,
            redis_worst_messages,
            redis_worst_bytes,
            bill,
        }
    }

    /// The plan as the table `wisp-bench plan` prints.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let m = &self.model;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Traffic model: {} users, {:.0}% active daily, {} friends each, {} messages a day to each, sends in {} peak hours, logins in {}",
            group(m.users as f64),
            m.dau * 100.0,
            m.friends,
            m.msgs_per_day,
            m.peak_hours,
            m.login_peak_hours
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<12} {:>16} {:>14}  note",
            "operation", "per day", "peak per s"
        );
        for op in &self.operations {
            let _ = writeln!(
                out,
                "{:<12} {:>16} {:>14}  {}",
                op.name,
                group(op.per_day),
                rate(op.peak_per_s),
                op.note
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "PostgreSQL: {} rows (accounts, one-time keys, relations), about {}",
            group(self.sql_rows as f64),
            size(self.sql_bytes)
        );
        let _ = writeln!(
            out,
            "Redis, worst case (a peak hour of messages all unread for 60 min): {} messages, about {}",
            group(self.redis_worst_messages),
            size(self.redis_worst_bytes)
        );
        if let Some(bill) = &self.bill {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "Machines, from a node measured at {} msgs/s, planned at {:.0}% of capacity:",
                rate(bill.node_msgs_per_s),
                bill.headroom * 100.0
            );
            let _ = writeln!(
                out,
                "  wisp-server nodes   {:>4} at the active site (peak, plus one to lose), {} warm at the standby site",
                bill.nodes, bill.standby_nodes
            );
            let _ = writeln!(
                out,
                "  PostgreSQL          {:>4} (primary and synchronous replica at the active site, replica at the standby site)",
                bill.postgres
            );
            let _ = writeln!(
                out,
                "  Redis               {:>4} machines: {} shard(s) × (primary, replica, standby-site replica)",
                bill.redis_machines, bill.redis_shards
            );
        }
        out
    }
}

/// `12345678` as `12,345,678`.
fn group(n: f64) -> String {
    let digits = format!("{:.0}", n.round());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(per_s: f64) -> String {
    if per_s < 0.1 {
        "negligible".to_owned()
    } else if per_s < 100.0 {
        format!("{per_s:.1}")
    } else {
        group(per_s)
    }
}

fn size(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACHINES: Machines = Machines {
        redis_memory: 48.0 * 1024.0 * 1024.0 * 1024.0,
        redis_ops_per_s: 100_000.0,
        headroom: 0.5,
    };

    fn peak(plan: &Plan, name: &str) -> f64 {
        plan.operations
            .iter()
            .find(|op| op.name == name)
            .unwrap()
            .peak_per_s
    }

    #[test]
    fn the_brief_figures_come_out() {
        let small = Plan::new(Model::brief(100_000), None, MACHINES);
        assert!((peak(&small, "login") - 2.78).abs() < 0.01);
        assert!((peak(&small, "send") - 925.9).abs() < 0.1);
        assert_eq!(small.operations[3].per_day, 20_000_000.0);
        let large = Plan::new(Model::brief(10_000_000), None, MACHINES);
        assert!((peak(&large, "send") - 92_592.6).abs() < 0.1);
        assert_eq!(peak(&large, "read"), peak(&large, "send"));
    }

    #[test]
    fn the_bill_scales_with_measured_capacity() {
        let plan = Plan::new(Model::brief(10_000_000), Some(20_000.0), MACHINES);
        let bill = plan.bill.clone().unwrap();
        // 92,593/s at 10,000/s usable per node: 10 nodes, plus one.
        assert_eq!(bill.nodes, 11);
        assert!(bill.redis_shards >= 1);
        assert!(plan.render().contains("wisp-server nodes"));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(group(12_345_678.0), "12,345,678");
        assert_eq!(group(999.0), "999");
        assert_eq!(rate(0.01), "negligible");
        assert_eq!(size(2048.0), "2.0 KiB");
    }
}
