//! Entry points that feed untrusted input to every parser of one kind, for the fuzz
//! targets (fuzz/, `cargo +nightly fuzz`) and for the robustness tests. None may panic
//! or loop, whatever the bytes.

use crate::netlink::{self, nft, route};

/// Kernel replies, dumps and notifications: rtnetlink links, addresses, routes; nf_tables
/// chains, rules, tables; nf_tables and netconf change notifications; errors and ACKs; and the same payloads without their header.
pub fn netlink(bytes: &[u8]) {
    if let Ok(messages) = netlink::parse_messages(bytes) {
        for m in messages {
            let _ = crate::proto::events::decode_nft(m.ty, m.payload);
            let _ = crate::proto::events::decode_netconf(m.ty, m.payload);
            payload(m.payload);
            let _ = netlink::parse_error(m.payload, m.flags);
        }
    }
    let _ = netlink::attrs(bytes).count();
    let body = bytes.get(16..).unwrap_or(&[]);
    payload(body);
    let _ = netlink::parse_error(body, netlink::NLM_F_ACK);
}

fn payload(p: &[u8]) {
    for ty in [10 << 8, 10 << 8 | 2, 10 << 8 | 6, 10 << 8 | 9, 80] {
        let _ = crate::proto::events::decode_nft(ty, p);
        let _ = crate::proto::events::decode_netconf(ty, p);
    }
    let _ = route::parse_link(p);
    let _ = route::parse_link_alias(p);
    let _ = crate::networks::parse_port(p);
    let _ = route::parse_addr(p);
    let _ = route::parse_route(p);
    let _ = nft::parse_chain(p);
    let _ = nft::parse_rule(p);
    let _ = nft::rule_handle(p);
    let _ = nft::table_flags(p);
}

/// The messages nsrun and its init exchange over their control socket.
pub fn control(bytes: &[u8]) {
    if let Some(ops) = crate::proto::init::decode(bytes) {
        // What decodes encodes back to the same bytes, and its order can be judged.
        assert_eq!(crate::proto::init::encode(&ops), bytes, "{ops:?}");
        let _ = crate::proto::init::order_problem(&ops);
    }
    let _ = crate::supervise::Report::decode_all(bytes);
}

/// The messages between nsrun and its holder, which the holder takes from any process
/// of a trusted uid.
pub fn holder(bytes: &[u8]) {
    if let Some(request) = crate::proto::Request::decode(bytes) {
        // What decodes encodes back to the same bytes.
        assert_eq!(request.encode(), bytes, "{request:?}");
    }
    let _ = crate::proto::Reply::decode(bytes);
    // And what a running nsrun answers on its control socket, from the same uids.
    if let Some(request) = crate::proto::control::Request::decode(bytes) {
        assert_eq!(request.encode(), bytes, "{request:?}");
    }
    let _ = crate::proto::control::Reply::decode(bytes);
    // And what a member of a network offers a sandbox that joins it.
    if let Some(offer) = crate::proto::network::Offer::decode(bytes) {
        assert_eq!(offer.encode(), bytes, "{offer:?}");
    }
}

/// /etc/resolv.conf, and /etc/hosts as nsrun copies it into the sandbox.
pub fn resolv_conf_and_hosts(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = crate::dns::parse(&text);
    let _ = crate::dns::render_hosts(&text, Some("web"), Some([10, 0, 0, 1].into()));
}

/// /etc/passwd and /etc/group, and a `--user` spec resolved against them: the first
/// line is the spec, the rest the files' text.
pub fn users(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let (spec, files) = text.split_once('\n').unwrap_or((&text, ""));
    let passwd = crate::users::parse_passwd(files);
    let groups = crate::users::parse_group(files);
    let _ = crate::users::validate_spec(spec);
    let _ = crate::users::resolve_spec(spec, &passwd, &groups);
}

/// The values of nsrun's options: `--pool`, `--ip`, `--dns`, `-p`, `--allow`/`--deny`
/// and `--allow-file`, `--name`, `--hostname`, `-e`.
pub fn options(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = crate::plan::parse_pool(&text);
    let _ = crate::plan::parse_ip(&text);
    let _ = crate::plan::parse_dns(&text);
    let _ = crate::plan::parse_publish(&text);
    let _ = crate::egress::parse_dest(&text, "--allow");
    let _ = crate::egress::parse_file(&text, "policy.txt");
    let _ = crate::plan::validate_netns_name(&text);
    let _ = crate::plan::validate_hostname(&text);
    let _ = crate::plan::env_plan(&[text.to_string()], &[], false, |_| None);
}
