//! The requests the cases send, as the bytes on the wire (all to `Host: app.test`), and bodies
//! built to expose framing mistakes.

/// `GET path` over HTTP/1.1 to `app.test`.
pub(super) fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n")
}

/// `GET path` over HTTP/1.1, saying `Connection: close`.
pub(super) fn get_close(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
}

/// `HEAD path` over HTTP/1.1.
pub(super) fn head(path: &str) -> String {
    format!("HEAD {path} HTTP/1.1\r\nHost: app.test\r\n\r\n")
}

/// `GET path` over HTTP/1.0, asking for keep-alive or not.
pub(super) fn get10(path: &str, keep_alive: bool) -> String {
    let ka = if keep_alive {
        "Connection: keep-alive\r\n"
    } else {
        ""
    };
    format!("GET {path} HTTP/1.0\r\nHost: app.test\r\n{ka}\r\n")
}

/// `POST path` with `body` behind a `Content-Length`.
pub(super) fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A chunked `POST path` head followed by `chunks` (as much of the framed body as the case
/// wants to send with it).
pub(super) fn post_chunked(path: &str, chunks: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}")
}

/// Bytes that look like chunk framing and a response head, so a framing slip shows.
pub(super) fn pattern(n: usize) -> Vec<u8> {
    let unit = b"0\r\n\r\nHTTP/1.1 200 OK\r\n5\r\nhello\r\n";
    (0..n)
        .map(|i| {
            if i % 97 < unit.len() {
                unit[i % 97]
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect()
}
