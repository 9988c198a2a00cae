//! Raw upstream endpoints that misbehave on purpose, and counters tests wait on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use meshgate_e2e::harness::eventually::eventually;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// What a [`Sink`] does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// Reads everything and never answers.
    ReadForever,
    /// Reads a request head, then resets the connection (RST) without answering.
    ResetAfterHead,
    /// Answers a head announcing 100,000 bytes (content-length, or chunked when true) and
    /// 1,000 of them, then closes the connection: an upstream dying mid-response. (A close,
    /// not a reset: a reset may throw away the bytes still in the gateway's socket buffer.)
    DieMidResponse { chunked: bool },
}

/// A loopback endpoint that never sends a response.
pub struct Sink {
    pub addr: SocketAddr,
    /// Request heads received (connections that sent `\r\n\r\n`).
    heads: Arc<AtomicU64>,
    /// Bytes received after a head.
    body_bytes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    pub async fn start(kind: SinkKind) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(AtomicU64::new(0));
        let body_bytes = Arc::new(AtomicU64::new(0));
        let (h, b) = (heads.clone(), body_bytes.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut io, _)) = listener.accept().await {
                let (h, b) = (h.clone(), b.clone());
                conns.spawn(async move {
                    let mut seen = Vec::new();
                    let mut in_body = false;
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match io.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if in_body {
                            b.fetch_add(n as u64, Relaxed);
                            continue;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        in_body = true;
                        b.fetch_add((seen.len() - end - 4) as u64, Relaxed);
                        h.fetch_add(1, Relaxed);
                        match kind {
                            SinkKind::ReadForever => {}
                            SinkKind::ResetAfterHead => return reset(io),
                            SinkKind::DieMidResponse { chunked } => {
                                let head: &[u8] = if chunked {
                                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3e8\r\n"
                                } else {
                                    b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n"
                                };
                                let _ = io.write_all(head).await;
                                let _ = io.write_all(&[b'd'; 1000]).await;
                                let _ = io.flush().await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            heads,
            body_bytes,
            task,
        }
    }

    pub fn heads(&self) -> u64 {
        self.heads.load(Relaxed)
    }

    pub fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Relaxed)
    }

    /// Waits until more than `before` request heads arrived.
    pub async fn wait_heads(&self, before: u64) {
        eventually("the sink received a request head", || async {
            (self.heads() > before).then_some(())
        })
        .await;
    }

    /// Waits until more than `before` body bytes arrived: the upload is under way.
    pub async fn wait_body(&self, before: u64) {
        eventually("the sink received body bytes", || async {
            (self.body_bytes() > before).then_some(())
        })
        .await;
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Closes `io` with a reset (RST) instead of an orderly FIN.
pub fn reset(io: tokio::net::TcpStream) {
    let _ = socket2::SockRef::from(&io).set_linger(Some(std::time::Duration::ZERO));
    drop(io);
}

/// A loopback port with nothing listening.
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Debian's nginx as the upstream, as users run it: one process (`master_process off`, so its
/// PID is all there is to kill) serving `return 200` with a 13-byte body on loopback ports (the
/// conformance suite's flow-control case needs at least five). The conformance
/// suite's ejections were first seen with nginx behind the gateway; the harness origins do not
/// reproduce them.
pub struct Nginx {
    pub addrs: Vec<SocketAddr>,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Two ports.
    pub async fn start() -> Self {
        Self::start_on(2).await
    }

    /// `ports` ports.
    pub async fn start_on(ports: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addrs: Vec<SocketAddr> = (0..ports).map(|_| closed_port()).collect();
        let servers: String = addrs
            .iter()
            .map(|a| {
                format!(
                    "  server {{ listen {a}; location / {{ return 200 \"hello, world\\n\"; }} }}\n"
                )
            })
            .collect();
        let p = dir.path().display();
        let conf = format!(
            "master_process off;\ndaemon off;\nworker_processes 1;\nerror_log {p}/error.log;\npid {p}/nginx.pid;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n{servers}}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let bin = ["nginx", "/usr/sbin/nginx"]
            .into_iter()
            .find(|b| {
                std::process::Command::new(b)
                    .arg("-v")
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok()
            })
            .expect("nginx is installed (tests/run.sh installs Debian's nginx-light)");
        let child = std::process::Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let n = Self {
            addrs,
            child,
            _dir: dir,
        };
        for &a in &n.addrs {
            eventually(&format!("nginx listens on {a}"), || async {
                tokio::net::TcpStream::connect(a).await.ok().map(|_| ())
            })
            .await;
        }
        n
    }
}

impl Nginx {
    /// `kill -9`: established connections are reset, new ones refused.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill9();
    }
}
