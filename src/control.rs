//! A running nsrun's control socket (`@nsrun-ctl-PID`, proto/control.rs): what
//! `--list`, `--stop`, `--join`, `--disconnect` and `--reconnect` ask of it. Served from
//! nsrun's supervision loop, never blocking it for longer than the init takes to answer
//! one request (bounded).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr, accept4, bind, getsockopt,
    listen, recv, send, socket, sockopt,
};

use crate::child::{ACK, JOINED, MSG_DISCONNECT, MSG_NAMESPACES, MSG_RECONNECT, NAMESPACES};
use crate::proto::control::{Reply, Request, Running, socket_name};

/// Connections served at once; more wait in the listen queue.
const MAX_CLIENTS: usize = 16;
/// How long the init may take to answer a request passed on to it.
const INIT_ANSWER: Duration = Duration::from_secs(2);

/// What the supervision loop must do for a request.
pub enum Action {
    /// End the sandbox as Ctrl-C would, with this long before SIGKILL.
    Stop(Duration),
}

pub struct Control {
    listener: OwnedFd,
    clients: Vec<OwnedFd>,
    /// `--stop`s waiting for the command's status.
    waiting: Vec<OwnedFd>,
    running: Running,
    /// Who the command runs as, for `--join`.
    identity: crate::users::Identity,
    /// The uid nsrun was started by: it and root may ask.
    owner: u32,
}

impl Control {
    pub fn bind(running: Running, identity: crate::users::Identity, owner: u32) -> Result<Control> {
        let listener = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .context("control socket")?;
        let name = socket_name(std::process::id());
        let addr = UnixAddr::new_abstract(name.as_bytes()).context("control socket name")?;
        bind(listener.as_raw_fd(), &addr).with_context(|| format!("bind @{name}"))?;
        listen(&listener, Backlog::new(16).unwrap_or(Backlog::MAXCONN))
            .with_context(|| format!("listen on @{name}"))?;
        Ok(Control {
            listener,
            clients: Vec::new(),
            waiting: Vec::new(),
            running,
            identity,
            owner,
        })
    }

    /// What to poll: the listener, then each client.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        std::iter::once(self.listener.as_fd())
            .chain(self.clients.iter().map(|c| c.as_fd()))
            .collect()
    }

    /// Serves what is ready (`ready` in the order of [`Control::fds`]).
    pub fn serve(&mut self, ready: &[bool], init: &OwnedFd) -> Vec<Action> {
        let mut actions = Vec::new();
        for i in (0..self.clients.len()).rev() {
            if ready.get(i + 1).copied().unwrap_or(false) {
                let client = self.clients.remove(i);
                if let Some(action) = self.answer(client, init) {
                    actions.push(action);
                }
            }
        }
        if ready.first().copied().unwrap_or(false) {
            while self.clients.len() < MAX_CLIENTS {
                let Ok(fd) = accept4(
                    self.listener.as_raw_fd(),
                    SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                ) else {
                    break;
                };
                let client = crate::sys::own_fd(fd);
                // Only root and nsrun's own user: anyone else is closed at once.
                let trusted = getsockopt(&client, sockopt::PeerCredentials)
                    .is_ok_and(|c| c.uid() == 0 || c.uid() == self.owner);
                if trusted {
                    self.clients.push(client);
                }
            }
        }
        actions
    }

    /// Answers one request; a connection is served once, but `--stop`'s waits.
    fn answer(&mut self, client: OwnedFd, init: &OwnedFd) -> Option<Action> {
        let mut buf = [0u8; 64];
        let n = match recv(client.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => n,
            Err(Errno::EAGAIN) => {
                self.clients.push(client);
                return None;
            }
            Err(_) => return None,
        };
        let reply = |r: Reply| {
            let _ = send(client.as_raw_fd(), &r.encode(), MsgFlags::MSG_NOSIGNAL);
        };
        match Request::decode(&buf[..n]) {
            None => reply(Reply::Error("not a request".into())),
            Some(Request::Info) => reply(Reply::Info(self.running.clone())),
            Some(Request::Stop { timeout_ms }) => {
                self.waiting.push(client);
                return Some(Action::Stop(Duration::from_millis(timeout_ms.into())));
            }
            Some(Request::Disconnect { drop }) => reply(ask_init(
                init,
                &[MSG_DISCONNECT, u8::from(drop)],
                "disconnect",
            )),
            Some(Request::Reconnect) => reply(ask_init(init, &[MSG_RECONNECT], "reconnect")),
            Some(Request::Join) => match namespaces(init) {
                Ok(fds) => {
                    let message = Reply::Join {
                        uid: self.identity.uid,
                        gid: self.identity.gid,
                        groups: self.identity.groups.clone(),
                    }
                    .encode();
                    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
                    let _ = crate::sys::send_with_fds(&client, &message, &raw);
                }
                Err(e) => reply(Reply::Error(e)),
            },
        }
        None
    }

    /// The command's status, to every `--stop` that waits for it.
    pub fn finish(&mut self, code: i32) {
        for client in self.waiting.drain(..) {
            let _ = send(
                client.as_raw_fd(),
                &Reply::Status(code).encode(),
                MsgFlags::MSG_NOSIGNAL,
            );
        }
    }
}

/// Waits (at most [`INIT_ANSWER`]) for the init's control socket to be readable.
fn init_answers(init: &OwnedFd) -> bool {
    let mut fds = [nix::poll::PollFd::new(
        init.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let timeout = nix::poll::PollTimeout::from(INIT_ANSWER.as_millis() as u16);
    matches!(nix::poll::poll(&mut fds, timeout), Ok(n) if n > 0)
}

/// Passes a request on to the init and waits for its yes or no.
fn ask_init(init: &OwnedFd, message: &[u8], what: &str) -> Reply {
    if send(init.as_raw_fd(), message, MsgFlags::MSG_NOSIGNAL).is_err() || !init_answers(init) {
        return Reply::Error(format!("{what}: the sandbox did not answer"));
    }
    let mut answer = [0u8; 1];
    match recv(init.as_raw_fd(), &mut answer, MsgFlags::MSG_DONTWAIT) {
        Ok(1) if answer[0] == ACK => Reply::Done(String::new()),
        _ => Reply::Error(format!(
            "{what}: the sandbox has no network of nsrun's to change (--no-net)"
        )),
    }
}

/// The sandbox's namespaces, from its init (which alone may open them when nsrun runs
/// with file capabilities).
fn namespaces(init: &OwnedFd) -> Result<Vec<OwnedFd>, String> {
    let failed = || "join: the sandbox did not pass its namespaces".to_string();
    if send(init.as_raw_fd(), &[MSG_NAMESPACES], MsgFlags::MSG_NOSIGNAL).is_err()
        || !init_answers(init)
    {
        return Err(failed());
    }
    let (byte, _, fds) =
        crate::sys::recv_with_fds::<1>(init, MsgFlags::MSG_DONTWAIT).map_err(|_| failed())?;
    if byte[0] != NAMESPACES || fds.len() < JOINED.len() {
        return Err(failed());
    }
    Ok(fds)
}
