//! UDP heartbeat media: one socket per `[[pair.medium]]`, bound to its interface
//! (SO_BINDTODEVICE), multicast by default (TTL 1, no loopback), unicast when a peer is set.

use crate::config::pair::Medium;
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

pub struct MediumSocket {
    pub sock: UdpSocket,
    pub dest: SocketAddr,
    pub interface: String,
}

pub fn open(m: &Medium) -> io::Result<MediumSocket> {
    let ctx = |what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("[[pair.medium]] {} ({}): {what}: {e}", m.interface, m.dest))
    };
    let domain = if m.dest.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| ctx("socket", e))?;
    s.set_reuse_address(true).map_err(|e| ctx("SO_REUSEADDR", e))?;
    s.bind_device(Some(m.interface.as_bytes())).map_err(|e| ctx("SO_BINDTODEVICE", e))?;
    // Adverts are tiny and urgent: ask for the interactive queue.
    let _ = s.set_tos_v4(0xc0);
    let any: SocketAddr = if m.dest.is_ipv4() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), m.port)
    } else {
        SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), m.port)
    };
    s.bind(&any.into()).map_err(|e| ctx("bind", e))?;
    if let IpAddr::V4(group) = m.dest.ip() {
        if group.is_multicast() {
            let idx = super::netlink::ifindex(&m.interface)
                .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))?;
            s.join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(idx)).map_err(|e| ctx("join group", e))?;
            s.set_multicast_loop_v4(false).map_err(|e| ctx("IP_MULTICAST_LOOP", e))?;
            s.set_multicast_ttl_v4(1).map_err(|e| ctx("IP_MULTICAST_TTL", e))?;
        }
    }
    Ok(MediumSocket { sock: s.into(), dest: m.dest, interface: m.interface.clone() })
}
