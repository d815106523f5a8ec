//! The `wisp-server` binary as an operator runs it: defaults to ./wisp-data,
//! answers /healthz, /readyz and /metrics, and shuts down gracefully on
//! SIGTERM, saying goodbye to connected clients.

use std::process::Command;
use std::time::{Duration, Instant};

use wisp_test_support::{RawConnection, Received, http_get};

use crate::WISP_SERVER;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_with_defaults_and_stops_gracefully_on_sigterm() {
    let cwd = tempfile::tempdir().unwrap();
    let (mut child, addr, logs) = WISP_SERVER.spawn(cwd.path(), &[]);
    assert!(cwd.path().join("wisp-data/wisp.sqlite3").exists());

    let health = tokio::task::spawn_blocking(move || {
        (
            http_get(addr, "/healthz"),
            http_get(addr, "/readyz"),
            http_get(addr, "/metrics"),
        )
    })
    .await
    .unwrap();
    assert!(health.0.starts_with("HTTP/1.1 200"), "{}", health.0);
    assert!(health.1.starts_with("HTTP/1.1 200"), "{}", health.1);
    assert!(health.2.starts_with("HTTP/1.1 200"), "{}", health.2);

    let mut client = RawConnection::open_with_hello(&format!("ws://{addr}")).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    match client.receive().await {
        Received::Closed { code, reason } => {
            assert_eq!(code, 1001);
            assert_eq!(reason, "server shutting down");
        }
        other => panic!("expected a going-away close, got {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "server exits within 20 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    // Everything the reader thread forwards, up to the end of stderr (it
    // may still be catching up with the exit).
    let mut logged = Vec::new();
    while let Ok(line) = logs.recv_timeout(Duration::from_secs(10)) {
        logged.push(line);
    }
    assert!(
        logged.iter().any(|l| l.contains("wisp-server stopped")),
        "{logged:?}"
    );
}

#[test]
fn help_names_every_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_wisp-server"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--listen",
        "WISP_LISTEN",
        "--data-dir",
        "WISP_DATA_DIR",
        "--config",
        "--pow-difficulty",
        "--max-sessions-per-user",
        "WISP_MAX_SESSIONS_PER_USER",
        "--register-limit",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}");
    }
}

#[test]
fn a_bad_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wisp.toml");
    std::fs::write(&file, "pow_dificulty = 3\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wisp-server"))
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("pow_dificulty"), "{stderr}");
}
