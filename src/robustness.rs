//! Every parser of kernel replies and user input, fed random and mutated input: none may
//! panic or loop. A deterministic generator, so a failure reproduces; the seeds are
//! valid messages and values, mutated byte by byte, truncated and extended.

use crate::netlink::{nft, route};

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
    for accept in crate::firewall::foreign_accepts(&["eth0".into()]) {
        rules.add_rule_commented("filter", "FORWARD", &accept.rule(), &accept.comment, None);
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
        crate::fuzz::netlink(&mutate(&mut rng, seed));
    }
}

fn control_seeds() -> Vec<Vec<u8>> {
    use crate::proto::init::{InitOp, encode};
    use crate::supervise::Report;
    let go = encode(&[
        InitOp::PrivateMounts,
        InitOp::LoopbackUp,
        InitOp::Firewall(vec![1; 40]),
        InitOp::NetworkSysctls,
        InitOp::Address {
            addr: "10.0.0.2".parse().unwrap(),
            prefix: 30,
        },
        InitOp::LinkUp,
        InitOp::DefaultRoute("10.0.0.1".parse().unwrap()),
        InitOp::DnsRelay("127.0.0.53".parse().unwrap()),
        InitOp::Hostname("web".into()),
        InitOp::PrivateFiles {
            resolv_conf: Some("nameserver 10.0.0.1\n".into()),
            hosts: Some("10.0.0.1\thost.nsrun.internal\n".into()),
        },
        InitOp::AllowPing,
        InitOp::LockProcSys,
        InitOp::NoFilePrivileges,
        InitOp::Exec,
    ]);
    let report = Report::ExecFailed {
        command: "x".into(),
        errno: 2,
    }
    .encode();
    vec![go, report]
}

#[test]
fn sandbox_messages_survive_any_bytes() {
    let mut rng = Rng(42);
    let seeds = control_seeds();
    for _ in 0..ROUNDS {
        let seed = &seeds[rng.below(seeds.len())];
        crate::fuzz::control(&mutate(&mut rng, seed));
    }
}

fn holder_seeds() -> Vec<Vec<u8>> {
    use crate::proto::{Reply, Request};
    vec![
        Request::Register {
            ifindex: 7,
            sandbox: "10.200.0.2".parse().unwrap(),
            links: vec![2, 3],
            name: "web".into(),
        }
        .encode(),
        Request::Publish(crate::plan::Publish {
            proto: 6,
            host_ip: None,
            host_port: 8080,
            sandbox_port: 80,
        })
        .encode(),
        Request::InfoFile {
            inode: 42,
            device: 7,
            path: "/run/web.json".into(),
        }
        .encode(),
        Request::HostAccess {
            allow_host: false,
            nameservers: vec!["198.51.100.2".parse().unwrap()],
        }
        .encode(),
        Request::LastWish.encode(),
        Reply::Done("eth0\n".into()).encode(),
    ]
}

#[test]
fn holder_messages_survive_any_bytes() {
    let mut rng = Rng(99);
    let seeds = holder_seeds();
    for _ in 0..ROUNDS {
        let seed = &seeds[rng.below(seeds.len())];
        crate::fuzz::holder(&mutate(&mut rng, seed));
    }
}

/// The seeds of each text parser, also the fuzz targets' corpus (fuzz/corpus).
pub const TEXT_SEEDS: [&[u8]; 9] = [
    b"nameserver 192.0.2.1\nsearch a.test\noptions ndots:2\n",
    b"127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n",
    b"www-data\nroot:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n",
    b"alice:wheel\nwheel:x:10:alice,bob\n",
    b"10.200.0.0/16",
    b"127.0.0.1:8080-8090:80-90/udp",
    b"10.77.0.2",
    b"web-1.internal",
    b"LANG=C.UTF-8",
];

#[test]
fn text_and_option_parsers_survive_any_input() {
    let mut rng = Rng(7);
    for _ in 0..ROUNDS {
        let seed = TEXT_SEEDS[rng.below(TEXT_SEEDS.len())];
        let bytes = mutate(&mut rng, seed);
        crate::fuzz::resolv_conf_and_hosts(&bytes);
        crate::fuzz::users(&bytes);
        crate::fuzz::options(&bytes);
    }
}

/// The fuzz targets' starting corpus (fuzz/corpus/TARGET/seed-N) is these tests' seeds:
/// this test fails when they differ, and writes them with NSRUN_REGENERATE_CORPUS=1.
#[test]
fn the_fuzz_corpus_is_these_seeds() {
    let text: Vec<Vec<u8>> = TEXT_SEEDS.iter().map(|s| s.to_vec()).collect();
    let targets: [(&str, Vec<Vec<u8>>); 6] = [
        ("netlink", kernel_seeds()),
        ("holder", holder_seeds()),
        ("control", control_seeds()),
        ("resolv_conf_and_hosts", text[..2].to_vec()),
        ("users", text[2..4].to_vec()),
        ("options", text[4..].to_vec()),
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let regenerate = std::env::var_os("NSRUN_REGENERATE_CORPUS").is_some();
    for (target, seeds) in targets {
        for (i, seed) in seeds.iter().enumerate() {
            let path = root.join(target).join(format!("seed-{i}"));
            if regenerate {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, seed).unwrap();
            }
            let stored = std::fs::read(&path).unwrap_or_default();
            assert!(
                stored == *seed,
                "{} differs from its seed: NSRUN_REGENERATE_CORPUS=1 cargo test the_fuzz_corpus",
                path.display()
            );
        }
    }
}

/// Found by `fuzz/run` (target netlink): an NLMSG_ERROR whose error is i32::MIN made
/// the errno's negation overflow.
#[test]
fn an_error_of_i32_min_is_not_negated() {
    let mut payload = vec![0u8; 20];
    payload[..4].copy_from_slice(&i32::MIN.to_ne_bytes());
    let (_, result) = crate::netlink::parse_error(&payload, 0).unwrap();
    assert_eq!(result, Err((i32::MAX, None)));
    crate::fuzz::netlink(include_bytes!("../fuzz/corpus/netlink/crash-i32-min-error"));
}
