//! TLS session resumption, proved by the other side of each handshake. Listener side:
//! `openssl s_client -sess_out` then `-sess_in` reports `Reused` over TLS 1.3 (tickets) and
//! TLS 1.2 (tickets, and session ids from the cache when the client refuses tickets). Upstream
//! side: `openssl s_server -www`, which closes every connection after its answer and reports
//! whether the handshake resumed a session, sees gatewayd's second and later connections to it
//! resume, over TLS 1.3 and TLS 1.2.

use std::net::SocketAddr;
use std::path::Path;

use meshgate_e2e::harness::tls::{s_client_with, Handshake, OpensslWww};

use super::tls::{blocking, setup, tls_addr, API};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n";

/// One request over a new TLS connection with `flags`, saving the session to `sess_out` or
/// offering the one in `sess_in`. The client waits for the gateway to close (`-ign_eof`), so it
/// has read whatever the gateway sent after the handshake (TLS 1.3 tickets).
async fn session(addr: SocketAddr, flags: &[&str], sess: (&str, &Path)) -> Handshake {
    let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    args.extend([
        "-ign_eof".into(),
        sess.0.into(),
        sess.1.display().to_string(),
    ]);
    blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        s_client_with(addr, Some("api.example.com"), &args, Some(REQUEST))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_resume_sessions_by_ticket_and_by_session_id() {
    let s = setup(&[("api", "api.example.com", 0x01)]).await;
    let gw = s.start(API, "");
    let addr = tls_addr(&gw);
    for (case, flags) in [
        ("TLS 1.3 ticket", &["-tls1_3"][..]),
        ("TLS 1.2 ticket", &["-tls1_2"][..]),
        ("TLS 1.2 session id", &["-tls1_2", "-no_ticket"][..]),
    ] {
        let file = s.dir().join(format!("{}.sess", case.replace(' ', "_")));
        let first = session(addr, flags, ("-sess_out", &file)).await;
        assert!(first.ok && !first.reused, "{case}: {}", first.transcript);
        assert!(
            first.transcript.contains("\"origin\":\"web\""),
            "{case}: the request was answered: {}",
            first.transcript
        );
        let ticket = first.transcript.contains("TLS session ticket:");
        assert_eq!(
            ticket,
            !flags.contains(&"-no_ticket"),
            "{case}: a ticket is issued unless the client refuses tickets: {}",
            first.transcript
        );
        // Several times: the workers share the listener's ticket keys and session cache, so
        // it resumes whichever worker accepts the connection.
        for _ in 0..4 {
            let again = session(addr, flags, ("-sess_in", &file)).await;
            assert!(again.ok, "{case}: {}", again.transcript);
            assert!(again.reused, "{case}: not resumed: {}", again.transcript);
            assert_eq!(again.protocol, first.protocol, "{case}");
            assert!(
                again.transcript.contains("\"origin\":\"web\""),
                "{case}: {}",
                again.transcript
            );
        }
    }
}

/// `New` or `Reused`: what `openssl s_server -www`'s page says of the handshake that carried
/// the request, and the protocol (`TLSv1.3`).
fn upstream_handshake(page: &str) -> (String, String) {
    let line = page
        .lines()
        .find(|l| l.starts_with("New, ") || l.starts_with("Reused, "))
        .unwrap_or_else(|| panic!("no handshake line in: {page}"));
    let mut it = line.split(", ");
    (
        it.next().unwrap_or("").to_string(),
        it.next().unwrap_or("").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_resume_the_services_tls_session() {
    let s = setup(&[
        ("api", "api.example.com", 0x01),
        ("origin", "origin.test", 0x31),
    ])
    .await;
    let (cert, key) = (s.dir().join("origin.pem"), s.dir().join("origin.key"));
    let up13 = OpensslWww::start(&cert, &key, &["-tls1_3"]);
    let up12 = OpensslWww::start(&cert, &key, &["-tls1_2"]);
    let svc = |name: &str, addr: SocketAddr| {
        format!("[services.{name}]\nendpoints = [\"{addr}\"]\ntls = {{ ca_file = \"ca.pem\", server_name = \"origin.test\" }}\n\n[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}/\"\nbackends = [{{ name = \"{name}\", weight = 1 }}]\n\n")
    };
    let body = [svc("up13", up13.addr), svc("up12", up12.addr)].concat();
    let gw = s.start(API, &body);
    let http = super::support::client();
    for (name, protocol) in [("up13", "TLSv1.3"), ("up12", "TLSv1.2")] {
        let mut seen = Vec::new();
        // The upstream closes after each answer: every request is a new upstream connection
        // (from either worker's pool), and a new handshake.
        for i in 0..4 {
            let r = http
                .get(gw.url(&format!("/{name}/{i}")))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let page = r.text().await.unwrap();
            assert_eq!(status, 200, "{name}: {page}");
            let (kind, p) = upstream_handshake(&page);
            assert_eq!(p, protocol, "{name}: {page}");
            seen.push(kind);
        }
        assert_eq!(
            seen,
            ["New", "Reused", "Reused", "Reused"],
            "{name}: the first handshake is full, the later ones resume"
        );
    }
}
