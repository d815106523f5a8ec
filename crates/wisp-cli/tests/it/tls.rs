//! `wisp` against a `wss://` server (TLS terminated in front of a real
//! server by a test CA's certificate): register, send and recv with the
//! CA given by `--ca-cert` or `WISP_CA_CERT`; refused with a one-line
//! error and the "unreachable" exit code (3) when the certificate is
//! untrusted, expired or for another name.

use std::path::Path;
use std::process::Command;

use wisp_test_support::{TestCa, TestServer, TlsFront};

use crate::PASSPHRASE;

/// The "unreachable" exit code of the README's table.
const EXIT_UNREACHABLE: i32 = 3;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `wisp` with home `home` against `url`, extra environment `env`.
async fn wisp(home: &Path, url: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
    let home = home.to_owned();
    let url = url.to_owned();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_wisp"))
            .args(&args)
            .env("WISP_HOME", &home)
            .env("WISP_SERVER", &url)
            .env("WISP_PASSPHRASE", PASSPHRASE)
            .env_remove("WISP_CA_CERT")
            .envs(env)
            .output()
            .unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    })
    .await
    .unwrap()
}

fn ok(run: Run, what: &str) -> String {
    assert_eq!(run.code, 0, "{what} failed: {}", run.stderr);
    run.stdout
}

/// Asserts a refusal: exit code 3 and one error line containing `says`.
fn refused(run: &Run, says: &str) {
    assert_eq!(run.code, EXIT_UNREACHABLE, "stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().filter(|l| !l.is_empty()).collect();
    let last = lines.last().copied().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains(says),
        "expected an error line saying {says:?}, got: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_send_and_recv_over_wss_with_the_ca_cert() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    let ca = TestCa::new();
    let ca_file = ca.write_pem(dir.path());
    let ca_arg = ca_file.to_str().unwrap();
    let front = TlsFront::start(server.server.local_addr(), &ca.leaf(&["127.0.0.1"])).await;
    let url = front.url();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    let with_env = [("WISP_CA_CERT", ca_arg)];

    // Alice gives the CA as a flag, Bob in the environment.
    let a = ok(
        wisp(&alice, &url, &[], &["--ca-cert", ca_arg, "register"]).await,
        "alice register",
    );
    let a = a.lines().last().unwrap().to_owned();
    let b = ok(
        wisp(&bob, &url, &with_env, &["register"]).await,
        "bob register",
    );
    let b = b.lines().last().unwrap().to_owned();
    ok(
        wisp(&alice, &url, &with_env, &["friend", "add", &b]).await,
        "friend add",
    );
    ok(
        wisp(&bob, &url, &with_env, &["friend", "accept", &a]).await,
        "friend accept",
    );
    ok(
        wisp(&alice, &url, &with_env, &["send", &b, "hello over tls"]).await,
        "send",
    );
    let received = ok(
        wisp(&bob, &url, &with_env, &["recv", "--json"]).await,
        "recv",
    );
    assert!(received.contains("hello over tls"), "{received}");

    // Without the CA, the same server is refused as untrusted.
    let run = wisp(&bob, &url, &[], &["recv"]).await;
    refused(&run, "not trusted");
    assert!(
        run.stderr.contains("--ca-cert"),
        "says what to do: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_expired_or_misnamed_certificate_exits_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    let addr = server.server.local_addr();
    let ca = TestCa::new();
    let ca_file = ca.write_pem(dir.path());
    let ca_arg = ca_file.to_str().unwrap();
    let home = dir.path().join("carol");

    let valid = TlsFront::start(addr, &ca.leaf(&["127.0.0.1"])).await;
    refused(
        &wisp(&home, &valid.url(), &[], &["register"]).await,
        "not trusted",
    );
    let expired = TlsFront::start(addr, &ca.expired_leaf(&["127.0.0.1"])).await;
    refused(
        &wisp(
            &home,
            &expired.url(),
            &[],
            &["--ca-cert", ca_arg, "register"],
        )
        .await,
        "expired",
    );
    let misnamed = TlsFront::start(addr, &ca.leaf(&["chat.wisp.invalid"])).await;
    refused(
        &wisp(
            &home,
            &misnamed.url(),
            &[],
            &["--ca-cert", ca_arg, "register"],
        )
        .await,
        "not valid for this host name",
    );

    // A CA file that is not one: a clear error (exit 1), before connecting.
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    let run = wisp(
        &home,
        &valid.url(),
        &[("WISP_CA_CERT", bogus.to_str().unwrap())],
        &["register"],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("bad CA certificate") && run.stderr.contains("bogus.pem"),
        "{}",
        run.stderr
    );
    // The identity made along the way was never registered: with the CA
    // it registers now.
    ok(
        wisp(&home, &valid.url(), &[], &["--ca-cert", ca_arg, "register"]).await,
        "register with the CA",
    );
}
