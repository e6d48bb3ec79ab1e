//! Storage pool events: who registered for what, and delivering each event to them.
//!
//! Owns: the registrations (`CONNECT_STORAGE_POOL_EVENT_REGISTER_ANY`: a connection, a
//! callback ID, lifecycle or refresh, one pool or all) and turning a registry event into
//! `remote_storage_pool_event_*_msg` messages on each registered connection's queue.
//! Must not: write to sockets itself (the connection's queue thread does).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::connection::Conn;
use crate::pool::registry::PoolEvent;
use crate::rpc::messages::{StoragePoolEventLifecycleMsg, StoragePoolEventRefreshMsg};
use crate::rpc::proto::{NonnullStoragePool, flags, procs};
use crate::rpc::wire::{Header, PROTOCOL_VERSION, REMOTE_PROGRAM, msg_type, status};
use crate::rpc::xdr::to_bytes;

/// A storage pool event registration.
struct Callback {
    conn: Weak<Conn>,
    conn_id: u64,
    id: i32,
    event_id: i32,
    pool: Option<[u8; 16]>,
}

/// Every registration of every connection.
#[derive(Default)]
pub struct Events {
    callbacks: Mutex<Vec<Callback>>,
    next_id: AtomicI32,
}

impl Events {
    fn lock(&self) -> MutexGuard<'_, Vec<Callback>> {
        self.callbacks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `conn` for `event_id` events (of one pool, or all); returns the callback ID.
    pub fn register(&self, conn: &Arc<Conn>, event_id: i32, pool: Option<[u8; 16]>) -> i32 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        self.lock().push(Callback {
            conn: Arc::downgrade(conn),
            conn_id: conn.id,
            id,
            event_id,
            pool,
        });
        id
    }

    /// Removes one registration of connection `conn_id`; false when it has none by that ID.
    pub fn deregister(&self, conn_id: u64, id: i32) -> bool {
        let mut callbacks = self.lock();
        let before = callbacks.len();
        callbacks.retain(|c| !(c.id == id && c.conn_id == conn_id));
        callbacks.len() != before
    }

    /// Forgets every registration of a closed connection.
    pub fn forget(&self, conn_id: u64) {
        self.lock().retain(|c| c.conn_id != conn_id);
    }

    /// Queues the messages for `event` on every matching registration.
    pub fn deliver(&self, event: &PoolEvent) {
        let (event_id, name, uuid) = match event {
            PoolEvent::Lifecycle { name, uuid, .. } => {
                (flags::STORAGE_POOL_EVENT_ID_LIFECYCLE, name, uuid)
            }
            PoolEvent::Refresh { name, uuid } => (flags::STORAGE_POOL_EVENT_ID_REFRESH, name, uuid),
        };
        let pool = NonnullStoragePool {
            name: name.clone(),
            uuid: *uuid.as_bytes(),
        };
        let targets: Vec<(Arc<Conn>, i32)> = self
            .lock()
            .iter()
            .filter(|c| c.event_id == event_id && c.pool.is_none_or(|p| p == *uuid.as_bytes()))
            .filter_map(|c| c.conn.upgrade().map(|conn| (conn, c.id)))
            .collect();
        for (conn, callback_id) in targets {
            let (proc_, payload) = match event {
                PoolEvent::Lifecycle { event, .. } => (
                    procs::STORAGE_POOL_EVENT_LIFECYCLE,
                    to_bytes(&StoragePoolEventLifecycleMsg {
                        callback_id,
                        pool: pool.clone(),
                        event: *event as i32,
                        detail: 0,
                    }),
                ),
                PoolEvent::Refresh { .. } => (
                    procs::STORAGE_POOL_EVENT_REFRESH,
                    to_bytes(&StoragePoolEventRefreshMsg {
                        callback_id,
                        pool: pool.clone(),
                    }),
                ),
            };
            let header = Header {
                prog: REMOTE_PROGRAM,
                vers: PROTOCOL_VERSION,
                proc_,
                mtype: msg_type::MESSAGE,
                serial: 1,
                status: status::OK,
            };
            conn.enqueue(header, payload);
        }
    }
}
