//! Forwarding on the links the sandboxes' traffic passes, each switched link guarded
//! (table inet nsrun-guard), adopted by a later holder, given back at the end.

use super::*;

impl Holder {
    /// IPv4 forwarding changed somewhere. When the whole host became a router
    /// (`net.ipv4.ip_forward=1`, written by an admin, Docker, libvirt, Kubernetes), the
    /// links nsrun switched on are no longer nsrun's: their guards go (they would cut the
    /// new router's traffic through them), and they stay on when the holder exits.
    pub(super) fn forwarding_changed(&mut self) {
        let Some(events) = &mut self.netconf_events else {
            return;
        };
        let all_on = events.notifications().iter().any(|(ty, payload)| {
            events::decode_netconf(*ty, payload)
                .is_some_and(|c| c.ifindex == events::NETCONF_ALL && c.forwarding == Some(1))
        });
        if all_on && !self.forwarding.is_empty() {
            self.forwarding.clear();
            self.drop_guards();
        }
    }

    /// Switches forwarding on for the links the sandboxes' traffic and replies use, and
    /// guards each one it switched: a packet that arrives there is forwarded only to a
    /// sandbox, so the host does not become a router for its neighbours. Restored when
    /// the holder exits.
    pub(super) fn forward_through(&mut self, links: &[u32]) -> Result<Vec<String>> {
        let mut switched = Vec::new();
        for &index in links {
            if self.forwarding.iter().any(|(i, _)| *i == index) {
                continue;
            }
            let Some(link) = self
                .rtnl
                .get(route::get_link_by_index(index as i32), "RTM_GETLINK")
                .ok()
                .and_then(|r| route::parse_link(&r))
            else {
                continue;
            };
            if crate::addr::is_sandbox_link(&link.name) {
                continue; // a sandbox's own link: its nsrun switches it, and it is no uplink
            }
            if crate::host::forwarding_on(&link.name) {
                continue; // already a router here: not nsrun's to change or guard
            }
            // Guarded before it is switched on, in a table that outlives the holder: a
            // holder killed at any point leaves no link forwarding without its guard,
            // and the next one adopts it from there.
            self.guard(index, &link.name)?;
            self.forwarding.push((index, link.name.clone()));
            crate::host::set_forwarding(&link.name, true)?;
            switched.push(link.name);
        }
        Ok(switched)
    }

    /// On a link whose forwarding nsrun switched on: forward only to sandboxes.
    pub(super) fn guard(&mut self, index: u32, name: &str) -> Result<()> {
        let batch = firewall::guard(index, name);
        let (msg, acked) = batch.finish();
        self.commit(msg, &acked, &format!("guard forwarding on {name}"))?;
        Ok(())
    }

    /// The guards in [`GUARD_TABLE`]: (link name, index) of each.
    pub(super) fn guards(&mut self) -> Vec<(String, u32)> {
        let Ok(rules) = self.nft.dump(
            nft::dump_rules(nft::NFPROTO_INET, GUARD_TABLE),
            "list table inet nsrun-guard",
        ) else {
            return Vec::new();
        };
        rules
            .iter()
            .filter_map(|(_, p)| nft::parse_rule(p))
            .filter_map(|r| {
                let comment = r.comment?;
                let (name, index) = comment.strip_prefix(GUARD_MARK)?.split_once(' ')?;
                Some((name.to_string(), index.parse().ok()?))
            })
            .collect()
    }

    /// Links a killed holder switched on (the guards it left): this holder keeps them
    /// guarded and switches them back when it exits. A link whose forwarding someone
    /// switched off since, or that is gone, is not nsrun's any more.
    pub(super) fn adopt_forwarding(&mut self) {
        let guards = self.guards();
        if guards.is_empty() {
            return;
        }
        for (name, index) in guards {
            if name.contains('/') || self.forwarding.iter().any(|(_, n)| *n == name) {
                continue;
            }
            let link = self
                .rtnl
                .get(route::get_link(&name), "RTM_GETLINK")
                .ok()
                .and_then(|r| route::parse_link(&r));
            let Some(link) = link.filter(|_| crate::host::forwarding_on(&name)) else {
                continue;
            };
            let current = link.index as u32;
            if current != index && self.guard(current, &name).is_err() {
                continue;
            }
            self.forwarding.push((current, link.name));
        }
        if self.forwarding.is_empty() {
            self.drop_guards();
        }
    }

    /// Removes [`GUARD_TABLE`]: once forwarding is back as it was, or not nsrun's.
    pub(super) fn drop_guards(&mut self) {
        let mut batch = nft::Batch::new(nft::NFPROTO_INET);
        batch.del_table(GUARD_TABLE);
        let (msg, acked) = batch.finish();
        let _ = self.commit(msg, &acked, "delete table inet nsrun-guard");
    }
}
