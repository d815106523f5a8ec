//! The web app's files (`--web-root`): read once at start into memory, and
//! served with the headers a page holding a user's keys needs.
//!
//! Only the files found at start are served, by exact path: no path from a
//! request ever reaches the file system. Every response (the 404 too)
//! carries a Content-Security-Policy that allows scripts, styles, workers
//! and connections from this origin only (and WebAssembly compilation, the
//! one thing `'wasm-unsafe-eval'` allows), no inline script, no framing,
//! no referrer. A plain browser GET on `/` gets `index.html`; a WebSocket
//! upgrade on `/` goes on to the gateway, as before.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// What the web root may hold in all: far more than an app's bundle.
const MAX_TOTAL_BYTES: u64 = 64 << 20;
/// Files the web root may hold.
const MAX_FILES: usize = 1024;

/// The policy every page and file is served under.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; \
     script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data: blob:; \
     connect-src 'self'; worker-src 'self'; manifest-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Why the web root could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebRootError {
    /// The directory or a file in it could not be read.
    #[error("cannot read the web app in {}: {source}", .path.display())]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The directory has no `index.html`.
    #[error("{} has no index.html: build the web app first (scripts/web-build.sh)", .0.display())]
    NoIndex(PathBuf),
    /// Larger than [`MAX_TOTAL_BYTES`] or [`MAX_FILES`].
    #[error("{} holds more than {MAX_FILES} files or {} MiB: is it the web app's dist directory?", .0.display(), MAX_TOTAL_BYTES >> 20)]
    TooLarge(PathBuf),
}

/// One file, ready to send.
#[derive(Debug)]
struct File {
    body: Bytes,
    content_type: &'static str,
    /// Vite's `assets/` carry a content hash in their names.
    immutable: bool,
}

/// The web app, by URL path (`/index.html`, `/assets/app-1a2b.js`).
#[derive(Debug, Default)]
pub(crate) struct WebRoot {
    files: HashMap<String, File>,
}

impl WebRoot {
    /// Reads every file under `dir`.
    pub(crate) fn load(dir: &Path) -> Result<Self, WebRootError> {
        let mut root = Self::default();
        let mut total = 0u64;
        let mut pending = vec![(dir.to_path_buf(), String::new())];
        while let Some((path, url)) = pending.pop() {
            let read = |source| WebRootError::Read {
                path: path.clone(),
                source,
            };
            for entry in std::fs::read_dir(&path).map_err(read)? {
                let entry = entry.map_err(read)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let kind = entry.file_type().map_err(read)?;
                let child_url = format!("{url}/{name}");
                if kind.is_dir() {
                    pending.push((entry.path(), child_url));
                } else if kind.is_file() {
                    let body =
                        std::fs::read(entry.path()).map_err(|source| WebRootError::Read {
                            path: entry.path(),
                            source,
                        })?;
                    total += body.len() as u64;
                    if total > MAX_TOTAL_BYTES || root.files.len() >= MAX_FILES {
                        return Err(WebRootError::TooLarge(dir.to_path_buf()));
                    }
                    root.files.insert(
                        child_url.clone(),
                        File {
                            body: Bytes::from(body),
                            content_type: content_type(&name),
                            immutable: child_url.starts_with("/assets/"),
                        },
                    );
                }
            }
        }
        if !root.files.contains_key("/index.html") {
            return Err(WebRootError::NoIndex(dir.to_path_buf()));
        }
        Ok(root)
    }

    /// The response for `path` (`/` is `/index.html`).
    fn respond(&self, path: &str) -> Response {
        let path = if path == "/" { "/index.html" } else { path };
        let mut response = match self.files.get(path) {
            Some(file) => {
                let mut response = Response::new(Body::from(file.body.clone()));
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(file.content_type),
                );
                let cache = if file.immutable {
                    "public, max-age=31536000, immutable"
                } else {
                    "no-cache"
                };
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
                response
            }
            None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
        };
        secure(response.headers_mut());
        response
    }
}

/// The headers of every response from the web root.
fn secure(headers: &mut axum::http::HeaderMap) {
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("referrer-policy", "no-referrer"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        (
            "permissions-policy",
            "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map_or("", |(_, ext)| ext);
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Whether `request` asks for a WebSocket.
fn is_upgrade(request: &Request) -> bool {
    request
        .headers()
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// In front of the gateway on `/`: a browser's page load gets the app, a
/// WebSocket upgrade goes on.
pub(crate) async fn page_or_upgrade(
    State(web): State<Arc<WebRoot>>,
    request: Request,
    next: Next,
) -> Response {
    if is_upgrade(&request) || !matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    web.respond("/")
}

/// Every other path: a file of the app, or 404.
pub(crate) async fn file(State(web): State<Arc<WebRoot>>, request: Request) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
        secure(response.headers_mut());
        return response;
    }
    web.respond(request.uri().path())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, WebRoot) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<!doctype html>").unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("assets/app-1.js"), "x").unwrap();
        std::fs::write(dir.path().join("assets/core-1.wasm"), b"\0asm").unwrap();
        let root = WebRoot::load(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn files_are_served_by_exact_path_with_their_type_and_the_policy() {
        let (_dir, root) = root();
        let page = root.respond("/");
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(page.headers()["cache-control"], "no-cache");
        assert_eq!(
            page.headers()["content-security-policy"],
            CONTENT_SECURITY_POLICY
        );
        let wasm = root.respond("/assets/core-1.wasm");
        assert_eq!(wasm.headers()["content-type"], "application/wasm");
        assert!(
            wasm.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        for path in [
            "/../index.html",
            "/assets/../index.html",
            "/etc/passwd",
            "/assets",
        ] {
            let missing = root.respond(path);
            assert_eq!(missing.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(missing.headers()["x-content-type-options"], "nosniff");
        }
    }

    #[test]
    fn a_directory_without_index_html_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = WebRoot::load(dir.path()).unwrap_err();
        assert!(
            error.to_string().contains("build the web app first"),
            "{error}"
        );
        let error = WebRoot::load(&dir.path().join("nowhere")).unwrap_err();
        assert!(matches!(error, WebRootError::Read { .. }), "{error}");
    }
}
