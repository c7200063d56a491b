//! A registered sandbox's NAT: published ports (checked against who holds them), what it
//! may open on the host, and its rules' removal.

use super::*;

impl Holder {
    /// What one registered sandbox may open on the host's addresses (the holder's input
    /// chain refuses the rest).
    pub(super) fn allow_on_host(
        &mut self,
        i: usize,
        allow_host: bool,
        nameservers: &[Ipv4Addr],
    ) -> Result<()> {
        let Some(link) = self.clients[i].ifindex else {
            bail!("host access before registration");
        };
        // On a network's link, only this member's own address.
        let source = self.clients[i].addr.filter(|_| self.clients[i].shared);
        let rules = firewall::host_exceptions(link, source, allow_host, nameservers);
        if rules.is_empty() {
            return Ok(());
        }
        // One transaction for all of them.
        let mut batch = nft::Batch::new(nft::NFPROTO_INET);
        for rule in &rules {
            batch.add_rule_echo(TABLE, firewall::HOST_EXCEPTIONS, rule);
        }
        let (msg, acked) = batch.finish();
        let replies = self.commit(msg, &acked, "let a sandbox reach the host")?;
        for handle in replies.iter().filter_map(|r| nft::rule_handle(r)) {
            self.clients[i]
                .published
                .push((firewall::HOST_EXCEPTIONS, handle));
        }
        Ok(())
    }

    /// DNAT for one published port of a registered sandbox.
    pub(super) fn publish(&mut self, i: usize, p: &crate::plan::Publish) -> Result<()> {
        let Some(sandbox) = self.clients[i].addr else {
            bail!("publish before registration");
        };
        if p.proto != nft::IPPROTO_TCP && p.proto != nft::IPPROTO_UDP {
            bail!("only tcp and udp ports are published");
        }
        self.check_publish(self.clients[i].uid, p)?;
        let rule = firewall::publish_rule(p, sandbox);
        let mut handles = Vec::new();
        for chain in ["prerouting", "output"] {
            let mut batch = nft::Batch::new(nft::NFPROTO_INET);
            batch.add_rule_echo(TABLE, chain, &rule);
            let (msg, acked) = batch.finish();
            let replies = self.commit(
                msg,
                &acked,
                &format!(
                    "publish port {} to {sandbox}:{}",
                    p.host_port, p.sandbox_port
                ),
            )?;
            if let Some(handle) = replies.iter().find_map(|r| nft::rule_handle(r)) {
                self.clients[i].published.push((chain, handle));
                handles.push((chain, handle));
            }
        }
        self.clients[i].ports.push((*p, handles));
        Ok(())
    }

    /// A published port stays only while its client holds it (the reservation nsrun keeps
    /// for the sandbox's life) and nobody else does: a client that let go of the port
    /// must not keep redirecting it, from the network, away from whoever binds it next.
    pub(super) fn check_held_ports(&mut self) {
        let bound = crate::host::BoundPorts::read();
        for i in 0..self.clients.len() {
            let uid = self.clients[i].uid;
            let (kept, lost): (Vec<_>, Vec<_>) = std::mem::take(&mut self.clients[i].ports)
                .into_iter()
                .partition(|(p, _)| {
                    let on = p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
                    bound.held_alone(p.proto, on, p.host_port, uid)
                });
            self.clients[i].ports = kept;
            for (_, handles) in lost {
                for (chain, handle) in handles {
                    let mut batch = nft::Batch::new(nft::NFPROTO_INET);
                    batch.del_rule(TABLE, chain, handle);
                    let (msg, acked) = batch.finish();
                    let _ = self.commit(msg, &acked, "delete a port no longer held");
                    self.clients[i].published.retain(|h| *h != (chain, handle));
                }
            }
        }
    }

    /// A published port is checked here as nsrun's command line and the kernel's bind
    /// check it for the user who asks (a client's request is never trusted): the host
    /// address must be one of the host's own (or every address), and a port below
    /// `ip_unprivileged_port_start` needs root.
    pub(super) fn check_publish(&mut self, uid: u32, p: &crate::plan::Publish) -> Result<()> {
        if p.host_port == 0 || p.sandbox_port == 0 {
            bail!("port 0 is not published");
        }
        if let Some(ip) = p.host_ip {
            let local = self
                .rtnl
                .dump(route::dump_addrs(), "RTM_GETADDR dump")?
                .iter()
                .filter_map(|(_, p)| route::parse_addr(p))
                .filter(|a| !crate::addr::is_sandbox_link(&a.label))
                .any(|a| a.net.addr == ip);
            if !local || ip.is_loopback() {
                bail!(
                    "-p {ip}:{}: {ip} is not an address of the host",
                    p.host_port
                );
            }
        }
        // The port must be one the client holds itself (nsrun reserves every port it
        // publishes, so a port a service or another user has is refused): otherwise a
        // user could redirect another's service from the network into their sandbox.
        let on = p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let bound = crate::host::BoundPorts::read();
        if !bound.held_by(p.proto, on, p.host_port, uid) {
            bail!(
                "-p {on}:{}: the port is not reserved by its nsrun (uid {uid})",
                p.host_port
            );
        }
        if bound.held_by_others(p.proto, on, p.host_port, uid) {
            bail!(
                "-p {on}:{}: another user holds the port too (SO_REUSEADDR)",
                p.host_port
            );
        }
        let unprivileged_start =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                .ok()
                .and_then(|v| v.trim().parse::<u32>().ok())
                .unwrap_or(1024);
        if uid != 0 && u32::from(p.host_port) < unprivileged_start {
            bail!(
                "-p {}: ports below {unprivileged_start} are published only by root",
                p.host_port
            );
        }
        Ok(())
    }

    pub(super) fn release(&mut self, client: &Client) {
        // The holder serves only root or its own uid (a file-capability install): a
        // client can have it remove only a file of its own, still of the same inode.
        if let Some((path, inode, device)) = &client.info_file {
            crate::info::remove_if_same(path, *inode, *device);
        }
        for (chain, handle) in &client.published {
            let mut batch = nft::Batch::new(nft::NFPROTO_INET);
            batch.del_rule(TABLE, chain, *handle);
            let (msg, acked) = batch.finish();
            let _ = self.commit(msg, &acked, "delete a published port");
        }
        #[cfg(debug_assertions)]
        eprintln!(
            "holder {} releases {:?} {:?}",
            std::process::id(),
            client.ifindex,
            client.name
        );
        if let Some(handle) = client.handle {
            let mut batch = nft::Batch::new(nft::NFPROTO_INET);
            batch.del_rule(TABLE, "postrouting", handle);
            let (msg, acked) = batch.finish();
            let _ = self.commit(msg, &acked, "delete a masquerade rule");
        }
        if let (Some(index), false) = (client.ifindex, client.shared) {
            self.links.push((index, Instant::now() + LINK_GRACE));
        }
        if let Some(name) = &client.name {
            self.names.push((name.clone(), Instant::now() + LINK_GRACE));
        }
    }
}
