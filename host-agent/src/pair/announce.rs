//! Telling the segment where a VIP lives now: gratuitous ARP (IPv4, over an AF_PACKET
//! socket) and unsolicited neighbour advertisements (IPv6, over an ICMPv6 raw socket).

use crate::config::pair::Vip;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// The interface's MAC address, from sysfs.
pub fn mac_of(interface: &str) -> io::Result<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{interface}/address"))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{interface}: MAC {text:?} is not 6 bytes")));
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{interface}: bad MAC {text:?}")))?;
    }
    Ok(mac)
}

/// A gratuitous ARP request for `ip` from `mac` (sender = target = the VIP).
pub fn garp_payload(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&ip.octets());
    // target hardware address stays zero
    p[24..28].copy_from_slice(&ip.octets());
    p
}

/// An unsolicited neighbour advertisement for `ip` (override set, target link-layer option).
/// The kernel fills the ICMPv6 checksum on raw ICMPv6 sockets.
pub fn na_payload(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = 136; // neighbour advertisement
    p[4] = 0x20; // O (override) flag
    p[8..24].copy_from_slice(&ip.octets());
    p[24] = 2; // option: target link-layer address
    p[25] = 1; // length in units of 8 bytes
    p[26..32].copy_from_slice(&mac);
    p
}

const ETH_P_ARP: u16 = 0x0806;

/// The AF_PACKET socket gratuitous ARP goes out on (needs CAP_NET_RAW).
fn arp_socket() -> io::Result<Socket> {
    // SAFETY: plain socket(2) call; the returned descriptor is owned by `Socket` below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, ETH_P_ARP.to_be() as i32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh, valid descriptor that nothing else owns.
    Ok(unsafe { <Socket as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// The raw ICMPv6 socket neighbour advertisements go out on (needs CAP_NET_RAW).
fn na_socket() -> io::Result<Socket> {
    Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
}

/// Whether this process may open the sockets its announcements need (for the VIPs'
/// families), opened and closed without sending anything.
pub fn may_announce(vips: &[Vip]) -> io::Result<()> {
    if vips.iter().any(|v| v.addr.is_ipv4()) {
        arp_socket().map_err(|e| io::Error::new(e.kind(), format!("AF_PACKET socket (gratuitous ARP): {e}")))?;
    }
    if vips.iter().any(|v| v.addr.is_ipv6()) {
        na_socket()
            .map_err(|e| io::Error::new(e.kind(), format!("raw ICMPv6 socket (neighbour advertisement): {e}")))?;
    }
    Ok(())
}

fn send_garp(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> io::Result<()> {
    let sock = arp_socket()?;
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid starting value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ARP.to_be();
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let payload = garp_payload(mac, ip);
    // SAFETY: the buffer and the address point to live locals of the lengths given.
    let n = unsafe {
        libc::sendto(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn send_na(interface: &str, ifindex: u32, mac: [u8; 6], ip: Ipv6Addr) -> io::Result<()> {
    let s = na_socket()?;
    s.bind_device(Some(interface.as_bytes()))?;
    // Receivers drop neighbour discovery with a hop limit below 255 (RFC 4861 §7.1.2).
    s.set_multicast_hops_v6(255)?;
    s.set_unicast_hops_v6(255)?;
    s.set_multicast_if_v6(ifindex)?;
    let all_nodes = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, ifindex);
    s.send_to(&na_payload(mac, ip), &SocketAddr::V6(all_nodes).into())?;
    Ok(())
}

/// Sends one announcement for each VIP; returns the first error but tries them all.
pub fn announce_once(vips: &[Vip]) -> io::Result<()> {
    let mut first_err = None;
    for v in vips {
        let r = (|| {
            let idx = super::netlink::ifindex(&v.interface)
                .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))?;
            let mac = mac_of(&v.interface)?;
            match v.addr {
                IpAddr::V4(a) => send_garp(idx, mac, a),
                IpAddr::V6(a) => send_na(&v.interface, idx, mac, a),
            }
        })();
        if let Err(e) = r {
            first_err.get_or_insert(io::Error::new(e.kind(), format!("announce {v}: {e}")));
        }
    }
    first_err.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_is_a_request_for_the_vip_from_itself() {
        let p = garp_payload([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 200, 0, 100));
        assert_eq!(&p[6..8], &[0, 1]);
        assert_eq!(&p[14..18], &[10, 200, 0, 100]);
        assert_eq!(&p[24..28], &[10, 200, 0, 100]);
        assert_eq!(&p[8..14], &[2, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn na_carries_override_and_target_lladdr() {
        let ip: Ipv6Addr = "fd00::100".parse().unwrap();
        let p = na_payload([2, 0, 0, 0, 0, 1], ip);
        assert_eq!(p[0], 136);
        assert_eq!(p[4] & 0x20, 0x20);
        assert_eq!(&p[8..24], &ip.octets());
        assert_eq!(&p[24..26], &[2, 1]);
    }
}
