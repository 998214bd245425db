//! The wire structs of a `NETLINK_SOCK_DIAG` exchange (`linux/netlink.h`,
//! `linux/inet_diag.h`), their sizes checked against the kernel headers at
//! compile time, and byte views of them for [`super::peer`].

use std::mem::size_of;

pub(super) const NLMSG_ERROR: u16 = 2;
pub(super) const NLMSG_DONE: u16 = 3;
pub(super) const NLM_F_REQUEST: u16 = 1;
/// `SOCK_DIAG_BY_FAMILY` from `linux/sock_diag.h`.
pub(super) const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// `struct nlmsghdr` from `linux/netlink.h`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct NlMsgHdr {
    pub(super) len: u32,
    pub(super) kind: u16,
    pub(super) flags: u16,
    pub(super) seq: u32,
    pub(super) pid: u32,
}

/// `struct inet_diag_sockid` from `linux/inet_diag.h`; ports and addresses in
/// network byte order.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct InetDiagSockId {
    pub(super) sport: u16,
    pub(super) dport: u16,
    pub(super) src: [u8; 16],
    pub(super) dst: [u8; 16],
    pub(super) interface: u32,
    pub(super) cookie: [u32; 2],
}

/// `struct inet_diag_req_v2` from `linux/inet_diag.h`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct InetDiagReqV2 {
    pub(super) family: u8,
    pub(super) protocol: u8,
    pub(super) ext: u8,
    pub(super) pad: u8,
    pub(super) states: u32,
    pub(super) id: InetDiagSockId,
}

/// `struct inet_diag_msg` from `linux/inet_diag.h`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct InetDiagMsg {
    pub(super) family: u8,
    pub(super) state: u8,
    pub(super) timer: u8,
    pub(super) retrans: u8,
    pub(super) id: InetDiagSockId,
    pub(super) expires: u32,
    pub(super) rqueue: u32,
    pub(super) wqueue: u32,
    pub(super) uid: u32,
    pub(super) inode: u32,
}

/// A netlink request: header followed by the sock_diag request.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct Request {
    pub(super) hdr: NlMsgHdr,
    pub(super) req: InetDiagReqV2,
}

// These sizes prove the structs have no padding, which `Plain` relies on.
const _: () = assert!(size_of::<NlMsgHdr>() == 16);
const _: () = assert!(size_of::<InetDiagSockId>() == 48);
const _: () = assert!(size_of::<InetDiagReqV2>() == 56);
const _: () = assert!(size_of::<InetDiagMsg>() == 72);
const _: () = assert!(size_of::<Request>() == 72);

/// Marker for structs that are plain bytes.
///
/// # Safety
/// Implementors are `repr(C)`, hold only integers and have no padding, so
/// every byte pattern is a valid value and every byte of a value is initialised.
pub(super) unsafe trait Plain: Copy {}
// SAFETY: repr(C), integer fields only, sizes asserted above (no padding).
unsafe impl Plain for NlMsgHdr {}
// SAFETY: as above.
unsafe impl Plain for InetDiagMsg {}
// SAFETY: as above.
unsafe impl Plain for Request {}
// SAFETY: a plain integer.
unsafe impl Plain for i32 {}

pub(super) fn as_bytes<T: Plain>(value: &T) -> &[u8] {
    // SAFETY: `T: Plain` has no padding, so all size_of::<T>() bytes behind the
    // reference are initialised; the slice borrows `value`.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

pub(super) fn read_plain<T: Plain>(bytes: &[u8]) -> Option<T> {
    // SAFETY: the length is checked; `read_unaligned` needs no alignment, and
    // any byte pattern is a valid `T: Plain`.
    (bytes.len() >= size_of::<T>())
        .then(|| unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}
