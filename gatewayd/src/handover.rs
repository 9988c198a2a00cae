//! Zero-downtime restart and upgrade: the running gateway hands its listening sockets (every
//! proxy listener's, one per worker, and the admin API's) to its successor over a unix socket
//! with `SCM_RIGHTS`, as HAProxy's `-x` and Envoy's hot restart do. The sockets stay open the
//! whole time, so connections waiting in their accept queues are accepted by the successor
//! instead of being reset when the old process closes its copies.
//!
//! The conversation on `[gateway] handover_socket` (`SOCK_SEQPACKET`, one JSON message each):
//! 1. successor → running: `{"hello":1,"pid":P}`;
//! 2. running → successor: `{"sockets":[…],"last":bool}` with the matching descriptors
//!    attached, [`FDS_PER_MESSAGE`] at most per message, until `last`;
//! 3. the successor builds its whole state on them, starts serving, then sends
//!    `{"ready":true,"pid":P}`;
//! 4. running → successor: `{"draining":true}`; the running gateway stops accepting (admin API
//!    first), drains in-flight requests and keep-alive connections and exits 0.
//!
//! A successor that closes the connection before step 3 (a bad config, a crash, a socket it
//! cannot use) changes nothing: the running gateway keeps serving and waits for the next one.
//! Only the socket file's owner can connect (mode 0600).

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};
use serde::{Deserialize, Serialize};

/// Descriptors attached to one message (the kernel allows 253).
pub const FDS_PER_MESSAGE: usize = 32;

/// How long a successor waits for each answer of the running gateway.
const SUCCESSOR_PATIENCE: Duration = Duration::from_secs(10);

/// How long the running gateway waits for a successor to become ready (it may load
/// certificates, a discovery cache, policies) before giving up on it.
const READY_PATIENCE: Duration = Duration::from_secs(120);

/// Largest message of the conversation.
const MAX_MESSAGE: usize = 64 * 1024;

/// What a handed-over socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A proxy listener's socket (one per worker).
    Proxy,
    /// The admin API's socket.
    Admin,
}

/// Describes one handed-over socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketMeta {
    /// Proxy or admin.
    pub role: Role,
    /// The listener's name (`admin` for the admin API).
    pub name: String,
    /// The address as configured (port 0 when the OS picked it).
    pub configured: SocketAddr,
    /// The address as bound.
    pub bound: SocketAddr,
}

/// Why a hand-over did not happen.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// The socket could not be created, reached, read or written.
    #[error("hand-over socket {path}: {source}")]
    Io {
        /// The hand-over socket's path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The other side said something unexpected or hung up.
    #[error("hand-over socket {path}: {reason}")]
    Protocol {
        /// The hand-over socket's path.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// What the running gateway offers a successor: a duplicate of every listening socket.
#[derive(Debug, Default)]
pub struct Offer {
    sockets: Vec<(SocketMeta, OwnedFd)>,
}

/// Sockets inherited from the predecessor, taken listener by listener while the new gateway
/// binds; the ones nobody takes are closed when this is dropped.
#[derive(Debug, Default)]
pub struct Inheritance {
    sockets: Vec<(SocketMeta, OwnedFd)>,
}

/// The successor's end of the conversation, kept until it serves.
#[derive(Debug)]
pub struct Successor {
    conn: OwnedFd,
    path: PathBuf,
}

/// The running gateway's end: the offer, until a successor took it or the gateway stops.
#[derive(Debug, Clone)]
pub struct OfferSlot(Arc<Mutex<Option<Offer>>>);

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Hello {
    hello: u32,
    pid: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sockets {
    sockets: Vec<SocketMeta>,
    last: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ready {
    ready: bool,
    pid: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Draining {
    draining: bool,
}

// === impl Offer ===

impl Offer {
    /// Adds a duplicate of `socket` (the gateway keeps using its own copy).
    pub fn add(&mut self, meta: SocketMeta, socket: &impl AsFd) -> std::io::Result<()> {
        let fd = socket.as_fd().try_clone_to_owned()?;
        self.sockets.push((meta, fd));
        Ok(())
    }

    /// Number of sockets offered.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// True when nothing is offered.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }
}

// === impl OfferSlot ===

impl OfferSlot {
    /// Withdraws the offer (at shutdown): its duplicates close, so a drain that stops
    /// accepting really closes the listeners.
    pub fn withdraw(&self) {
        drop(self.0.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

// === impl Inheritance ===

impl Inheritance {
    /// Number of sockets not taken yet.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// True when every socket was taken (or none was inherited).
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// The proxy sockets of listener `name` on `configured`: the predecessor's listener of the
    /// same name and configured address, else (a fixed port) the one bound to that address.
    /// Empty when none matches: the caller binds fresh.
    pub fn take_proxy(&mut self, name: &str, configured: SocketAddr) -> Vec<std::net::TcpListener> {
        let exact = |m: &SocketMeta| m.name == name && m.configured == configured;
        let by_addr = |m: &SocketMeta| {
            configured.port() != 0 && (m.configured == configured || m.bound == configured)
        };
        let mut taken = self.take(Role::Proxy, exact);
        if taken.is_empty() {
            taken = self.take(Role::Proxy, by_addr);
        }
        taken
    }

    /// The admin socket when the predecessor's was configured (or bound) as `configured`.
    pub fn take_admin(&mut self, configured: SocketAddr) -> Option<std::net::TcpListener> {
        let fits = |m: &SocketMeta| {
            m.configured == configured || (configured.port() != 0 && m.bound == configured)
        };
        self.take(Role::Admin, fits).into_iter().next()
    }

    fn take(
        &mut self,
        role: Role,
        fits: impl Fn(&SocketMeta) -> bool,
    ) -> Vec<std::net::TcpListener> {
        let (taken, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sockets)
            .into_iter()
            .partition(|(m, _)| m.role == role && fits(m));
        self.sockets = kept;
        taken
            .into_iter()
            .map(|(_, fd)| std::net::TcpListener::from(fd))
            .collect()
    }

    /// Names and addresses of the sockets nobody took (closed when this is dropped).
    pub fn leftovers(&self) -> Vec<String> {
        self.sockets
            .iter()
            .map(|(m, _)| format!("{} {}", m.name, m.bound))
            .collect()
    }
}

// === impl Successor ===

impl Successor {
    /// Tells the predecessor this gateway serves, and waits for it to confirm it stops
    /// accepting. Blocking.
    pub fn ready(self) -> Result<(), HandoverError> {
        let ready = Ready {
            ready: true,
            pid: std::process::id(),
        };
        send(&self.conn, &self.path, &ready, &[])?;
        let (msg, _) = recv::<Draining>(&self.conn, &self.path)?;
        if !msg.draining {
            return Err(protocol(
                &self.path,
                "predecessor did not confirm the drain",
            ));
        }
        Ok(())
    }
}

/// Connects to the running gateway on `path` and receives its sockets. Blocking. Nothing
/// changes for the running gateway until [`Successor::ready`].
pub fn take_over(path: &Path) -> Result<(Inheritance, Successor), HandoverError> {
    let io = |source| HandoverError::Io {
        path: path.display().to_string(),
        source,
    };
    let conn = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| io(e.into()))?;
    let (addr, _dir) = unix_addr(path).map_err(io)?;
    rustix::net::connect(&conn, &addr).map_err(|e| io(e.into()))?;
    for which in [
        rustix::net::sockopt::Timeout::Recv,
        rustix::net::sockopt::Timeout::Send,
    ] {
        rustix::net::sockopt::set_socket_timeout(&conn, which, Some(SUCCESSOR_PATIENCE))
            .map_err(|e| io(e.into()))?;
    }
    let hello = Hello {
        hello: 1,
        pid: std::process::id(),
    };
    send(&conn, path, &hello, &[])?;
    let mut inheritance = Inheritance::default();
    loop {
        let (msg, fds) = recv::<Sockets>(&conn, path)?;
        if msg.sockets.len() != fds.len() {
            return Err(protocol(
                path,
                format!(
                    "{} sockets described, {} received",
                    msg.sockets.len(),
                    fds.len()
                ),
            ));
        }
        inheritance.sockets.extend(msg.sockets.into_iter().zip(fds));
        if msg.last {
            break;
        }
    }
    let successor = Successor {
        conn,
        path: path.to_path_buf(),
    };
    Ok((inheritance, successor))
}

/// Listens on `path` (replacing whatever socket file is there: a predecessor's, or a stale
/// one) and serves the conversation to successors on a thread of its own, one at a time. The
/// returned receiver yields the successor's pid once one is ready; the offer is gone then.
pub fn serve(
    path: &Path,
    offer: Offer,
) -> Result<(OfferSlot, tokio::sync::oneshot::Receiver<u32>), HandoverError> {
    let listener = bind(path)?;
    let slot = OfferSlot(Arc::new(Mutex::new(Some(offer))));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread_slot = slot.clone();
    let thread_path = path.to_path_buf();
    std::thread::Builder::new()
        .name("handover".into())
        .spawn(move || accept_loop(&listener, &thread_path, &thread_slot, tx))
        .map_err(|source| HandoverError::Io {
            path: path.display().to_string(),
            source,
        })?;
    Ok((slot, rx))
}

/// Binds a temporary name next to `path`, then renames it over `path`: a successor always
/// finds a socket there, the predecessor's until this one replaces it.
fn bind(path: &Path) -> Result<OwnedFd, HandoverError> {
    let io = |source| HandoverError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| io(e.into()))?;
    let (addr, _dir) = unix_addr(&tmp).map_err(io)?;
    rustix::net::bind(&fd, &addr).map_err(|e| io(e.into()))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    rustix::net::listen(&fd, 4).map_err(|e| io(e.into()))?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(fd)
}

/// Longest path a `sockaddr_un` holds (108 bytes, the last one a NUL).
const MAX_SUN_PATH: usize = 107;

/// The address of the unix socket at `path`. A path longer than `sockaddr_un` holds (a deep
/// install prefix) is reached through its directory instead: `/proc/self/fd/N/NAME`, with the
/// directory open as `N` for as long as the returned handle lives (bind and connect only).
fn unix_addr(path: &Path) -> std::io::Result<(SocketAddrUnix, Option<std::fs::File>)> {
    if path.as_os_str().len() <= MAX_SUN_PATH {
        return Ok((SocketAddrUnix::new(path)?, None));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a socket file path",
        ));
    };
    let dir = std::fs::File::open(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })?;
    let mut short = std::ffi::OsString::from(format!(
        "/proc/self/fd/{}/",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    ));
    short.push(name);
    Ok((SocketAddrUnix::new(Path::new(&short))?, Some(dir)))
}

fn accept_loop(
    listener: &OwnedFd,
    path: &Path,
    slot: &OfferSlot,
    tx: tokio::sync::oneshot::Sender<u32>,
) {
    loop {
        let conn = match rustix::net::accept_with(listener, SocketFlags::CLOEXEC) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "hand-over accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let mut guard = slot.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(offer) = guard.as_ref() else {
            // Stopping: nothing to offer any more.
            return;
        };
        match converse(&conn, path, offer) {
            Ok(pid) => {
                tracing::info!(
                    successor = pid,
                    sockets = offer.len(),
                    "successor ready: handing over"
                );
                guard.take();
                drop(guard);
                // Under systemd the main process names its successor (NotifyAccess=main
                // suffices), before the successor learns it may go on.
                notify_systemd(&format!("MAINPID={pid}"));
                // Answered after the offer is gone, so the successor's confirmation means
                // this process holds no more than its own copies.
                let _ = send(&conn, path, &Draining { draining: true }, &[]);
                let _ = tx.send(pid);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "hand-over abandoned; still serving");
            }
        }
    }
}

/// One successor: hello, the sockets, then its ready (or its giving up).
fn converse(conn: &OwnedFd, path: &Path, offer: &Offer) -> Result<u32, HandoverError> {
    let io = |source| HandoverError::Io {
        path: path.display().to_string(),
        source,
    };
    for (which, patience) in [
        (rustix::net::sockopt::Timeout::Recv, SUCCESSOR_PATIENCE),
        (rustix::net::sockopt::Timeout::Send, SUCCESSOR_PATIENCE),
    ] {
        rustix::net::sockopt::set_socket_timeout(conn, which, Some(patience))
            .map_err(|e| io(e.into()))?;
    }
    let (hello, _) = recv::<Hello>(conn, path)?;
    if hello.hello != 1 {
        return Err(protocol(path, format!("unknown version {}", hello.hello)));
    }
    tracing::info!(
        successor = hello.pid,
        sockets = offer.len(),
        "successor connected: sending sockets"
    );
    let chunks: Vec<_> = offer.sockets.chunks(FDS_PER_MESSAGE).collect();
    if chunks.is_empty() {
        send(
            conn,
            path,
            &Sockets {
                sockets: vec![],
                last: true,
            },
            &[],
        )?;
    }
    for (i, chunk) in chunks.iter().enumerate() {
        let msg = Sockets {
            sockets: chunk.iter().map(|(m, _)| m.clone()).collect(),
            last: i + 1 == chunks.len(),
        };
        let fds: Vec<_> = chunk.iter().map(|(_, fd)| fd.as_fd()).collect();
        send(conn, path, &msg, &fds)?;
    }
    rustix::net::sockopt::set_socket_timeout(
        conn,
        rustix::net::sockopt::Timeout::Recv,
        Some(READY_PATIENCE),
    )
    .map_err(|e| io(e.into()))?;
    let (ready, _) = recv::<Ready>(conn, path)?;
    if !ready.ready {
        return Err(protocol(path, "successor not ready"));
    }
    Ok(ready.pid)
}

fn send<T: Serialize>(
    conn: &OwnedFd,
    path: &Path,
    msg: &T,
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> Result<(), HandoverError> {
    let body = serde_json::to_vec(msg).map_err(|e| protocol(path, e.to_string()))?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(protocol(path, "too many descriptors for one message"));
    }
    rustix::net::sendmsg(
        conn,
        &[IoSlice::new(&body)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map_err(|e| HandoverError::Io {
        path: path.display().to_string(),
        source: e.into(),
    })?;
    Ok(())
}

fn recv<T: for<'de> Deserialize<'de>>(
    conn: &OwnedFd,
    path: &Path,
) -> Result<(T, Vec<OwnedFd>), HandoverError> {
    let mut body = vec![0u8; MAX_MESSAGE];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        conn,
        &mut [IoSliceMut::new(&mut body)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| HandoverError::Io {
        path: path.display().to_string(),
        source: e.into(),
    })?;
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    if got.bytes == 0 {
        return Err(protocol(path, "the other side hung up"));
    }
    if got.flags.contains(rustix::net::ReturnFlags::TRUNC)
        || got.flags.contains(rustix::net::ReturnFlags::CTRUNC)
    {
        return Err(protocol(path, "message truncated"));
    }
    let msg = serde_json::from_slice(&body[..got.bytes])
        .map_err(|e| protocol(path, format!("unexpected message: {e}")))?;
    Ok((msg, fds))
}

/// Sends `state` (`READY=1`, `MAINPID=…`, `STOPPING=1`) to systemd when it started this
/// process with `Type=notify` (`$NOTIFY_SOCKET` set); nothing otherwise. At a hand-over the
/// main process names its successor with `MAINPID=`, so the default `NotifyAccess=main` is
/// enough.
pub fn notify_systemd(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = target.as_encoded_bytes();
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
        }
        None => sock.send_to(state.as_bytes(), Path::new(&target)),
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

fn protocol(path: &Path, reason: impl Into<String>) -> HandoverError {
    HandoverError::Protocol {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn meta(role: Role, name: &str, configured: &str, bound: &str) -> SocketMeta {
        SocketMeta {
            role,
            name: name.into(),
            configured: configured.parse().unwrap(),
            bound: bound.parse().unwrap(),
        }
    }

    /// A real conversation between two threads: every socket arrives, matched by listener,
    /// and still accepts the connection that waited in its queue during the hand-over.
    #[test]
    fn sockets_cross_with_their_accept_queues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handover.sock");
        let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (pa, aa) = (proxy.local_addr().unwrap(), admin.local_addr().unwrap());
        let mut offer = Offer::default();
        offer
            .add(
                meta(Role::Proxy, "web", "127.0.0.1:0", &pa.to_string()),
                &proxy,
            )
            .unwrap();
        offer
            .add(
                meta(Role::Admin, "admin", "127.0.0.1:0", &aa.to_string()),
                &admin,
            )
            .unwrap();
        let (_slot, ready) = serve(&path, offer).unwrap();
        // A client waiting in the queue while the sockets change hands.
        let waiting = std::net::TcpStream::connect(pa).unwrap();
        drop(proxy);
        let (mut inh, successor) = take_over(&path).unwrap();
        assert_eq!(inh.len(), 2);
        assert!(inh
            .take_proxy("other", "127.0.0.1:0".parse().unwrap())
            .is_empty());
        let got = inh.take_proxy("web", "127.0.0.1:0".parse().unwrap());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].local_addr().unwrap(), pa);
        let (_conn, peer) = got[0].accept().unwrap();
        assert_eq!(peer, waiting.local_addr().unwrap());
        let a = inh.take_admin("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(a.local_addr().unwrap(), aa);
        assert!(inh.is_empty());
        successor.ready().unwrap();
        assert_eq!(ready.blocking_recv().unwrap(), std::process::id());
    }

    /// A fixed port matches by address even when the listener was renamed.
    #[test]
    fn fixed_ports_match_by_address() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let mut inh = Inheritance::default();
        inh.sockets.push((
            meta(Role::Proxy, "old-name", &a.to_string(), &a.to_string()),
            OwnedFd::from(l),
        ));
        assert!(inh.take_admin(a).is_none());
        assert_eq!(inh.take_proxy("new-name", a).len(), 1);
    }

    /// A successor that hangs up before ready leaves the offer in place for the next one.
    #[test]
    fn abandoned_successor_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sock");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut offer = Offer::default();
        let a = l.local_addr().unwrap().to_string();
        offer.add(meta(Role::Proxy, "p", &a, &a), &l).unwrap();
        let (_slot, mut ready) = serve(&path, offer).unwrap();
        let (inh, successor) = take_over(&path).unwrap();
        drop((inh, successor));
        let (inh, successor) = take_over(&path).unwrap();
        assert_eq!(inh.len(), 1, "offered again");
        assert!(ready.try_recv().is_err(), "no hand-over yet");
        successor.ready().unwrap();
        assert_eq!(ready.blocking_recv().unwrap(), std::process::id());
    }

    /// A socket path longer than `sockaddr_un` holds (a deep install prefix) still hands over.
    #[test]
    fn a_path_longer_than_sockaddr_un_still_hands_over() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir
            .path()
            .join("a-directory-name-of-forty-bytes-exactly!")
            .join("and-another-one-to-go-well-past-the-108-bytes-of-sockaddr-un-on-linux");
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join("handover.sock");
        assert!(path.as_os_str().len() > MAX_SUN_PATH);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut offer = Offer::default();
        let a = l.local_addr().unwrap().to_string();
        offer.add(meta(Role::Proxy, "p", &a, &a), &l).unwrap();
        let (_slot, ready) = serve(&path, offer).unwrap();
        assert!(path.exists(), "the socket file is at its long name");
        let (inh, successor) = take_over(&path).unwrap();
        assert_eq!(inh.len(), 1);
        successor.ready().unwrap();
        assert_eq!(ready.blocking_recv().unwrap(), std::process::id());
    }
}
