//! The bench's smoke run, in CI: about a hundred users for a few seconds
//! against a real server on its embedded store. It asserts that every
//! acknowledged message arrived exactly once and was burned, never a speed.

use std::process::Command;
use std::time::Duration;

use wisp_bench::run::Swarm;
use wisp_test_support::TestServer;

/// A server on its embedded store in a fresh directory, without abuse
/// limits or a puzzle (as a load test runs it).
async fn server() -> TestServer {
    TestServer::start_with(|config| config.pow_difficulty = 0).await
}

/// `wisp-bench run --json` with 30 users for one second at `rate` against
/// `server`, plus `extra`.
async fn bench_run(server: &TestServer, rate: &str, extra: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wisp-bench"));
    command
        .args(["run", "--server", &server.url(), "--users", "30"])
        .args(["--rate", rate, "--duration", "1", "--json", "--quiet"])
        .args(extra);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_loses_and_duplicates_nothing() {
    let server = server().await;
    let mut swarm = Swarm::start(&[server.url()], &Default::default(), 100, false, true)
        .await
        .unwrap();
    let summary = swarm.phase(300.0, Duration::from_secs(3)).await.unwrap();
    swarm.stop();
    assert!(summary.acked > 300, "{summary:?}");
    assert_eq!(summary.send_errors, 0, "{summary:?}");
    assert_eq!(summary.delivered, summary.acked, "{summary:?}");
    assert!(summary.clean(), "{summary:?}");
    assert_eq!(server.stored().await, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_run_decrypts_every_message() {
    let server = server().await;
    let mut swarm = Swarm::start(&[server.url()], &Default::default(), 12, true, true)
        .await
        .unwrap();
    let summary = swarm.phase(60.0, Duration::from_secs(2)).await.unwrap();
    swarm.stop();
    assert!(summary.acked > 60, "{summary:?}");
    assert_eq!(summary.send_errors, 0, "{summary:?}");
    // Only a message that decrypted and carried its header counts as
    // delivered.
    assert_eq!(summary.delivered, summary.acked, "{summary:?}");
    assert!(summary.clean(), "{summary:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_warms_up_then_measures_and_accounts_for_both() {
    let server = server().await;
    let output = bench_run(&server, "100", &["--warmup", "1"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("warm-up: 1 s at 100 msgs/s"), "{stderr}");
    let run: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // The warm-up's messages are accounted for, apart from the figures.
    assert!(run["warmup"]["acked"].as_u64().unwrap() > 50, "{run}");
    assert_eq!(run["warmup"]["lost"], 0, "{run}");
    assert_eq!(run["warmup"]["duplicated"], 0, "{run}");
    assert!(run["acked"].as_u64().unwrap() > 50, "{run}");
    assert_eq!(run["lost"], 0, "{run}");
    // Without --server-pid only the bench's own CPU is measured.
    assert!(run["server_cpu_us_per_msg"].is_null(), "{run}");
    assert!(run["bench_cpu_us_per_msg"].as_f64().is_some(), "{run}");
    assert_eq!(server.stored().await, 0);
    server.shutdown().await;
}

/// `--server-pid` samples the server (here in the test's own process)
/// during the measured run, reports it in `--json` and as a panel of the
/// report; a process id that is not running is refused before anything
/// is registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_pids_are_sampled_during_the_run_and_a_wrong_one_is_refused() {
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("run.svg");
    let pid = std::process::id().to_string();
    let output = bench_run(
        &server,
        "100",
        &[
            "--warmup",
            "0",
            "--server-pid",
            &format!("{pid},{pid}"),
            "--report",
            svg.to_str().unwrap(),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let run: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let sampled = run["server"].as_array().unwrap();
    assert_eq!(sampled.len(), 2, "{run}");
    let first = &sampled[0];
    assert_eq!(first["pid"].to_string(), pid);
    assert!(first["rss_kib"]["start"].as_u64().unwrap() > 0, "{run}");
    assert!(first["rss_kib"]["peak"].as_u64() >= first["rss_kib"]["end"].as_u64());
    assert!(first["cpu_percent"]["mean"].as_f64().is_some(), "{run}");
    assert!(first["samples"].as_array().unwrap().len() >= 2, "{run}");
    assert_eq!(run["lost"], 0, "{run}");
    // The CPU of the given processes and of the bench, per message.
    assert!(
        run["server_cpu_us_per_msg"].as_f64().unwrap() > 0.0,
        "{run}"
    );
    assert!(
        run["bench_cpu_us_per_msg"].as_f64().unwrap() >= 0.0,
        "{run}"
    );
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.contains("Server resident memory"));

    let wrong = bench_run(&server, "100", &["--server-pid", "999999999"]).await;
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("--server-pid 999999999"), "{stderr}");
    assert!(wrong.stdout.is_empty());
    server.shutdown().await;
}

/// A `--find-max` whose first step cannot hold (thirty users asked for a
/// million messages a second fall far behind) stops there, exits 1, and
/// still prints a plain run's fields at the top of its JSON; `plan` will
/// not take its capacity from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_find_max_that_holds_nothing_says_so_in_json_and_plan_refuses_it() {
    let server = server().await;
    let output = bench_run(&server, "1000000", &["--warmup", "0", "--find-max"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not held"), "{stderr}");
    let run: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(run["held"], false, "{run}");
    assert!(run["max_msgs_per_s"].is_null(), "{run}");
    assert_eq!(run["steps"].as_array().unwrap().len(), 1, "{run}");
    for field in [
        "sent",
        "acked",
        "delivered",
        "lost",
        "duplicated",
        "msgs_per_s",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "users",
        "nodes",
    ] {
        assert!(!run[field].is_null(), "{field} in {run}");
    }
    assert_eq!(run["lost"], 0, "{run}");
    assert_eq!(run["sent"], run["steps"][0]["sent"], "{run}");
    assert!(run.get("timeline").is_none() && run.get("histogram").is_none());

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("find-max.json");
    std::fs::write(&saved, &output.stdout).unwrap();
    let plan = Command::new(env!("CARGO_BIN_EXE_wisp-bench"))
        .args(["plan", "--users", "100000", "--node-capacity"])
        .arg(&saved)
        .output()
        .unwrap();
    assert!(!plan.status.success());
    let stderr = String::from_utf8_lossy(&plan.stderr);
    assert!(stderr.contains("no rate held"), "{stderr}");
    server.shutdown().await;
}

#[test]
fn plan_reproduces_the_brief_at_100k_users() {
    let output = Command::new(env!("CARGO_BIN_EXE_wisp-bench"))
        .args(["plan", "--users", "100000", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let peak = |name: &str| {
        plan["operations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|op| op["name"] == name)
            .unwrap()["peak_per_s"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(peak("login").round(), 3.0);
    assert!((peak("send") - 1000.0).abs() < 100.0);
    assert_eq!(peak("read"), peak("send"));
}

#[test]
fn a_run_against_nothing_says_what_failed() {
    let output = Command::new(env!("CARGO_BIN_EXE_wisp-bench"))
        .args([
            "run",
            "--server",
            "ws://127.0.0.1:9",
            "--users",
            "2",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("wisp-bench: cannot connect to ws://127.0.0.1:9: "),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_wss_trusts_the_given_ca_and_nothing_else() {
    let server = server().await;
    let ca = wisp_test_support::TestCa::new();
    let front =
        wisp_test_support::TlsFront::start(server.server.local_addr(), &ca.leaf(&["127.0.0.1"]))
            .await;
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = ca.write_pem(dir.path());
    let run = |extra: Vec<String>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wisp-bench"));
        command
            .args(["run", "--server", &front.url(), "--users", "10"])
            .args(["--rate", "50", "--duration", "1", "--json", "--quiet"])
            .args(extra);
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };
    let output = run(vec!["--ca-cert".into(), ca_pem.display().to_string()])
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(summary["acked"].as_u64().unwrap() > 20, "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
    // The system's roots do not know the test CA: refused, never plain.
    let output = run(Vec::new()).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "wisp-bench: cannot connect to {}: the server's certificate is not trusted",
            front.url()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    server.shutdown().await;
}

/// Against two nodes of the cluster backend (the local PostgreSQL and
/// Redis), `--redis` reports what Redis did per message: the commands it
/// ran and its CPU. Other tests share that Redis, so only their presence
/// is asserted, never a figure. A Redis that does not answer is refused
/// before anything is registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_run_reports_redis_commands_and_cpu_per_message() {
    let Some(cluster) = wisp_test_support::cluster::ClusterBackend::create().await else {
        return;
    };
    let nodes = [cluster.start_node().await, cluster.start_node().await];
    let servers = format!("{},{}", nodes[0].ws_url(), nodes[1].ws_url());
    let run = |redis: String| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wisp-bench"));
        command
            .args([
                "run", "--server", &servers, "--users", "30", "--rate", "100",
            ])
            .args(["--duration", "1", "--warmup", "0", "--json", "--quiet"])
            .args(["--redis", &redis]);
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };

    let output = run(cluster.redis_url.clone()).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["nodes"], 2, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicated"], 0, "{report}");
    assert_eq!(report["left_stored"], 0, "{report}");
    let redis = &report["redis"];
    assert!(redis["calls_per_msg"].as_f64().unwrap() > 0.0, "{report}");
    assert!(redis["cpu_us_per_msg"].as_f64().unwrap() >= 0.0, "{report}");
    let commands = redis["commands_per_msg"].as_object().unwrap();
    assert!(
        !commands.is_empty() && !commands.contains_key("info"),
        "{report}"
    );

    let refused = run("redis://127.0.0.1:1".into()).await.unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("redis://127.0.0.1:1"), "{stderr}");
    assert!(refused.stdout.is_empty());
    for node in nodes {
        node.shutdown().await;
    }
}
