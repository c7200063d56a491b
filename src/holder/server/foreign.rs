//! Other firewalls that drop forwarded packets (Docker, ufw, firewalld, an nftables
//! filter, iptables-legacy): the accepts nsrun adds to their forward chains, found again
//! by their comment, put back when a firewall reloads, removed at the end.

use super::*;

/// The refusal where nsrun cannot let its links through iptables-legacy's FORWARD.
pub(super) fn legacy_refusal(docker: bool, why: &dyn std::fmt::Display) -> String {
    // On Docker's hosts in DOCKER-USER, and not towards docker0: containers' unpublished
    // ports stay closed.
    let (chain, out) = if docker {
        ("DOCKER-USER", " ! -o docker0")
    } else {
        ("FORWARD", "")
    };
    format!(
        "the host's firewall drops forwarded packets (chain FORWARD of iptables-legacy's filter table has policy DROP{}) and nsrun could not let its interfaces through ({why}), so the sandbox would have no network; let nsrun's interfaces through: sudo iptables-legacy -I {chain} -i nsr+{out} -j ACCEPT && sudo iptables-legacy -I {chain} -o nsr+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        if docker { ", Docker's" } else { "" }
    )
}

/// Another firewall's chain that holds nsrun's rules.
#[derive(PartialEq)]
pub(super) struct Opened {
    family: u8,
    table: String,
    chain: String,
}

impl std::fmt::Display for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let family = family_name(self.family);
        write!(f, "chain {} of table {family} {}", self.chain, self.table)
    }
}

pub(super) fn is_ours(rule: &nft::RuleInfo) -> bool {
    rule.comment
        .as_deref()
        .is_some_and(|c| c.starts_with(firewall::FOREIGN_MARK))
}

pub(super) fn family_name(family: u8) -> &'static str {
    if family == nft::NFPROTO_INET {
        "inet"
    } else {
        "ip"
    }
}

impl Holder {
    /// Lets the sandboxes' traffic through other firewalls (iptables-legacy's, then every
    /// nf_tables one), and keeps what stands in the way, if anything, for 200 ms.
    pub(super) fn open_paths(&mut self) {
        // The generation before the look: a change while looking is seen next time.
        self.nft_gen = self.host_gen();
        let obstacle = match self.open_legacy() {
            Err(e) => Some(e),
            Ok(()) => self.open_forward_path().err().map(|e| format!("{e:#}")),
        };
        self.forward_checked = Some((Instant::now(), obstacle));
    }

    /// iptables-legacy's FORWARD with policy DROP: the same accept entries as for
    /// nf_tables, last in FORWARD (before its policy), unless the host accepts nsrun's links
    /// already.
    pub(super) fn open_legacy(&mut self) -> Result<(), String> {
        let table = match crate::xtables::read() {
            Ok(Some(table)) => table,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(format!(
                    "the host has an iptables-legacy filter table that nsrun cannot read ({e}), so it cannot tell whether the sandbox would have a network; run nsrun with sudo on this host"
                ));
            }
        };
        if table.forward_policy() != Some(crate::xtables::VERDICT_DROP) || table.accepts_sandboxes()
        {
            return Ok(());
        }
        if table.nsruns() > 0 {
            self.legacy_opened = true; // in already (a killed holder's): adopted
            return Ok(());
        }
        let uplinks: Vec<String> = crate::host::uplinks(&mut self.rtnl)
            .into_iter()
            .map(|l| l.name)
            .collect();
        let entries: Vec<Vec<u8>> = firewall::foreign_accepts(&uplinks)
            .iter()
            .map(crate::xtables::foreign_entry)
            .collect();
        crate::xtables::update(|t| (t.nsruns() == 0).then(|| t.with_forward_tail(&entries)))
            .map_err(|e| legacy_refusal(table.has_chain("DOCKER-USER"), &e))?;
        self.legacy_opened = true;
        Ok(())
    }

    pub(super) fn close_legacy(&mut self) {
        if std::mem::take(&mut self.legacy_opened) {
            let _ = crate::xtables::update(|t| (t.nsruns() > 0).then(|| t.without_nsruns()));
        }
    }

    /// Lets the sandboxes' traffic through every other firewall's forward chain that
    /// would drop it (firewall.rs, "Another firewall"): adds what is missing at its end, adopts
    /// what a killed holder left, leaves alone a chain whose owner let nsrun's
    /// interfaces through already.
    pub(super) fn open_forward_path(&mut self) -> Result<()> {
        // What holds nsrun's rules is what this look finds (a firewall deleted or
        // flushed since holds none); what was known stays known if the look fails.
        let known = std::mem::take(&mut self.opened);
        let looked = self.look_and_open();
        if looked.is_err() {
            for o in known {
                if !self.opened.contains(&o) {
                    self.opened.push(o);
                }
            }
        }
        looked
    }

    fn look_and_open(&mut self) -> Result<()> {
        const NF_INET_FORWARD: u32 = 2;
        let chains: Vec<nft::ChainInfo> = self
            .nft
            .dump(nft::dump_chains(), "list the host's nf_tables chains")?
            .iter()
            .filter_map(|(_, p)| nft::parse_chain(p))
            .filter(|c| c.family == nft::NFPROTO_IPV4 || c.family == nft::NFPROTO_INET)
            .filter(|c| {
                !(c.family == nft::NFPROTO_INET && (c.table == TABLE || c.table == GUARD_TABLE))
            })
            .collect();
        let mut uplinks: Option<Vec<String>> = None;
        let mut tables_seen: Vec<(u8, String)> = Vec::new();
        for chain in &chains {
            let table = (chain.family, chain.table.clone());
            let first_look = !tables_seen.contains(&table);
            let forward = chain.hook == Some(NF_INET_FORWARD);
            if !forward && !first_look {
                continue;
            }
            let rules: Vec<nft::RuleInfo> = self
                .nft
                .dump(
                    nft::dump_rules(chain.family, &chain.table),
                    &format!("list table {} {}", family_name(chain.family), chain.table),
                )?
                .iter()
                .filter_map(|(_, p)| nft::parse_rule(p))
                .collect();
            if first_look {
                tables_seen.push(table);
                // What a killed holder left, anywhere in this table: ours to remove.
                for r in rules.iter().filter(|r| is_ours(r)) {
                    self.note_opened(chain.family, &chain.table, &r.chain);
                }
            }
            if !forward {
                continue;
            }
            let own: Vec<&nft::RuleInfo> = rules.iter().filter(|r| r.chain == chain.name).collect();
            let drops =
                chain.policy == Some(nft::NF_DROP) || own.last().is_some_and(|r| r.refuses_all());
            let let_through_by_owner = own
                .iter()
                .any(|r| !is_ours(r) && r.names_sandboxes && r.accepts());
            if !drops || let_through_by_owner {
                continue;
            }
            let uplinks = uplinks.get_or_insert_with(|| {
                crate::host::uplinks(&mut self.rtnl)
                    .into_iter()
                    .map(|l| l.name)
                    .collect()
            });
            // Last, so that the host's own rules (an admin's drop in DOCKER-USER, a
            // blocked destination) still decide first: just before a final refusing
            // rule, or at the end of a chain whose policy drops.
            let before = own
                .last()
                .filter(|r| r.refuses_all() && !is_ours(r))
                .map(|r| r.handle);
            let mut batch = nft::Batch::new(chain.family);
            let mut added = 0;
            for accept in firewall::foreign_accepts(uplinks) {
                if own
                    .iter()
                    .any(|r| r.comment.as_ref() == Some(&accept.comment))
                {
                    continue;
                }
                batch.add_rule_commented(
                    &chain.table,
                    &chain.name,
                    &accept.rule(),
                    &accept.comment,
                    before,
                );
                added += 1;
            }
            if added == 0 {
                continue;
            }
            let (msg, acked) = batch.finish();
            let what = format!(
                "let nsrun's interfaces through chain {} of table {} {}, which drops forwarded packets",
                chain.name,
                family_name(chain.family),
                chain.table
            );
            self.commit(msg, &acked, &what)?;
            self.note_opened(chain.family, &chain.table, &chain.name);
        }
        Ok(())
    }

    pub(super) fn note_opened(&mut self, family: u8, table: &str, chain: &str) {
        let opened = Opened {
            family,
            table: table.to_string(),
            chain: chain.to_string(),
        };
        if !self.opened.contains(&opened) {
            self.opened.push(opened);
        }
        self.watch_firewalls();
    }

    /// Listens to nf_tables' change notifications while other firewalls' chains hold
    /// nsrun's rules: a reload (firewalld, ufw) that drops them is repaired at once.
    /// Not otherwise: while anyone listens, the kernel writes a notification for every
    /// change in every namespace, every sandbox's table and allow-list included, and
    /// discards it; [`Holder::firewall_unchanged`] notices changes then.
    pub(super) fn watch_firewalls(&mut self) {
        if !self.opened.is_empty() && self.nft_events.is_none() {
            self.nft_events =
                Socket::open_groups(SockProtocol::NetlinkNetFilter, 1 << (NFNLGRP_NFTABLES - 1))
                    .ok();
        }
    }

    /// Stops listening once nothing holds nsrun's rules. Called every second, not at
    /// each look: a reload that deletes a firewall's table and makes it anew a moment
    /// later is still heard.
    pub(super) fn unwatch_firewalls(&mut self) {
        if self.opened.is_empty() {
            self.nft_events = None;
        }
    }

    /// The host's nf_tables generation.
    pub(super) fn host_gen(&mut self) -> Option<u32> {
        let reply = self.nft.get(nft::get_gen(), "NFT_MSG_GETGEN").ok()?;
        nft::gen_id(&reply)
    }

    /// Whether nobody but the holder changed the host's nf_tables since its last look.
    pub(super) fn firewall_unchanged(&mut self) -> bool {
        let now = self.host_gen();
        now.is_some() && now == self.nft_gen
    }

    /// One batch of the holder's into the host's nf_tables. Its generation moves on by
    /// exactly one when nobody else committed meanwhile; otherwise the last look is
    /// stale, and stays so.
    pub(super) fn commit(
        &mut self,
        msg: netlink::Msg,
        acked: &[usize],
        what: &str,
    ) -> std::io::Result<Vec<Vec<u8>>> {
        let replies = self.nft.transact(msg, acked, what)?;
        let before = self.nft_gen;
        let after = self.host_gen();
        self.nft_gen = match (before, after) {
            (Some(b), Some(a)) if a == b.wrapping_add(1) => Some(a),
            _ => None,
        };
        Ok(replies)
    }

    /// Something changed in nf_tables. If it was another firewall's table while
    /// sandboxes run, look at the forward path again: a reload (which drops nsrun's
    /// rules) is repaired at once, and the next registration does not trust an old look.
    pub(super) fn firewall_changed(&mut self) {
        let Some(events) = &mut self.nft_events else {
            return;
        };
        // New or deleted tables, chains and rules of a table not nsrun's.
        let foreign = events.notifications().iter().any(|(ty, payload)| {
            events::decode_nft(*ty, payload).is_some_and(|c| {
                c.object != events::NftObject::Set
                    && !(c.family == nft::NFPROTO_INET
                        && (c.table == TABLE || c.table == GUARD_TABLE))
            })
        });
        if !foreign {
            return;
        }
        self.forward_checked = None;
        if self.clients.iter().any(|c| c.addr.is_some()) {
            self.open_paths();
        }
    }

    /// Removes what nsrun put into other firewalls: every rule that carries its comment,
    /// found again by its comment. A firewall reloaded meanwhile may reuse the handles
    /// the holder was given, for rules of its own.
    pub(super) fn close_forward_path(&mut self) {
        if self.opened.is_empty() {
            return;
        }
        let mut tables: Vec<(u8, String)> = Vec::new();
        for o in self.opened.drain(..) {
            if !tables.contains(&(o.family, o.table.clone())) {
                tables.push((o.family, o.table));
            }
        }
        self.unwatch_firewalls();
        for (family, table) in tables {
            let Ok(rules) = self.nft.dump(nft::dump_rules(family, &table), "list rules") else {
                continue;
            };
            let ours: Vec<nft::RuleInfo> = rules
                .iter()
                .filter_map(|(_, p)| nft::parse_rule(p))
                .filter(is_ours)
                .collect();
            for r in ours {
                let mut batch = nft::Batch::new(family);
                batch.del_rule(&table, &r.chain, r.handle);
                let (msg, acked) = batch.finish();
                let _ = self.commit(msg, &acked, "remove nsrun's rule from another firewall");
            }
        }
    }
}
