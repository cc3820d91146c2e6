//! Virtual IPs on and off named interfaces, over rtnetlink (RTM_NEWADDR / RTM_DELADDR), and
//! the macvlans that carry VIPs with a virtual MAC (RTM_NEWLINK / RTM_DELLINK).

use crate::config::pair::Vip;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
pub enum VipError {
    #[error("interface {0:?} does not exist (check [[pair.vip]] interface)")]
    NoInterface(String),
    #[error("netlink: {0}")]
    Io(#[from] io::Error),
    #[error("netlink: {op} {what}: {source}")]
    Kernel { op: &'static str, what: String, source: io::Error },
    #[error("netlink: malformed reply: {0}")]
    Decode(String),
}

pub fn ifindex(name: &str) -> Result<u32, VipError> {
    nix::net::if_::if_nametoindex(name).map_err(|_| VipError::NoInterface(name.to_string()))
}

/// A route-netlink socket for address changes.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

impl Netlink {
    pub fn open() -> Result<Netlink, VipError> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink { sock, seq: 0 })
    }

    fn message(vip: &Vip) -> Result<AddressMessage, VipError> {
        let mut m = AddressMessage::default();
        m.header.family = if vip.addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
        m.header.prefix_len = vip.prefix;
        m.header.index = ifindex(&vip.interface)?;
        m.attributes.push(AddressAttribute::Local(vip.addr));
        m.attributes.push(AddressAttribute::Address(vip.addr));
        if vip.addr.is_ipv6() {
            // No duplicate address detection: the peer has just removed it, and DAD would
            // keep the address tentative (unusable) for a second or more.
            m.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        Ok(m)
    }

    /// Adds the VIP (replacing an identical one: idempotent).
    pub fn add(&mut self, vip: &Vip) -> Result<(), VipError> {
        let m = Self::message(vip)?;
        self.request(RouteNetlinkMessage::NewAddress(m), NLM_F_CREATE | NLM_F_REPLACE, "add", &vip.to_string(), &[])
    }

    /// Removes the VIP. Absent already is success (idempotent).
    pub fn remove(&mut self, vip: &Vip) -> Result<(), VipError> {
        let m = Self::message(vip)?;
        // EADDRNOTAVAIL: not configured; ENODEV: interface gone with it.
        self.request(
            RouteNetlinkMessage::DelAddress(m),
            0,
            "remove",
            &vip.to_string(),
            &[libc::EADDRNOTAVAIL, libc::ENODEV, libc::ENOENT],
        )
    }

    /// Whether this process may change addresses, asked without changing any: an
    /// RTM_NEWADDR for interface index 0 passes the kernel's CAP_NET_ADMIN check (EPERM
    /// without it) and is then refused for naming no interface.
    pub fn may_change_addresses(&mut self) -> Result<(), VipError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = 32;
        m.header.index = 0;
        m.attributes.push(AddressAttribute::Local(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)));
        match self.request(RouteNetlinkMessage::NewAddress(m), NLM_F_CREATE, "probe", "an address on no interface", &[])
        {
            Err(VipError::Kernel { source, .. }) if source.raw_os_error() != Some(libc::EPERM) => Ok(()),
            Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates macvlan `name` over `parent` with address `mac`, down. Private mode, as
    /// keepalived's use_vmac: it talks to the segment, not to other macvlans of the parent.
    pub fn add_macvlan(&mut self, name: &str, parent: &str, mac: [u8; 6]) -> Result<(), VipError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::Link(ifindex(parent)?));
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(MacVlanMode::Private)])),
        ]));
        let what = format!("macvlan {name} on {parent}");
        self.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | libc::NLM_F_EXCL as u16, "add", &what, &[])
    }

    /// Sets the link up or down.
    pub fn set_link_up(&mut self, name: &str, up: bool) -> Result<(), VipError> {
        let mut m = LinkMessage::default();
        m.header.index = ifindex(name)?;
        m.header.change_mask = LinkFlags::Up;
        if up {
            m.header.flags = LinkFlags::Up;
        }
        self.request(RouteNetlinkMessage::SetLink(m), 0, if up { "set up" } else { "set down" }, name, &[])
    }

    /// Deletes the link; absent already is success.
    pub fn delete_link(&mut self, name: &str) -> Result<(), VipError> {
        let Ok(index) = ifindex(name) else { return Ok(()) };
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(m), 0, "delete", name, &[libc::ENODEV])
    }

    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &'static str,
        what: &str,
        ok_errnos: &[i32],
    ) -> Result<(), VipError> {
        self.seq = self.seq.wrapping_add(1);
        let mut nl = NetlinkMessage::from(msg);
        nl.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        nl.header.sequence_number = self.seq;
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        loop {
            let mut rx: Vec<u8> = Vec::with_capacity(8192);
            let n = self.sock.recv(&mut rx, 0)?;
            let mut off = 0;
            while off < n {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..n])
                    .map_err(|e| VipError::Decode(e.to_string()))?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == self.seq {
                    if let NetlinkPayload::Error(e) = reply.payload {
                        return match e.code {
                            None => Ok(()),
                            Some(code) => {
                                let errno = -code.get();
                                if ok_errnos.contains(&errno) {
                                    Ok(())
                                } else {
                                    Err(VipError::Kernel {
                                        op,
                                        what: what.to_string(),
                                        source: io::Error::from_raw_os_error(errno),
                                    })
                                }
                            }
                        };
                    }
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
    }
}

/// Whether the VIP is configured on its interface right now.
pub fn is_present(vip: &Vip) -> bool {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return false };
    for a in addrs {
        if a.interface_name != vip.interface {
            continue;
        }
        let Some(sa) = a.address else { continue };
        let ip = if let Some(v4) = sa.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = sa.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if ip == vip.addr {
            return true;
        }
    }
    false
}
