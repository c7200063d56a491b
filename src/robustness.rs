//! Every parser of kernel replies and user input, fed random and mutated input: none may
//! panic or loop. A deterministic generator, so a failure reproduces; the seeds are
//! valid messages and values, mutated byte by byte, truncated and extended.

use crate::netlink::{self, nft, route};

/// xorshift64*: small, deterministic, good enough to shake parsers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Mutations of `seed`: flipped bytes, cut short, grown with junk, or pure noise.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    match rng.below(4) {
        0 => {
            for _ in 0..=rng.below(8) {
                if !v.is_empty() {
                    let i = rng.below(v.len());
                    v[i] = rng.next() as u8;
                }
            }
        }
        1 => v.truncate(rng.below(v.len() + 1)),
        2 => v.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
        _ => v = (0..rng.below(256)).map(|_| rng.next() as u8).collect(),
    }
    v
}

const ROUNDS: usize = 20_000;

fn kernel_seeds() -> Vec<Vec<u8>> {
    let veth = route::new_veth("nsr1", "eth0", 42, 1400);
    let mut batch = nft::Batch::new(nft::NFPROTO_INET);
    batch.add_table("nsrun", nft::NFT_TABLE_F_OWNER, true);
    batch.add_chain("nsrun", "c", "filter", nft::Hook::Input, 0, nft::NF_ACCEPT);
    let (batch, _) = batch.finish();
    let mut rules = nft::Batch::new(nft::NFPROTO_IPV4);
    for (comment, rule) in crate::firewall::foreign_accepts(&["eth0".into()]) {
        rules.insert_rule_commented("filter", "FORWARD", &rule, &comment);
    }
    let (rules, _) = rules.finish();
    vec![
        rules.buf,
        veth.buf,
        route::add_addr(2, "10.0.0.1".parse().unwrap(), 30).buf,
        route::add_default_route("10.0.0.1".parse().unwrap(), 2).buf,
        route::dump_routes().buf,
        batch.buf,
    ]
}

#[test]
fn netlink_parsers_survive_any_bytes() {
    let mut rng = Rng(0x6e73_7275_6e21);
    let seeds = kernel_seeds();
    for _ in 0..ROUNDS {
        let seed = &seeds[rng.below(seeds.len())];
        let bytes = mutate(&mut rng, seed);
        if let Ok(messages) = netlink::parse_messages(&bytes) {
            for m in messages {
                let _ = netlink::parse_error(m.payload, m.flags);
                let _ = route::parse_link(m.payload);
                let _ = route::parse_addr(m.payload);
                let _ = route::parse_route(m.payload);
                let _ = nft::parse_chain(m.payload);
                let _ = nft::parse_rule(m.payload);
                let _ = nft::rule_handle(m.payload);
                let _ = nft::table_flags(m.payload);
            }
        }
        let _ = netlink::attrs(&bytes).count();
        let body = bytes.get(16..).unwrap_or(&[]);
        let _ = route::parse_link(body);
        let _ = route::parse_addr(body);
        let _ = route::parse_route(body);
        let _ = nft::parse_chain(body);
        let _ = nft::parse_rule(body);
        let _ = netlink::parse_error(body, netlink::NLM_F_ACK);
    }
}

#[test]
fn sandbox_messages_survive_any_bytes() {
    use crate::child::{Go, NetworkGo};
    use crate::supervise::Report;
    let mut rng = Rng(42);
    let go = Go::Network(NetworkGo {
        addr: "10.0.0.2".parse().unwrap(),
        prefix: 30,
        gateway: "10.0.0.1".parse().unwrap(),
        relay: None,
        hosts: "10.0.0.1\thost.nsrun.internal\n".into(),
        firewall: vec![1; 40],
    })
    .encode();
    let report = Report::ExecFailed {
        command: "x".into(),
        errno: 2,
    }
    .encode();
    for _ in 0..ROUNDS {
        let _ = Go::decode(&mutate(&mut rng, &go));
        let _ = Report::decode_all(&mutate(&mut rng, &report));
    }
}

#[test]
fn text_and_option_parsers_survive_any_input() {
    let mut rng = Rng(7);
    let seeds: [&[u8]; 8] = [
        b"nameserver 192.0.2.1\nsearch a.test\noptions ndots:2\n",
        b"root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n",
        b"wheel:x:10:alice,bob\n",
        b"10.200.0.0/16",
        b"127.0.0.1:8080-8090:80-90/udp",
        b"alice:wheel",
        b"10.77.0.2",
        b"web-1.internal",
    ];
    for _ in 0..ROUNDS {
        let seed = seeds[rng.below(seeds.len())];
        let bytes = mutate(&mut rng, seed);
        let text = String::from_utf8_lossy(&bytes);
        let _ = crate::dns::parse(&text);
        let passwd = crate::users::parse_passwd(&text);
        let groups = crate::users::parse_group(&text);
        let _ = crate::users::resolve_spec(&text, &passwd, &groups);
        let _ = crate::plan::parse_pool(&text);
        let _ = crate::plan::parse_dns(&text);
        let _ = crate::plan::parse_ip(&text);
        let _ = crate::plan::parse_publish(&text);
        let _ = crate::plan::validate_hostname(&text);
        let _ = crate::plan::validate_netns_name(&text);
        let _ = crate::plan::env_plan(&[text.to_string()], &[], false, |_| None);
    }
}
