//! Which connections a server takes: at most [`ServerConfig::max_connections`] at once, and among them at most
//! [`ServerConfig::max_handshaking_connections`] that have not finished their handshake yet (the TLS handshake,
//! if the server has TLS, then a first whole frame). When the handshaking budget is spent, or every slot is
//! taken, a new connection makes the oldest handshaking one drop, so that peers that connect and stall cannot
//! keep out the clients that would be served. Only when every slot holds an established connection is a new one
//! refused (see `refuse`).
//!
//! The accept loop admits; each connection's task holds its [`Slot`], which it marks established at its first
//! frame and which gives its place back when the task ends. A connection dropped to make room is aborted, and
//! its place passes to the newcomer at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::task::AbortHandle;

use super::ServerConfig;

/// The places of a server's connections.
#[derive(Debug)]
pub(crate) struct Admission {
    state: Mutex<State>,
    /// [`ServerConfig::max_connections`].
    max: usize,
    /// [`ServerConfig::max_handshaking_connections`], at least 1.
    max_handshaking: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Connections holding a place: handshaking or established.
    open: usize,
    /// The handshaking connections, oldest first, with the handle that drops one (set once its task runs).
    handshaking: BTreeMap<u64, Option<AbortHandle>>,
    next_id: u64,
}

/// What [`Admission::admit`] decided.
#[derive(Debug)]
pub(crate) enum Admitted {
    /// Serve the connection; its task holds the slot.
    Slot(Slot),
    /// Every place holds an established connection: refuse this one.
    Full,
}

impl Admission {
    pub(crate) fn new(config: &ServerConfig) -> Arc<Admission> {
        Arc::new(Admission {
            state: Mutex::new(State::default()),
            max: config.max_connections,
            max_handshaking: config.max_handshaking_connections.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// Takes a place for a new connection, dropping the oldest handshaking connection if the handshaking budget
    /// is spent or every place is taken; [`Admitted::Full`] if every place holds an established connection.
    pub(crate) fn admit(self: &Arc<Admission>) -> Admitted {
        let mut state = self.lock();
        let pressed = state.handshaking.len() >= self.max_handshaking || state.open >= self.max;
        if pressed && let Some((_, task)) = state.handshaking.pop_first() {
            state.open -= 1;
            if let Some(task) = task {
                task.abort();
            }
        }
        if state.open >= self.max {
            return Admitted::Full;
        }
        state.open += 1;
        let id = state.next_id;
        state.next_id += 1;
        state.handshaking.insert(id, None);
        Admitted::Slot(Slot {
            admission: Arc::clone(self),
            id,
            established: false,
        })
    }

    /// The task serving the connection of slot `id` (which may already have finished its handshake): it is
    /// aborted if the connection has to make room while it still handshakes.
    pub(crate) fn started(&self, id: u64, task: AbortHandle) {
        if let Some(entry) = self.lock().handshaking.get_mut(&id) {
            *entry = Some(task);
        }
    }

    /// Connections holding a place, and how many of them still handshake.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        (state.open, state.handshaking.len())
    }
}

/// A connection's place; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    admission: Arc<Admission>,
    id: u64,
    established: bool,
}

impl Slot {
    /// The id to pass to [`Admission::started`].
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Whether the connection has finished its handshake.
    pub(crate) fn is_established(&self) -> bool {
        self.established
    }

    /// The connection finished its handshake (its first frame came): it leaves the handshaking budget and is
    /// never dropped to make room. `false` if it was dropped already (its task is being aborted).
    pub(crate) fn establish(&mut self) -> bool {
        if !self.established {
            self.established = self.admission.lock().handshaking.remove(&self.id).is_some();
        }
        self.established
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        // A connection dropped to make room gave its place away already.
        if self.established || state.handshaking.remove(&self.id).is_some() {
            state.open -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max: usize, max_handshaking: usize) -> Arc<Admission> {
        Admission::new(&ServerConfig {
            max_connections: max,
            max_handshaking_connections: max_handshaking,
            ..ServerConfig::default()
        })
    }

    fn slot(admitted: Admitted) -> Slot {
        match admitted {
            Admitted::Slot(slot) => slot,
            Admitted::Full => panic!("refused"),
        }
    }

    #[tokio::test]
    async fn the_oldest_handshaking_connection_makes_room_and_established_ones_never_do() {
        let admission = admission(4, 2);
        let never = || tokio::spawn(std::future::pending::<()>());
        let mut established = slot(admission.admit());
        assert!(established.establish());
        let (a, b) = (slot(admission.admit()), slot(admission.admit()));
        let (task_a, task_b) = (never(), never());
        admission.started(a.id(), task_a.abort_handle());
        admission.started(b.id(), task_b.abort_handle());
        assert_eq!(admission.counts(), (3, 2));
        // The handshaking budget is spent: the next connection drops the oldest handshaking one, `a`.
        let mut c = slot(admission.admit());
        assert!(task_a.await.unwrap_err().is_cancelled());
        assert_eq!(admission.counts(), (3, 2));
        drop(a);
        assert_eq!(admission.counts(), (3, 2), "a's place went to c already");
        assert!(c.establish());
        let d = slot(admission.admit());
        assert_eq!(admission.counts(), (4, 2));
        // Every place is taken: `b`, the oldest handshaking, makes room.
        let e = slot(admission.admit());
        assert!(task_b.await.unwrap_err().is_cancelled());
        let mut b = b;
        assert!(
            !b.establish(),
            "a connection dropped to make room stays dropped"
        );
        drop(b);
        assert_eq!(admission.counts(), (4, 2));
        // Only established connections left after these two establish: the next one is refused.
        let (mut d, mut e) = (d, e);
        assert!(d.establish() && e.establish());
        assert!(matches!(admission.admit(), Admitted::Full));
        drop(established);
        assert_eq!(admission.counts(), (3, 0));
        assert!(matches!(admission.admit(), Admitted::Slot(_)));
        drop((c, d, e));
        assert_eq!(admission.counts(), (0, 0));
    }
}
