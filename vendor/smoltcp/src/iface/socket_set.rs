use core::fmt;
use managed::ManagedSlice;

use super::socket_meta::Meta;
use crate::socket::{AnySocket, Socket};

#[cfg(feature = "alloc")]
pub(crate) use super::socket_sched::Sched;

/// Opaque struct with space for storing one socket.
///
/// This is public so you can use it to allocate space for storing
/// sockets when creating an Interface.
#[derive(Debug, Default)]
pub struct SocketStorage<'a> {
    pub(crate) inner: Option<Item<'a>>,
}

impl<'a> SocketStorage<'a> {
    pub const EMPTY: Self = Self { inner: None };
}

/// An item of a socket set.
#[derive(Debug)]
pub(crate) struct Item<'a> {
    pub(crate) meta: Meta,
    pub(crate) socket: Socket<'a>,
}

/// A handle, identifying a socket in an Interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SocketHandle(usize);

impl SocketHandle {
    #[allow(unused)] // without alloc
    pub(crate) fn index(self) -> usize {
        self.0
    }

    #[allow(unused)] // without alloc
    pub(crate) fn from_index(index: usize) -> SocketHandle {
        SocketHandle(index)
    }
}

impl fmt::Display for SocketHandle {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// An extensible set of sockets.
///
/// The lifetime `'a` is used when storing a `Socket<'a>`.  If you're using
/// owned buffers for your sockets (passed in as `Vec`s) you can use
/// `SocketSet<'static>`.
#[derive(Debug)]
pub struct SocketSet<'a> {
    pub(crate) sockets: ManagedSlice<'a, SocketStorage<'a>>,
    /// No slot below this one is free.
    free_from: usize,
    /// What makes the cost of a packet independent of the number of sockets: an index of TCP
    /// sockets by 4-tuple, the sockets due for egress, their deadlines (see `socket_sched`).
    #[cfg(feature = "alloc")]
    pub(crate) sched: Sched,
}

impl<'a> SocketSet<'a> {
    /// Create a socket set using the provided storage.
    pub fn new<SocketsT>(sockets: SocketsT) -> SocketSet<'a>
    where
        SocketsT: Into<ManagedSlice<'a, SocketStorage<'a>>>,
    {
        let sockets = sockets.into();
        SocketSet {
            sockets,
            free_from: 0,
            #[cfg(feature = "alloc")]
            sched: Sched::default(),
        }
    }

    /// Add a socket to the set, and return its handle.
    ///
    /// # Panics
    /// This function panics if the storage is fixed-size (not a `Vec`) and is full.
    pub fn add<T: AnySocket<'a>>(&mut self, socket: T) -> SocketHandle {
        #[cfg(feature = "alloc")]
        self.sched.settle(&mut self.sockets);
        let handle = self.add_socket(socket.upcast());
        #[cfg(feature = "alloc")]
        self.sched.added(handle.0, &mut self.sockets[handle.0]);
        handle
    }

    fn add_socket(&mut self, socket: Socket<'a>) -> SocketHandle {
        fn put<'a>(index: usize, slot: &mut SocketStorage<'a>, socket: Socket<'a>) -> SocketHandle {
            net_trace!("[{}]: adding", index);
            let handle = SocketHandle(index);
            let mut meta = Meta::default();
            meta.handle = handle;
            *slot = SocketStorage {
                inner: Some(Item { meta, socket }),
            };
            handle
        }

        // Every slot below `free_from` is taken: a set that only grows is not walked.
        let from = self.free_from.min(self.sockets.len());
        for (index, slot) in self.sockets.iter_mut().enumerate().skip(from) {
            if slot.inner.is_none() {
                self.free_from = index + 1;
                return put(index, slot, socket);
            }
        }
        self.free_from = self.sockets.len() + 1;

        match &mut self.sockets {
            ManagedSlice::Borrowed(_) => panic!("adding a socket to a full SocketSet"),
            #[cfg(feature = "alloc")]
            ManagedSlice::Owned(sockets) => {
                sockets.push(SocketStorage { inner: None });
                let index = sockets.len() - 1;
                put(index, &mut sockets[index], socket)
            }
        }
    }

    /// Get a socket from the set by its handle, as mutable.
    ///
    /// # Panics
    /// This function may panic if the handle does not belong to this socket set
    /// or the socket has the wrong type.
    pub fn get<T: AnySocket<'a>>(&self, handle: SocketHandle) -> &T {
        match self.sockets[handle.0].inner.as_ref() {
            Some(item) => {
                T::downcast(&item.socket).expect("handle refers to a socket of a wrong type")
            }
            None => panic!("handle does not refer to a valid socket"),
        }
    }

    /// Get a mutable socket from the set by its handle, as mutable.
    ///
    /// # Panics
    /// This function may panic if the handle does not belong to this socket set
    /// or the socket has the wrong type.
    pub fn get_mut<T: AnySocket<'a>>(&mut self, handle: SocketHandle) -> &mut T {
        // The caller may change anything: look at the socket again at the next poll.
        #[cfg(feature = "alloc")]
        {
            self.sched.settle(&mut self.sockets);
            if let Some(item) = self.sockets[handle.0].inner.as_mut() {
                self.sched.touch_mut(item, handle.0);
            }
        }
        match self.sockets[handle.0].inner.as_mut() {
            Some(item) => T::downcast_mut(&mut item.socket)
                .expect("handle refers to a socket of a wrong type"),
            None => panic!("handle does not refer to a valid socket"),
        }
    }

    /// Remove a socket from the set, without changing its state.
    ///
    /// # Panics
    /// This function may panic if the handle does not belong to this socket set.
    pub fn remove(&mut self, handle: SocketHandle) -> Socket<'a> {
        #[cfg(feature = "alloc")]
        self.sched.settle(&mut self.sockets);
        net_trace!("[{}]: removing", handle.0);
        match self.sockets[handle.0].inner.take() {
            Some(item) => {
                self.free_from = self.free_from.min(handle.0);
                #[cfg(feature = "alloc")]
                self.sched.removed(handle.0, &item.meta);
                item.socket
            }
            None => panic!("handle does not refer to a valid socket"),
        }
    }

    /// Get an iterator to the inner sockets.
    pub fn iter(&self) -> impl Iterator<Item = (SocketHandle, &Socket<'a>)> {
        self.items().map(|i| (i.meta.handle, &i.socket))
    }

    /// Get a mutable iterator to the inner sockets.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (SocketHandle, &mut Socket<'a>)> {
        #[cfg(feature = "alloc")]
        let sched = &mut self.sched;
        self.sockets
            .iter_mut()
            .enumerate()
            .filter_map(|(i, x)| Some((i, x.inner.as_mut()?)))
            .map(move |(_i, item)| {
                #[cfg(feature = "alloc")]
                sched.touch(&mut item.meta, _i);
                (item.meta.handle, &mut item.socket)
            })
    }

    /// The sockets whose state may have changed since [`SocketSet::clear_changed`]: TCP sockets
    /// that took in a segment, or whose state changed when they sent (a timeout, say); every
    /// other kind of socket is always listed. A program with many sockets looks at these after
    /// a poll instead of at every socket. Without the `alloc` feature, every socket is listed.
    pub fn changed(&self) -> impl Iterator<Item = SocketHandle> + '_ {
        #[cfg(feature = "alloc")]
        {
            self.sched.changed()
        }
        #[cfg(not(feature = "alloc"))]
        {
            self.iter().map(|(h, _)| h)
        }
    }

    /// Forget the list of [`SocketSet::changed`] sockets (after looking at them).
    pub fn clear_changed(&mut self) {
        #[cfg(feature = "alloc")]
        self.sched.clear_changed(&mut self.sockets);
    }

    /// Iterate every socket in this set.
    pub(crate) fn items(&self) -> impl Iterator<Item = &Item<'a>> + '_ {
        self.sockets.iter().filter_map(|x| x.inner.as_ref())
    }

    /// How many sockets of kinds other than TCP [`SocketSet::other_mut`] may give (an upper
    /// bound: it gives `None` for a slot that holds a TCP socket or nothing).
    pub(crate) fn others_len(&self) -> usize {
        #[cfg(feature = "alloc")]
        {
            self.sched.others().len()
        }
        #[cfg(not(feature = "alloc"))]
        {
            self.sockets.len()
        }
    }

    /// The `i`-th socket of a kind other than TCP (UDP, ICMP, raw, ...), in set order: what
    /// the interface walks for a packet that is not TCP, without walking the TCP sockets.
    pub(crate) fn other_mut(&mut self, i: usize) -> Option<&mut Item<'a>> {
        #[cfg(feature = "alloc")]
        let i = *self.sched.others().get(i)?;
        self.sockets.get_mut(i)?.inner.as_mut()
    }

    /// Iterate every socket in this set.
    pub(crate) fn items_mut(&mut self) -> impl Iterator<Item = &mut Item<'a>> + '_ {
        self.sockets.iter_mut().filter_map(|x| x.inner.as_mut())
    }
}

#[cfg(all(test, feature = "socket-udp"))]
mod test {
    use super::*;
    use crate::socket::udp;

    fn udp_socket() -> udp::Socket<'static> {
        udp::Socket::new(
            udp::PacketBuffer::new(vec![], vec![]),
            udp::PacketBuffer::new(vec![], vec![]),
        )
    }

    #[test]
    fn add_fills_the_first_free_slot() {
        let mut set = SocketSet::new(vec![]);
        let h: Vec<SocketHandle> = (0..4).map(|_| set.add(udp_socket())).collect();
        assert_eq!(h, [0, 1, 2, 3].map(SocketHandle));
        set.remove(h[2]);
        set.remove(h[1]);
        assert_eq!(set.add(udp_socket()), SocketHandle(1));
        assert_eq!(set.add(udp_socket()), SocketHandle(2));
        assert_eq!(set.add(udp_socket()), SocketHandle(4));
        let mut fixed = [SocketStorage::EMPTY, SocketStorage::EMPTY];
        let mut set = SocketSet::new(&mut fixed[..]);
        assert_eq!(set.add(udp_socket()), SocketHandle(0));
        assert_eq!(set.add(udp_socket()), SocketHandle(1));
        set.remove(SocketHandle(0));
        assert_eq!(set.add(udp_socket()), SocketHandle(0));
    }
}
