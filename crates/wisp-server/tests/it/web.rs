//! The web app served by the server (`--web-root`): a browser's page load
//! on `/` gets the app under strict headers, every file too (and the 404),
//! while the WebSocket on `/` and the operator endpoints work as before.

use wisp_test_support::{TestServer, device_at, http_get};

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next().unwrap_or("");
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_is_served_under_strict_headers_beside_the_websocket() {
    let web = tempfile::tempdir().unwrap();
    std::fs::write(
        web.path().join("index.html"),
        "<!doctype html><title>Wisp</title>",
    )
    .unwrap();
    std::fs::create_dir(web.path().join("assets")).unwrap();
    std::fs::write(web.path().join("assets/app-abc.js"), "export {}").unwrap();
    let root = web.path().to_path_buf();
    let server = TestServer::start_with(move |config| config.web_root = Some(root)).await;
    let addr = server.server.local_addr();

    let page = http_get(addr, "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.ends_with("<title>Wisp</title>"), "{page}");
    let script = http_get(addr, "/assets/app-abc.js");
    assert_eq!(
        header(&script, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let missing = http_get(addr, "/assets/../../etc/passwd");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    for response in [&page, &script, &missing] {
        let policy = header(response, "content-security-policy").expect("a CSP");
        assert!(
            policy.contains("script-src 'self' 'wasm-unsafe-eval';"),
            "{policy}"
        );
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert_eq!(header(response, "referrer-policy"), Some("no-referrer"));
        assert_eq!(header(response, "x-content-type-options"), Some("nosniff"));
    }
    // The operator endpoints and the WebSocket are untouched.
    assert!(http_get(addr, "/healthz").starts_with("HTTP/1.1 200"));
    assert!(http_get(addr, "/readyz").starts_with("HTTP/1.1 200"));
    let device = device_at(&server.url()).await;
    device.messenger.client().ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_web_root_no_page_is_served() {
    let server = TestServer::start().await;
    let page = http_get(server.server.local_addr(), "/");
    assert!(!page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(header(&page, "content-security-policy").is_none());
}
